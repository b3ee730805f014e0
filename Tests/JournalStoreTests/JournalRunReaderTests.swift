// JournalReader.readEntries: runs of entries read into one caller-reused buffer — the same bytes
// `next()` returns, cut at segment ends and at the caller's limits, with faults reported as
// clearly as `next()` reports them (after the good entries before them).
import Foundation
import Testing
import DAQCore
import Journal
@testable import JournalStore
import TestSupport

@Suite struct JournalRunReaderTests {
    /// A closed journal of `count` pattern entries (the first a layout) in 2 KiB segments.
    private func segmentedJournal(_ label: String, count: UInt64, seed: UInt64 = 1) throws -> String {
        let dir = try freshJournalDirectory(label)
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 9, segmentSizeLimit: 2_048, quotaBytes: 1 << 22))
        for sequence in UInt64(1)...count {
            try writer.append(kind: sequence == 1 ? .layout : .record, payload: pattern(sequence, seed: seed))
        }
        try writer.close()
        return dir
    }

    /// Every run `readEntries` yields with these limits, read into one reused buffer.
    private func readRuns(_ reader: JournalReader, maxEntries: Int, maxBytes: Int, through last: UInt64 = .max)
        throws -> [(run: JournalEntryRun, bytes: [UInt8], ranges: [Range<Int>])] {
        var runs: [(run: JournalEntryRun, bytes: [UInt8], ranges: [Range<Int>])] = []
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        while true {
            bytes.removeAll(keepingCapacity: true)
            ranges.removeAll(keepingCapacity: true)
            guard let run = try reader.readEntries(maxEntries: maxEntries, maxBytes: maxBytes, through: last,
                                                   into: &bytes, ranges: &ranges) else { break }
            runs.append((run, bytes, ranges))
        }
        return runs
    }

    @Test(arguments: [(1, 1), (7, 1_000), (64, 700), (512, 1 << 20), (3, 50)] as [(Int, Int)])
    func runsHoldTheEntriesNextReturnsAndStopAtSegmentEndsAndLimits(maxEntries: Int, maxBytes: Int) throws {
        let dir = try segmentedJournal("runs-\(maxEntries)-\(maxBytes)", count: 300)
        defer { removeJournalDirectory(dir) }
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.isValid && report.segments.count > 10)
        for from in [1, 2, 17, 150] as [UInt64] {
            let expected = try readAll(dir, from: from)
            let runs = try readRuns(try JournalReader(directory: dir, from: from), maxEntries: maxEntries, maxBytes: maxBytes)
            var sequence = from
            for (run, bytes, ranges) in runs {
                #expect(run.firstSequence == sequence && run.count == ranges.count && run.count >= 1)
                #expect(run.count <= maxEntries)
                #expect(run.count == 1 || bytes.count <= maxBytes, "a run goes past maxBytes only with one entry")
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == bytes.count)
                let segment = try #require(report.segments.last { $0.firstSequence <= run.firstSequence })
                #expect(run.segmentFirstSequence == segment.firstSequence && run.lastSequence <= segment.lastSequence!,
                        "a run stays inside one segment")
                #expect(run.startsSegment == (run.firstSequence == segment.firstSequence))
                // It ends at the segment's end or at a limit, never short of both.
                let next = run.lastSequence + 1
                if run.lastSequence != segment.lastSequence, run.count < maxEntries, next <= report.lastSequence! {
                    let following = expected[Int(next - from)].framed.count
                    #expect(bytes.count + following > maxBytes, "run \(run) stopped early")
                }
                for (index, range) in ranges.enumerated() {
                    #expect(Array(bytes[range]) == expected[Int(sequence - from) + index].framed)
                }
                sequence += UInt64(run.count)
            }
            #expect(sequence == report.lastSequence! + 1, "every entry from \(from) on, once")
        }
    }

    @Test func aRunAppendsAfterWhatTheBufferHoldsAndStopsAtLast() throws {
        let dir = try segmentedJournal("runs-append", count: 40)
        defer { removeJournalDirectory(dir) }
        let expected = try readAll(dir)
        let reader = try JournalReader(directory: dir, from: 1)
        var bytes: [UInt8] = [0xAA, 0xBB, 0xCC]
        var ranges: [Range<Int>] = [0..<3]
        let run = try #require(try reader.readEntries(maxEntries: 100, maxBytes: 1 << 20, through: 3, into: &bytes, ranges: &ranges))
        #expect(run.firstSequence == 1 && run.count == 3 && run.startsSegment)
        #expect(Array(bytes[0..<3]) == [0xAA, 0xBB, 0xCC] && ranges.count == 4)
        for (index, range) in ranges.dropFirst().enumerated() { #expect(Array(bytes[range]) == expected[index].framed) }
        // Nothing after `last`; then the reader carries on where the run ended.
        #expect(try reader.readEntries(maxEntries: 100, maxBytes: 1 << 20, through: 3, into: &bytes, ranges: &ranges) == nil)
        #expect(ranges.count == 4)
        #expect(try reader.next()?.sequence == 4)
    }

    @Test func anEntryLargerThanMaxBytesIsReadAlone() throws {
        let dir = try freshJournalDirectory("runs-large")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        try writer.append(kind: .record, payload: [UInt8](repeating: 1, count: 10))
        try writer.append(kind: .record, payload: [UInt8](repeating: 2, count: 600_000))  // > the reader's 256 KiB chunk
        try writer.append(kind: .record, payload: [UInt8](repeating: 3, count: 10))
        try writer.close()
        let runs = try readRuns(try JournalReader(directory: dir, from: 1), maxEntries: 10, maxBytes: 1_000)
        #expect(runs.map(\.run.count) == [1, 1, 1])
        #expect(runs[1].bytes.count == JournalFraming.framedLength(payloadLength: 600_000))
        #expect(runs[1].bytes.dropFirst(JournalFraming.headerLength).prefix(600_000).allSatisfy { $0 == 2 })
    }

    @Test func aRunFollowsALiveWriterAcrossNewSegments() throws {
        let dir = try freshJournalDirectory("runs-follow")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 1, segmentSizeLimit: 2_048, quotaBytes: 1 << 20))
        let reader = try JournalReader(directory: dir, from: 1)
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        #expect(try reader.readEntries(maxEntries: 8, maxBytes: 1 << 20, into: &bytes, ranges: &ranges) == nil)
        var seen: [UInt64] = []
        for round in 0..<10 {
            for _ in 0..<(round * 7 + 1) { try writer.append(kind: .record, payload: pattern(writer.nextSequence)) }
            try writer.sync()
            for (run, runBytes, runRanges) in try readRuns(reader, maxEntries: 8, maxBytes: 1 << 20) {
                for (index, range) in runRanges.enumerated() {
                    let sequence = run.firstSequence + UInt64(index)
                    #expect(Array(runBytes[range]) == JournalFraming.encode(kind: .record, sequence: sequence, payload: pattern(sequence)))
                    seen.append(sequence)
                }
            }
            #expect(seen.last == writer.lastSequence)
        }
        #expect(seen == Array(1...writer.lastSequence))
        try writer.close()
    }

    /// Reads runs until the reader throws; returns the sequence numbers and bytes read before,
    /// and the error.
    private func readUntilFault(_ reader: JournalReader, maxEntries: Int = 1_000)
        throws -> (sequences: [UInt64], bytes: [UInt8], error: DAQError?) {
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        var sequences: [UInt64] = []
        do {
            while let run = try reader.readEntries(maxEntries: maxEntries, maxBytes: 1 << 20, into: &bytes, ranges: &ranges) {
                sequences += Array(run.firstSequence...run.lastSequence)
                #expect(ranges.count == sequences.count && ranges.last?.upperBound == bytes.count)
            }
        } catch {
            return (sequences, bytes, error)
        }
        return (sequences, bytes, nil)
    }

    @Test(arguments: [1, 5, 19] as [Int])
    func aTornClosedSegmentEndsTheRunThenThrowsNamingFileAndOffset(cut: Int) throws {
        let dir = try segmentedJournal("runs-torn-\(cut)", count: 100)
        defer { removeJournalDirectory(dir) }
        let victim = try JournalVerifier.verify(directory: dir).segments[2]
        let all = try readAll(dir)
        let path = dir + "/" + victim.name
        let tornAt = try fileSize(path) - all[Int(victim.lastSequence!) - 1].framed.count
        #expect(truncate(path, off_t(try fileSize(path) - cut)) == 0)  // its last entry loses `cut` bytes

        let before = all.filter { $0.sequence < victim.lastSequence! }
        for maxEntries in [1, 3, 1_000] {
            let (sequences, bytes, error) = try readUntilFault(try JournalReader(directory: dir, from: 1), maxEntries: maxEntries)
            #expect(sequences == before.map(\.sequence), "every entry before the torn one, then the error")
            #expect(bytes == before.flatMap(\.framed))
            #expect(error?.code == .journalCorrupt)
            #expect(error?.location?.file == path && error?.location?.field == "offset \(tornAt)", "\(String(describing: error))")
            #expect(error?.message.hasPrefix("torn entry") == true, "\(String(describing: error))")
        }
    }

    @Test func aTornTailOfTheNewestSegmentIsNotWrittenYet() throws {
        let dir = try segmentedJournal("runs-tail", count: 30)
        defer { removeJournalDirectory(dir) }
        let all = try readAll(dir)
        let newest = try #require(try segmentNames(dir).last)
        #expect(truncate(dir + "/" + newest, off_t(try fileSize(dir + "/" + newest) - 3)) == 0)
        let reader = try JournalReader(directory: dir, from: 1)
        let (sequences, _, error) = try readUntilFault(reader)
        #expect(error == nil)
        #expect(sequences == all.dropLast().map(\.sequence))
        // An offline reader (`journal dump`) is told what is left: the last entry less 3 bytes.
        let size = try fileSize(dir + "/" + newest)
        let framed = try #require(all.last?.framed.count)
        #expect(try reader.unreadTail() == JournalReader.UnreadTail(segment: newest, offset: size - (framed - 3),
                                                                    bytes: framed - 3, isHeader: false))
    }

    /// A journal that ends on an entry has no unread tail; one whose newest segment is shorter
    /// than its header (created as the power went) has one, from offset 0.
    @Test func theUnreadTailIsNamedOnlyWhenThereIsOne() throws {
        let dir = try segmentedJournal("runs-unread-tail", count: 30)
        defer { removeJournalDirectory(dir) }
        let whole = try JournalReader(directory: dir, from: 1)
        _ = try readUntilFault(whole)
        #expect(try whole.unreadTail() == nil)
        let stray = SegmentName.name(firstSequence: 31)
        #expect(FileManager.default.createFile(atPath: dir + "/" + stray, contents: Data([0x44, 0x41, 0x51])))
        let reader = try JournalReader(directory: dir, from: 1)
        let (sequences, _, error) = try readUntilFault(reader)
        #expect(error == nil && sequences.count == 30)
        #expect(try reader.unreadTail() == JournalReader.UnreadTail(segment: stray, offset: 0, bytes: 3, isHeader: true))
    }

    @Test(arguments: [(0, 3), (2, 18), (4, 1)] as [(Int, Int)])
    func aCorruptEntryEndsTheRunThenThrowsNamingFileAndOffset(entry: Int, byte: Int) throws {
        let dir = try segmentedJournal("runs-corrupt-\(entry)-\(byte)", count: 100)
        defer { removeJournalDirectory(dir) }
        let victim = try JournalVerifier.verify(directory: dir).segments[1]
        let all = try readAll(dir)
        let path = dir + "/" + victim.name
        let sequence = victim.firstSequence + UInt64(entry)
        let offset = SegmentHeader.length + all[Int(victim.firstSequence - 1)..<Int(sequence - 1)].reduce(0) { $0 + $1.framed.count }
        var segment = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        segment[offset + byte] ^= 0x40
        try Data(segment).write(to: URL(fileURLWithPath: path))

        let before = all.filter { $0.sequence < sequence }
        let (sequences, bytes, error) = try readUntilFault(try JournalReader(directory: dir, from: 1))
        #expect(sequences == before.map(\.sequence))
        #expect(bytes == before.flatMap(\.framed))
        #expect(error?.code == .journalCorrupt)
        #expect(error?.location?.file == path && error?.location?.field == "offset \(offset)", "\(String(describing: error))")
        // A reader that starts at the damaged entry throws at once, appending nothing.
        let reader = try JournalReader(directory: dir, from: sequence - UInt64(min(entry, 1)))
        var fresh: [UInt8] = []
        var ranges: [Range<Int>] = []
        if entry > 0 { _ = try reader.readEntries(maxEntries: 1, maxBytes: 1 << 20, into: &fresh, ranges: &ranges) }
        let count = fresh.count
        #expect(throws: DAQError.self) {
            _ = try reader.readEntries(maxEntries: 100, maxBytes: 1 << 20, into: &fresh, ranges: &ranges)
        }
        #expect(fresh.count == count && ranges.count == (entry > 0 ? 1 : 0))
    }
}
