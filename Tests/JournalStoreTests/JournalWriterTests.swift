// The writer on real files: sequence continuity across reopen, torn tails, rotation, ack cursor,
// the writer lock, and the reader following a live journal.
import Foundation
import Testing
import DAQCore
import Journal
import JournalStore
import TestSupport

@Suite struct JournalWriterTests {
    @Test func appendReopenContinuesTheSequence() throws {
        let dir = try freshJournalDirectory("reopen")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 77))
        #expect(writer.recovery.createdNewJournal)
        for sequence in UInt64(1)...100 {
            #expect(try writer.append(kind: sequence == 1 ? .layout : .record, payload: pattern(sequence)) == sequence)
        }
        try writer.close()

        let again = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 999))
        #expect(!again.recovery.createdNewJournal && again.recovery.truncatedBytes == 0)
        #expect(again.epoch == 77, "an existing journal keeps its epoch")
        #expect(again.lastSequence == 100 && again.lastSyncedSequence == 100)
        #expect(try again.append(kind: .record, payload: pattern(101)) == 101)
        try again.sync()

        let entries = try readAll(dir)
        #expect(entries.map(\.sequence) == Array(1...101))
        for entry in entries {
            #expect(entry.payload == pattern(entry.sequence))
            #expect(entry.kind == (entry.sequence == 1 ? .layout : .record))
            #expect(entry.framed == JournalFraming.encode(kind: entry.kind, sequence: entry.sequence, payload: entry.payload))
        }
        #expect(try readAll(dir, from: 60).map(\.sequence) == Array(60...101))
        try again.close()
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func reopenCutsATornTailAtRandomOffsets(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        for _ in 0..<8 {
            let dir = try freshJournalDirectory("torn")
            defer { removeJournalDirectory(dir) }
            let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
            var ends: [Int] = []
            var length = SegmentHeader.length
            for sequence in UInt64(1)...60 {
                let payload = pattern(sequence, seed: seed)
                try writer.append(kind: .record, payload: payload)
                length += JournalFraming.framedLength(payloadLength: payload.count)
                ends.append(length)
            }
            try writer.close()
            let path = dir + "/" + SegmentName.name(firstSequence: 1)
            let cut = Int.random(in: SegmentHeader.length...length, using: &random)
            #expect(truncate(path, off_t(cut)) == 0)

            let reopened = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
            let whole = ends.filter { $0 <= cut }
            let valid = whole.last ?? SegmentHeader.length
            #expect(reopened.lastSequence == UInt64(whole.count))
            #expect(reopened.recovery.truncatedBytes == cut - valid)
            #expect(try fileSize(path) == valid)
            #expect(try reopened.append(kind: .record, payload: pattern(UInt64(whole.count) + 1, seed: seed))
                    == UInt64(whole.count) + 1)
            try reopened.close()
            #expect(try JournalVerifier.verify(directory: dir).isValid)
            #expect(try readAll(dir).map(\.sequence) == Array(1...(UInt64(whole.count) + 1)))
        }
    }

    /// An empty directory is an empty journal (a writer killed before its first segment); one
    /// that holds other files and no segment is no journal: verify says so instead of "OK", and
    /// a writer refuses it instead of adding segments to it.
    @Test func aDirectoryOfOtherFilesIsNotAnEmptyJournal() throws {
        let dir = try freshJournalDirectory("not-a-journal")
        defer { removeJournalDirectory(dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(try JournalVerifier.verify(directory: dir).isValid)
        try Data("x".utf8).write(to: URL(fileURLWithPath: "\(dir)/passwd"))
        let report = try JournalVerifier.verify(directory: dir)
        #expect(!report.isValid && report.faults.map(\.problem) == [
            "no segments (*.jnl), and 1 file(s) no journal holds (passwd): not a journal directory"], "\(report.faults)")
        // Nor is it written into (`daqlink run --journal` given a wrong path).
        #expect {
            try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        } throws: { error in
            (error as? DAQError)?.code == .journalCorrupt && "\(error)".contains("not a journal directory; give a new or empty one")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["passwd"])
    }

    @Test func garbageTailIsCutAndReported() throws {
        let dir = try freshJournalDirectory("garbage")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 1, count: 5)
        try writer.close()
        let path = dir + "/" + SegmentName.name(firstSequence: 1)
        let before = try fileSize(path)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(JournalFraming.encode(kind: .record, sequence: 6, payload: [1, 2, 3]).dropLast()))
        handle.write(Data([0xFF]))
        try handle.close()
        let reopened = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        #expect(reopened.lastSequence == 5)
        #expect(reopened.recovery.truncatedAtOffset == before)
        guard case .checksumMismatch = reopened.recovery.truncationReason else {
            Issue.record("reason: \(String(describing: reopened.recovery.truncationReason))")
            return
        }
    }

    @Test func rotationNamesSegmentsByFirstSequence() throws {
        let dir = try freshJournalDirectory("rotate")
        defer { removeJournalDirectory(dir) }
        let limit = 4_096
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 5, segmentSizeLimit: limit, quotaBytes: 1 << 20))
        for sequence in UInt64(1)...400 { try writer.append(kind: .record, payload: pattern(sequence)) }
        // One entry larger than a segment still goes in (alone).
        try writer.append(kind: .record, payload: [UInt8](repeating: 7, count: 10_000))
        try writer.append(kind: .record, payload: pattern(402))
        try writer.sync()
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.isValid, "\(report.faults)")
        #expect(report.segments.count > 10)
        #expect(report.entries == 402 && report.firstSequence == 1 && report.lastSequence == 402)
        for (index, segment) in report.segments.enumerated() {
            #expect(segment.name == SegmentName.name(firstSequence: segment.firstSequence))
            #expect(segment.bytes <= limit || segment.entries == 1)
            if index > 0 { #expect(segment.firstSequence == report.segments[index - 1].lastSequence! + 1) }
        }
        #expect(try segmentNames(dir) == report.segments.map(\.name))
        #expect(try readAll(dir).map(\.sequence) == Array(1...402))
        // The reader tells which segment each entry is in (the uplink ships the boundaries).
        let reader = try JournalReader(directory: dir, from: 1)
        while let entry = try reader.next() {
            let segment = report.segments.last { $0.firstSequence <= entry.sequence }!
            #expect(reader.segmentFirstSequence == segment.firstSequence && reader.epoch == 5)
        }
        #expect(try readAll(dir, from: 250).first?.sequence == 250)
        try writer.close()
    }

    @Test func tornSegmentCreationIsRemoved() throws {
        let dir = try freshJournalDirectory("torn-create")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 1, count: 10)
        try writer.close()
        // A rotation cut short: the new file exists with part of its header.
        let torn = dir + "/" + SegmentName.name(firstSequence: 11)
        #expect(FileManager.default.createFile(atPath: torn, contents: Data(SegmentHeader(epoch: 1, firstSequence: 11).bytes.prefix(17))))
        let reopened = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        #expect(reopened.recovery.removedSegments == [SegmentName.name(firstSequence: 11)])
        #expect(reopened.lastSequence == 10)
        #expect(try reopened.append(kind: .record, payload: []) == 11)
        try reopened.close()
        #expect(try JournalVerifier.verify(directory: dir).isValid)
    }

    @Test func ackCursorIsPersistedAndMonotonic() throws {
        let dir = try freshJournalDirectory("ack")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 3, count: 50)
        #expect(throws: DAQError.self) { try writer.acknowledge(upTo: 10) }  // nothing synced yet
        try writer.sync()
        try writer.acknowledge(upTo: 40)
        try writer.acknowledge(upTo: 20)  // a late duplicate ack changes nothing
        #expect(writer.acknowledgedUpTo == 40)
        do {
            try writer.acknowledge(upTo: 51)
            Issue.record("ack beyond the synced entries accepted")
        } catch {
            #expect(error.code == .journalMisuse)
        }
        try writer.close()
        #expect(!FileManager.default.fileExists(atPath: dir + "/ack.tmp"))
        let reopened = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 3))
        #expect(reopened.acknowledgedUpTo == 40 && !reopened.recovery.ackCursorReset)
        try reopened.close()
        #expect(try JournalVerifier.verify(directory: dir).acknowledgedUpTo == 40)
    }

    @Test func secondWriterIsRefused() throws {
        let dir = try freshJournalDirectory("busy")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        do {
            _ = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
            Issue.record("second writer opened")
        } catch {
            #expect(error.code == .journalBusy)
        }
        try writer.close()
        let after = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1))
        try after.close()
    }

    @Test func readerFollowsALiveWriter() throws {
        let dir = try freshJournalDirectory("follow")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 1, segmentSizeLimit: 2_048, quotaBytes: 1 << 20))
        let reader = try JournalReader(directory: dir, from: 1)
        #expect(try reader.next() == nil)
        var seen: [UInt64] = []
        for round in 0..<10 {
            for _ in 0..<(round * 7 + 1) {
                try writer.append(kind: .record, payload: pattern(writer.nextSequence))
            }
            try writer.sync()
            while let entry = try reader.next() {
                #expect(entry.payload == pattern(entry.sequence))
                seen.append(entry.sequence)
            }
            #expect(seen.last == writer.lastSequence)
        }
        #expect(seen == Array(1...writer.lastSequence))
        try writer.close()
    }

    @Test func verifyNamesTheSegmentAndOffsetOfAFlippedByte() throws {
        let dir = try freshJournalDirectory("verify")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 1, segmentSizeLimit: 2_048, quotaBytes: 1 << 20))
        for sequence in UInt64(1)...60 { try writer.append(kind: .record, payload: pattern(sequence, max: 100)) }
        try writer.close()
        let names = try segmentNames(dir)
        let victim = names[1]
        let path = dir + "/" + victim
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The third entry of the second segment.
        var offset = SegmentHeader.length
        for _ in 0..<2 { offset += (Int(bytes[offset]) | (Int(bytes[offset + 1]) << 8)) + JournalFraming.overhead }
        bytes[offset + 18] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.faults.count >= 1)
        #expect(report.faults.first?.file == victim && report.faults.first?.offset == offset)
        let result = try runProcess(PackagePaths.executable("daqctl").path, ["journal", "verify", dir])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(victim) offset \(offset)"), "\(result.stderr)")
        #expect(result.stderr.contains("CRC32C mismatch"))
        // The reader refuses to hand out bytes past the damage in a closed segment.
        #expect(throws: DAQError.self) { _ = try readAll(dir) }
    }
}

