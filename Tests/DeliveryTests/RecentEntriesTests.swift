// The window of recent entries both sides keep for context-coded batches: what it holds after
// runs are appended, that a gap starts it afresh, and that a context cut from it is the one a
// collector rebuilds from the same entries.
import Journal
import Testing
@testable import Delivery

@Suite struct RecentEntriesTests {
    /// Entries `first…` of the reference-like random body, as runs of `sizes` entries.
    static func runs(_ sizes: [Int], first: UInt64 = 1, seed: UInt64 = 3) -> [(first: UInt64, body: [UInt8], entries: [Range<Int>])] {
        var random = Xorshift(seed: seed)
        let body = BatchTransformTests.randomBody(entries: sizes.reduce(0, +), first: first, random: &random)
        let ranges = BatchTransformTests.ranges(body)
        var result: [(UInt64, [UInt8], [Range<Int>])] = []
        var start = 0
        for size in sizes {
            let slice = ranges[start..<(start + size)]
            let base = slice.first!.lowerBound
            result.append((first + UInt64(start), Array(body[base..<slice.last!.upperBound]), slice.map { ($0.lowerBound - base)..<($0.upperBound - base) }))
            start += size
        }
        return result
    }

    @Test func keepsAtLeastItsWindowOfWholeRuns() throws {
        var recent = RecentEntries(keep: 25)
        for run in Self.runs([10, 10, 10, 10, 3]) { recent.append(first: run.first, body: run.body, entries: run.entries) }
        // 43 entries appended: the oldest run goes (33 left ≥ 25), the next stays (23 < 25).
        #expect(recent.first == 11)
        #expect(recent.next == 44)
        #expect(recent.newestRunCount == 3)
        #expect(recent.entries(from: 10, through: 30) == nil)
        #expect(recent.entries(from: 30, through: 44) == nil)
        let (body, entries) = try #require(recent.entries(from: 28, through: 43))
        #expect(entries.count == 16)
        let all = Self.runs([10, 10, 10, 10, 3]).flatMap { run in run.entries.map { Array(run.body[$0]) } }
        #expect(entries.map { Array(body[$0]) } == Array(all[27...42]))
    }

    /// A collector keeps the entries it committed, not the whole body that brought them (a batch
    /// that repeats committed entries, one new one at its end), and no more than `maxBytes` of
    /// older runs: before, a device sending big batches that each repeated the last ones made it
    /// keep 256 whole bodies (gigabytes).
    @Test func keepsOnlyTheEntriesAppendedAndAtMostItsBytes() throws {
        var recent = RecentEntries(keep: 256)
        let batch = Self.runs([40])[0]
        // The last entry alone was new.
        recent.append(first: 40, body: batch.body, entries: [batch.entries[39]])
        #expect(recent.heldBytes == batch.entries[39].count)
        #expect(try #require(recent.entries(from: 40, through: 40)).body == Array(batch.body[batch.entries[39]]))
        // Runs of 1 MiB entries (one each): older ones go beyond 8 MiB, the newest always stays.
        var big = RecentEntries(keep: 256)
        let entry = [UInt8](repeating: 7, count: 1 << 20)
        for sequence in 1...20 { big.append(first: UInt64(sequence), body: entry, entries: [0..<entry.count]) }
        #expect(big.heldBytes <= RecentEntries.maxBytes && big.first == 13 && big.next == 21)
        var huge = RecentEntries(keep: 256)
        let giant = [UInt8](repeating: 1, count: RecentEntries.maxBytes + 1)
        huge.append(first: 1, body: giant, entries: [0..<giant.count])
        #expect(huge.heldBytes == giant.count && huge.next == 2)
    }

    @Test func aRunThatDoesNotContinueStartsAfresh() {
        var recent = RecentEntries(keep: 100)
        let runs = Self.runs([5, 5, 5])
        recent.append(first: runs[0].first, body: runs[0].body, entries: runs[0].entries)
        recent.append(first: runs[2].first, body: runs[2].body, entries: runs[2].entries)
        #expect(recent.first == 11)
        #expect(recent.context(before: 11, count: 10) == nil, "nothing held before 11")
        #expect(recent.context(before: 17, count: 10) == nil, "16 is not held")
    }

    /// The device cuts a context from its window; the collector, holding the same entries, gets
    /// the same reference and the same coder context.
    @Test func aContextIsTheLastEntriesBeforeTheBatch() throws {
        var recent = RecentEntries(keep: 12)
        let runs = Self.runs([8, 8, 8])
        for run in runs { recent.append(first: run.first, body: run.body, entries: run.entries) }
        let (context, reference) = try #require(recent.context(before: 25, count: 12))
        #expect(reference.first == 13)
        let (body, entries) = try #require(recent.entries(from: 13, through: 24))
        #expect(reference.checksum == UplinkBatch.entriesChecksum(body: body, entries: entries))
        #expect(context == body.withUnsafeBytes { BatchTransform.Context(body: $0, entries: entries) })
        // Asking for more than is held gives what is held; more than a header may name is capped.
        #expect(recent.context(before: 25, count: 100)?.1.first == recent.first)
        var long = RecentEntries(keep: 5000)
        let big = Self.runs([5000])[0]
        long.append(first: big.first, body: big.body, entries: big.entries)
        #expect(long.context(before: 5001, count: 10_000)?.1.first == 5001 - UplinkBatch.maxContextEntries)
    }
}
