// The recovery scan: tears at every byte offset, random tears, bit flips, sequence faults.
import Testing
import TestSupport
@testable import Journal

/// A segment of `count` entries with random payloads, and the offset where each entry ends.
private func makeSegment(seed: UInt64, count: Int, maxPayload: Int, firstSequence: UInt64 = 1)
    -> (bytes: [UInt8], ends: [Int])
{
    var random = SeededGenerator(seed: seed)
    var bytes = SegmentHeader(epoch: seed, firstSequence: firstSequence).bytes
    var ends: [Int] = []
    for index in 0..<count {
        let payload = random.bytes(Int.random(in: 0...maxPayload, using: &random))
        let kind: JournalEntryKind = index % 7 == 3 ? .layout : .record
        payload.withUnsafeBytes {
            JournalFraming.encode(kind: kind, sequence: firstSequence + UInt64(index), payload: $0, into: &bytes)
        }
        ends.append(bytes.count)
    }
    return (bytes, ends)
}

/// What the scan must report for the first `cut` bytes of a segment whose entries end at `ends`.
private func expectLongestPrefix(_ segment: (bytes: [UInt8], ends: [Int]), cut: Int, firstSequence: UInt64 = 1) {
    let scan = SegmentScan.scan(Array(segment.bytes[0..<cut]))
    if cut < SegmentHeader.length {
        #expect(scan.header == nil && scan.validLength == 0)
        #expect(scan.stop == .defect(.tornHeader(available: cut), offset: 0))
        return
    }
    let whole = segment.ends.filter { $0 <= cut }
    let valid = whole.last ?? SegmentHeader.length
    #expect(scan.validLength == valid, "cut at \(cut)")
    #expect(scan.entryCount == whole.count, "cut at \(cut)")
    #expect(scan.nextSequence == firstSequence + UInt64(whole.count))
    if valid == cut {
        #expect(scan.stop == .end)
    } else {
        guard case .defect(.torn, let offset) = scan.stop else {
            Issue.record("cut at \(cut): expected a torn entry, got \(scan.stop)")
            return
        }
        #expect(offset == valid)
    }
}

@Suite struct SegmentScanTests {
    @Test(arguments: [1, 2, 3] as [UInt64])
    func tornAtEveryByteOffset(seed: UInt64) {
        let segment = makeSegment(seed: seed, count: 12, maxPayload: 40, firstSequence: 1 + seed * 100)
        for cut in 0...segment.bytes.count {
            expectLongestPrefix(segment, cut: cut, firstSequence: 1 + seed * 100)
        }
    }

    @Test(arguments: [4, 5, 6, 7] as [UInt64])
    func tornAtRandomOffsetsOfLargeSegments(seed: UInt64) {
        let segment = makeSegment(seed: seed, count: 2_000, maxPayload: 2_000)
        var random = SeededGenerator(seed: seed)
        for _ in 0..<200 {
            expectLongestPrefix(segment, cut: Int.random(in: 0...segment.bytes.count, using: &random))
        }
        expectLongestPrefix(segment, cut: segment.bytes.count)
    }

    @Test(arguments: [8, 9] as [UInt64])
    func everyBitFlipIsDetected(seed: UInt64) {
        let segment = makeSegment(seed: seed, count: 8, maxPayload: 24)
        let starts = [SegmentHeader.length] + segment.ends.dropLast()
        for byte in 0..<segment.bytes.count {
            for bit in 0..<8 {
                var flipped = segment.bytes
                flipped[byte] ^= UInt8(1 << bit)
                let scan = SegmentScan.scan(flipped)
                if byte < SegmentHeader.length {
                    #expect(scan.header == nil, "header flip at \(byte).\(bit)")
                    continue
                }
                // The entry holding the flipped bit and everything after it are rejected.
                let entry = starts.lastIndex { $0 <= byte }!
                #expect(scan.validLength == starts[entry], "flip at \(byte).\(bit)")
                #expect(scan.entryCount == entry, "flip at \(byte).\(bit)")
                #expect(scan.stop != .end)
            }
        }
    }

    @Test(arguments: [10, 11, 12] as [UInt64])
    func randomBitFlipsInLargeSegments(seed: UInt64) {
        let segment = makeSegment(seed: seed, count: 500, maxPayload: 3_000)
        let starts = [SegmentHeader.length] + segment.ends.dropLast()
        var random = SeededGenerator(seed: seed)
        for _ in 0..<100 {
            let byte = Int.random(in: SegmentHeader.length..<segment.bytes.count, using: &random)
            var flipped = segment.bytes
            flipped[byte] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
            let scan = SegmentScan.scan(flipped)
            #expect(scan.validLength == starts[starts.lastIndex { $0 <= byte }!])
        }
    }

    @Test func sequenceGapAndWrongFirstSequence() {
        var bytes = SegmentHeader(epoch: 1, firstSequence: 10).bytes
        JournalFraming.encode(kind: .record, sequence: 10, payload: [1]).forEach { bytes.append($0) }
        let afterFirst = bytes.count
        JournalFraming.encode(kind: .record, sequence: 12, payload: [2]).forEach { bytes.append($0) }
        let scan = SegmentScan.scan(bytes)
        #expect(scan.entryCount == 1 && scan.validLength == afterFirst)
        #expect(scan.stop == .defect(.sequenceGap(expected: 11, found: 12), offset: afterFirst))
        #expect(scan.lastSequence == 10)

        var wrongStart = SegmentHeader(epoch: 1, firstSequence: 3).bytes
        wrongStart += JournalFraming.encode(kind: .record, sequence: 4, payload: [])
        #expect(SegmentScan.scan(wrongStart).stop == .defect(.sequenceGap(expected: 3, found: 4), offset: 40))
    }

