// The batch wire header: round trip, and every corruption caught with the field named.
import DAQCore
import Testing
import Journal
@testable import Delivery

@Suite struct UplinkBatchTests {
    func body(_ range: ClosedRange<UInt64>) -> [UInt8] {
        range.flatMap { JournalFraming.encode(kind: .record, sequence: $0, payload: (0..<($0 % 50 + 1)).map { UInt8($0) }) }
    }

    func batch(_ range: ClosedRange<UInt64>, starts: [UInt64] = []) -> (UplinkBatch, [UInt8]) {
        let entries = body(range)
        let header = UplinkBatch(deviceID: "ecu-07", epoch: 42, first: range.lowerBound, last: range.upperBound,
                                 segmentStarts: starts, codec: .none, bodyLength: UInt32(entries.count),
                                 bodyChecksum: UplinkBatch.entriesChecksum(body: entries, entries: BatchTransformTests.ranges(entries)))
        return (header, entries)
    }

    @Test func roundTripsAndValidates() throws {
        let (header, entries) = batch(5...9, starts: [7])
        let message = header.encodedHeader() + entries
        let (decoded, bodyStart) = try message.withUnsafeBytes { try UplinkBatch.decodeHeader($0, source: "t") }
        #expect(decoded == header)
        let ranges = try Array(message[bodyStart...]).withUnsafeBytes { try decoded.validate(body: $0, source: "t") }
        #expect(ranges.count == 5)
    }

    @Test func everyFlippedHeaderByteIsCaught() {
        let (header, _) = batch(1...3)
        let bytes = header.encodedHeader()
        for index in bytes.indices {
            var bad = bytes
            bad[index] ^= 0x40
            #expect(throws: (any Error).self) { try bad.withUnsafeBytes { _ = try UplinkBatch.decodeHeader($0, source: "t") } }
        }
    }

    /// An entry whose content changed but which carries its own, matching CRC32C: a CRC32C over the
    /// whole framed body cannot tell (it ends on the same value whatever self-checked entries
    /// hold — batch version 1's check), the entries checksum does. This is what a codec-2/3 body
    /// rebuilt from a corrupted matrix looks like: every entry re-sealed by the receiver.
    @Test func aResealedContentChangeIsCaughtByTheEntriesChecksum() throws {
        let (header, entries) = batch(1...6)
        var changed = entries
        let ranges = BatchTransformTests.ranges(entries)
        let victim = ranges[3]
        changed[victim.lowerBound + JournalFraming.headerLength] ^= 0x55
        let crc = CRC32C.checksum(Array(changed[victim.lowerBound..<(victim.upperBound - 4)]))
        withUnsafeBytes(of: crc.littleEndian) { changed.replaceSubrange((victim.upperBound - 4)..<victim.upperBound, with: $0) }
        #expect(changed != entries)
        #expect(CRC32C.checksum(changed) == CRC32C.checksum(entries), "the whole-body CRC32C is blind to it")
        #expect(throws: DAQError.self) { try changed.withUnsafeBytes { _ = try header.validate(body: $0, source: "t") } }
        #expect(throws: DAQError.self) {
            try changed.withUnsafeBytes { _ = try header.validate(body: $0, entriesSealed: true, source: "t") }
        }
    }

    @Test func bodyMismatchesAreCaught() throws {
        let (header, entries) = batch(1...4)
        var flipped = entries
        flipped[20] ^= 1
        #expect(throws: (any Error).self) { try flipped.withUnsafeBytes { _ = try header.validate(body: $0, source: "t") } }
        // A body whose entries do not match the header's range.
        var wrongRange = header
        wrongRange.last = 5
        #expect(throws: (any Error).self) { try entries.withUnsafeBytes { _ = try wrongRange.validate(body: $0, source: "t") } }
    }
}