/// The collector's batched append: many framed entries per write, cut into segments exactly where
/// asked, byte-identical to appending them one by one; a bad entry stops the run after the good ones.
@Suite struct JournalAppendRunTests {
    @Test func aRunOfFramedEntriesMatchesOneByOneAppendsSegmentForSegment() throws {
        let source = (UInt64(1)...40).map { JournalFraming.encode(kind: $0 == 1 ? .layout : .record, sequence: $0, payload: pattern($0)) }
        let cuts: Set<UInt64> = [1, 9, 10, 33]
        let single = try freshJournalDirectory("run-single")
        let batched = try freshJournalDirectory("run-batched")
        defer { removeJournalDirectory(single); removeJournalDirectory(batched) }
        let configuration = JournalConfiguration(epoch: 5, segmentSizeLimit: Int.max / 4, quotaBytes: Int.max / 2)
        let one = try JournalWriter(directory: single, configuration: configuration)
        for (index, entry) in source.enumerated() {
            try entry.withUnsafeBytes { raw in
                try Result { () throws(DAQError) in try one.appendFramed(raw, startsSegment: cuts.contains(UInt64(index + 1))) }.get()
            }
        }
        try one.close()
        let run = try JournalWriter(directory: batched, configuration: configuration)
        // Three runs, the second starting on a cut, as three batches would arrive.
        for slice in [source[0..<9], source[9..<33], source[33...]] {
            var body: [UInt8] = []
            var ranges: [Range<Int>] = []
            for entry in slice {
                ranges.append(body.count..<(body.count + entry.count))
                body += entry
            }
            try body.withUnsafeBytes { raw in
                try Result { () throws(DAQError) in
                    try run.appendFramed(run: raw, entries: ranges, startsSegment: { cuts.contains($0) })
                }.get()
            }
        }
        #expect(run.segmentFirstSequences == [1, 9, 10, 33])
        try run.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: single).filter { $0.hasSuffix(".jnl") }.sorted()
        #expect(names == (try FileManager.default.contentsOfDirectory(atPath: batched).filter { $0.hasSuffix(".jnl") }.sorted()))
        for name in names {
            #expect(FileManager.default.contents(atPath: single + "/" + name) == FileManager.default.contents(atPath: batched + "/" + name),
                    "segment \(name) differs")
        }
    }

    @Test func aBadEntryInARunKeepsTheEntriesBeforeIt() throws {
        let dir = try freshJournalDirectory("run-bad")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        var body: [UInt8] = []
        var ranges: [Range<Int>] = []
        for sequence in UInt64(1)...6 {
            let entry = JournalFraming.encode(kind: .record, sequence: sequence, payload: pattern(sequence))
            ranges.append(body.count..<(body.count + entry.count))
            body += entry
        }
        body[ranges[4].lowerBound + JournalFraming.headerLength] ^= 1  // entry 5's CRC no longer matches
        #expect(throws: DAQError.self) {
            try body.withUnsafeBytes { raw in
                try Result { () throws(DAQError) in try writer.appendFramed(run: raw, entries: ranges, startsSegment: { _ in false }) }.get()
            }
        }
        #expect(writer.lastSequence == 4)
        try writer.sync()
        #expect(try readAll(dir).map(\.sequence) == [1, 2, 3, 4])
        try writer.close()
    }

    /// A caller that has just checked the CRCs (the collector) spares the writer that work; the
    /// framing itself (contiguity, sequence, kind) is still checked.
    @Test func checksumsVerifiedByCallerSkipsOnlyTheCRC() throws {
        let dir = try freshJournalDirectory("run-verified")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        var body: [UInt8] = []
        var ranges: [Range<Int>] = []
        for sequence in [1, 2, 3, 5] as [UInt64] {  // 5 where 4 belongs
            let entry = JournalFraming.encode(kind: .record, sequence: sequence, payload: pattern(sequence))
            ranges.append(body.count..<(body.count + entry.count))
            body += entry
        }
        #expect(throws: DAQError.self) {
            try body.withUnsafeBytes { raw in
                try Result { () throws(DAQError) in
                    try writer.appendFramed(run: raw, entries: ranges, checksumsVerifiedByCaller: true, startsSegment: { _ in false })
                }.get()
            }
        }
        #expect(writer.lastSequence == 3)
        try writer.sync()
        #expect(try readAll(dir).map(\.payload) == (UInt64(1)...3).map { pattern($0) })
        try writer.close()
    }
}