    @Test func headerOnlySegmentIsValidAndEmpty() {
        let scan = SegmentScan.scan(SegmentHeader(epoch: 9, firstSequence: 77).bytes)
        #expect(scan.stop == .end && scan.entryCount == 0 && scan.nextSequence == 77 && scan.lastSequence == nil)
    }

    @Test func zeroFilledTailIsRejected() {
        var segment = makeSegment(seed: 13, count: 5, maxPayload: 30)
        let valid = segment.bytes.count
        segment.bytes += [UInt8](repeating: 0, count: 64)
        let scan = SegmentScan.scan(segment.bytes)
        #expect(scan.validLength == valid && scan.entryCount == 5)
        guard case .defect(.checksumMismatch, valid) = scan.stop else {
            Issue.record("zero tail: \(scan.stop)")
            return
        }
    }

    /// A flipped bit anywhere in an entry (header, payload or CRC32C) costs that entry only:
    /// entries go on at the next one, found by searching, whatever the damaged length field says.
    @Test(arguments: [8, 9] as [UInt64])
    func resynchronizesAfterAFlipAnywhereInAnEntry(seed: UInt64) {
        let segment = makeSegment(seed: seed, count: 40, maxPayload: 120, firstSequence: 50)
        var random = SeededGenerator(seed: seed)
        for victim in 0..<39 {
            let start = victim == 0 ? SegmentHeader.length : segment.ends[victim - 1]
            var bytes = segment.bytes
            let at = Int.random(in: start..<segment.ends[victim], using: &random)
            bytes[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
            let scan = SegmentScan.scan(bytes)
            guard case .defect(_, let offset) = scan.stop else {
                Issue.record("entry \(victim), byte \(at): the flip went unnoticed")
                continue
            }
            #expect(offset == start && scan.nextSequence == 50 + UInt64(victim))
            let resumed = bytes.withUnsafeBytes { SegmentScan.resynchronize($0, after: offset, above: scan.nextSequence) }
            #expect(resumed?.offset == segment.ends[victim] && resumed?.sequence == 51 + UInt64(victim),
                    "entry \(victim), byte \(at)")
            // And the rest scans to the end from there.
            if let resumed {
                let rest = bytes.withUnsafeBytes { SegmentScan.entries($0, from: resumed.offset, expectedSequence: resumed.sequence) }
                #expect(rest.stop == .end && rest.entryCount == 39 - victim)
            }
        }
    }

    @Test func nothingToResynchronizeToAfterTheLastEntry() {
        let segment = makeSegment(seed: 10, count: 5, maxPayload: 60)
        var bytes = segment.bytes
        bytes[segment.ends[3] + JournalFraming.headerLength] ^= 1
        #expect(bytes.withUnsafeBytes { SegmentScan.resynchronize($0, after: segment.ends[3], above: 5) } == nil)
    }
}

/// A damaged segment header: what its own CRC32C, or the journal's epoch, gives back, and the
/// entries read after it.
@Suite struct SegmentHeaderRepairTests {
    private let original = SegmentHeader(epoch: 0x1122_3344_5566_7788, firstSequence: 4_097)

    @Test func everySingleFlippedBitIsFoundByTheCRC() {
        for bit in 0..<(SegmentHeader.length * 8) {
            var bytes = original.bytes
            bytes[bit / 8] ^= UInt8(1) << (bit % 8)
            let rebuilt = bytes.withUnsafeBytes { SegmentHeader.reconstruct($0, nameSequence: 4_097, journalEpoch: nil) }
            #expect(rebuilt == original, "bit \(bit)")
        }
    }

    @Test func twoFlippedBitsNeedTheJournalsEpoch() {
        var bytes = original.bytes
        bytes[17] ^= 0x04
        bytes[30] ^= 0x80
        #expect(bytes.withUnsafeBytes { SegmentHeader.reconstruct($0, nameSequence: 4_097, journalEpoch: nil) } == nil)
        let rebuilt = bytes.withUnsafeBytes { SegmentHeader.reconstruct($0, nameSequence: 4_097, journalEpoch: original.epoch) }
        #expect(rebuilt?.bytes == original.bytes)
        // A flip that makes a valid header naming another segment is no repair of this one.
        var flipped = original.bytes
        flipped[3] ^= 0x01
        #expect(flipped.withUnsafeBytes { SegmentHeader.reconstruct($0, nameSequence: 4_098, journalEpoch: nil) } == nil)
    }

    @Test func entriesAfterADamagedHeaderAreNumberedFromTheName() {
        var (bytes, ends) = makeSegment(seed: 21, count: 30, maxPayload: 60, firstSequence: 4_097)
        for index in 0..<SegmentHeader.length { bytes[index] = 0 }
        let zeroedHeader = bytes.withUnsafeBytes { SegmentScan.scanPastDamagedHeader($0, nameSequence: 4_097) }
        #expect(zeroedHeader?.scan.entryCount == 30 && zeroedHeader?.scan.nextSequence == 4_127)
        #expect(zeroedHeader?.damaged.isEmpty == true && zeroedHeader?.scan.stop == .end)
        // The first two entries damaged too: they are the run lost, the rest reads.
        for index in SegmentHeader.length..<(ends[1] - 3) { bytes[index] = 0xFF }
        let worse = bytes.withUnsafeBytes { SegmentScan.scanPastDamagedHeader($0, nameSequence: 4_097) }
        #expect(worse?.scan.entryCount == 28)
        #expect(worse?.damaged.map { $0.first...$0.last } == [4_097...4_098])
        #expect(worse?.damaged.first?.resumesAt == ends[1])
        // Numbered from another name, nothing follows.
        #expect(bytes.withUnsafeBytes { SegmentScan.scanPastDamagedHeader($0, nameSequence: 9_000) } == nil)
    }
}
