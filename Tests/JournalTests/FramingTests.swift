// Entry framing and segment header: exact bytes, round trips, naming.
import Testing
import TestSupport
@testable import Journal

@Suite struct FramingTests {
    @Test func entryBytesAreExact() {
        let framed = JournalFraming.encode(kind: .layout, sequence: 0x0102_0304_0506_0708, payload: [0xAA, 0xBB, 0xCC])
        let head: [UInt8] = [3, 0, 0, 0, 1, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0xAA, 0xBB, 0xCC]
        #expect(Array(framed[0..<19]) == head)
        let crc = CRC32C.checksum(head)
        #expect(Array(framed[19..<23]) == [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)])
        #expect(framed.count == JournalFraming.framedLength(payloadLength: 3))
    }

    @Test(arguments: [11, 12, 13] as [UInt64])
    func roundTrip(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        for sequence in UInt64(1)...200 {
            let payload = random.bytes(Int.random(in: 0...600, using: &random))
            let kind: JournalEntryKind = Bool.random(using: &random) ? .record : .layout
            let framed = JournalFraming.encode(kind: kind, sequence: sequence, payload: payload)
            let step = framed.withUnsafeBytes { JournalFraming.decode($0, at: 0, expectedSequence: sequence) }
            #expect(step == .entry(kind: kind, sequence: sequence, payloadLength: payload.count, framedLength: framed.count))
            #expect(Array(framed[16..<(16 + payload.count)]) == payload)
        }
    }

    @Test func decodeNamesTheProblem() {
        let framed = JournalFraming.encode(kind: .record, sequence: 5, payload: [1, 2, 3, 4])
        func decode(_ bytes: [UInt8], expected: UInt64 = 5) -> JournalFraming.Step {
            bytes.withUnsafeBytes { JournalFraming.decode($0, at: 0, expectedSequence: expected) }
        }
        #expect(decode(Array(framed[0..<10])) == .incomplete(needed: 16))
        #expect(decode(Array(framed.dropLast())) == .incomplete(needed: 24))
        #expect(decode(framed, expected: 6) == .invalid(.sequenceGap(expected: 6, found: 5)))
        var flipped = framed
        flipped[17] ^= 0x10
        guard case .invalid(.checksumMismatch) = decode(flipped) else {
            Issue.record("flipped payload bit not detected")
            return
        }
        // A reserved kind with a valid CRC is a newer format, reported as such.
        var reserved = framed
        reserved[4] = 7
        let crc = CRC32C.checksum(Array(reserved[0..<20]))
        reserved[20..<24] = [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)]
        #expect(decode(reserved) == .invalid(.reservedKind(7)))
        // Kind 2 is defined: a collector's `lost` placeholder.
        let lost = JournalFraming.encode(kind: .lost, sequence: 5, payload: Array("unreadable".utf8))
        #expect(lost.withUnsafeBytes { JournalFraming.decode($0, at: 0, expectedSequence: 5) }
                == .entry(kind: .lost, sequence: 5, payloadLength: 10, framedLength: 30))
        #expect(JournalEntryKind.lost.description == "lost" && JournalEntryKind.layoutRepeat.description == "layout-repeat"
                && JournalEntryKind(rawValue: 4).description == "reserved(4)")
        var huge = framed
        huge[3] = 0x7F
        #expect(decode(huge) == .invalid(.lengthTooLarge(0x7F00_0004)))
    }

    @Test func segmentHeaderRoundTripAndBytes() {
        let header = SegmentHeader(epoch: 0xDEAD_BEEF, firstSequence: 42)
        let bytes = header.bytes
        #expect(bytes.count == 40)
        #expect(Array(bytes[0..<8]) == Array("DAQJRNL".utf8) + [0])
        #expect(Array(bytes[8..<16]) == [1, 0, 40, 0, 0, 0, 0, 0])
        #expect(Array(bytes[16..<24]) == [0xEF, 0xBE, 0xAD, 0xDE, 0, 0, 0, 0])
        #expect(Array(bytes[24..<32]) == [42, 0, 0, 0, 0, 0, 0, 0])
        #expect(SegmentHeader.parse(bytes) == .success(header))
        for index in 0..<40 {
            var broken = bytes
            broken[index] ^= 0x01
            if case .success = SegmentHeader.parse(broken) { Issue.record("header bit flip at \(index) not detected") }
        }
        #expect(SegmentHeader.parse(Array(bytes[0..<39])) == .failure(.tornHeader(available: 39)))
    }

    @Test func segmentNamesSortBySequence() {
        #expect(SegmentName.name(firstSequence: 1) == "00000000000000000001.jnl")
        #expect(SegmentName.name(firstSequence: UInt64.max) == "18446744073709551615.jnl")
        #expect(SegmentName.firstSequence(of: "00000000000000000123.jnl") == 123)
        #expect(SegmentName.firstSequence(of: "123.jnl") == nil)
        #expect(SegmentName.firstSequence(of: "0000000000000000012a.jnl") == nil)
        #expect(SegmentName.firstSequence(of: "00000000000000000123.tmp") == nil)
        let sequences: [UInt64] = [9, 10, 100, 99, 1, 12_345_678_901]
        #expect(sequences.map { SegmentName.name(firstSequence: $0) }.sorted()
                == sequences.sorted().map { SegmentName.name(firstSequence: $0) })
    }

    @Test func testPatternIsDeterministic() {
        let a = JournalTestPattern.payload(sequence: 17, seed: 3, minLength: 5, maxLength: 50)
        #expect(a == JournalTestPattern.payload(sequence: 17, seed: 3, minLength: 5, maxLength: 50))
        #expect(a != JournalTestPattern.payload(sequence: 18, seed: 3, minLength: 5, maxLength: 50))
        #expect((5...50).contains(a.count))
    }
}
