// The RAM ring: bounded bytes, newest entries kept, misses reported so readers use the journal.
import Testing
import TestSupport
@testable import Acquisition

@Suite struct RecordRingTests {
    private func bytes(_ seq: UInt64, _ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: Int(seq) &+ $0) } }

    @Test func keepsTheNewestEntriesWithinItsCapacity() {
        var ring = RecordRing(capacity: 1_000)
        for seq in UInt64(1)...100 {
            bytes(seq, 90).withUnsafeBytes { ring.append(seq: seq, bytes: $0) }
            #expect(ring.byteCount <= 1_000)
        }
        #expect(ring.range == 90...100)
        #expect(ring.evicted == 89)
        #expect(ring.withEntry(100) { Array($0) } == bytes(100, 90))
        #expect(ring.withEntry(89) { Array($0) } == nil, "evicted: the reader must go to the journal")
        #expect(ring.withEntry(101) { Array($0) } == nil)
    }

    @Test(arguments: [1, 2, 3])
    func randomSizesNeverExceedTheBound(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var ring = RecordRing(capacity: 4_096)
        var kept: [UInt64: [UInt8]] = [:]
        for seq in UInt64(1)...5_000 {
            let data = bytes(seq, Int(rng.next() % 700) + 1)
            kept[seq] = data
            data.withUnsafeBytes { ring.append(seq: seq, bytes: $0) }
            #expect(ring.byteCount <= 4_096)
            if let range = ring.range {
                #expect(range.upperBound == seq)
                #expect(ring.withEntry(range.lowerBound) { Array($0) } == kept[range.lowerBound])
            }
        }
    }

    @Test func anEntryLargerThanTheRingIsNotKept() {
        var ring = RecordRing(capacity: 10)
        bytes(1, 5).withUnsafeBytes { ring.append(seq: 1, bytes: $0) }
        bytes(2, 50).withUnsafeBytes { ring.append(seq: 2, bytes: $0) }
        #expect(ring.range == nil)
        bytes(3, 5).withUnsafeBytes { ring.append(seq: 3, bytes: $0) }
        #expect(ring.range == 3...3)
    }
}
