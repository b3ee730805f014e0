// Syncs run off the loop: a ticket covers what was appended before it and nothing after, a failed
// fdatasync leaves the writer unusable, completions come back in order through the pipe, and the
// writer may close its own descriptor while a sync of its duplicate runs.
import Foundation
import Testing
import DAQCore
import Journal
import JournalStore

@Suite struct BackgroundSyncTests {
    /// Waits until the syncer's pipe is readable, then takes what finished.
    private func completions(_ syncer: BackgroundSync, count: Int) throws -> [BackgroundSync.Completion] {
        var done: [BackgroundSync.Completion] = []
        let deadline = Date().addingTimeInterval(10)
        while done.count < count {
            var fd = pollfd(fd: syncer.fileDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, 100)
            done += syncer.takeCompletions()
            guard Date() < deadline else { throw DAQError(.io, "background syncs did not finish in 10 s") }
        }
        return done
    }

    @Test func aTicketCoversWhatWasAppendedBeforeIt() throws {
        let dir = try freshJournalDirectory("bgsync")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 5, count: 10)
        let ticket = try #require(try writer.beginSync())
        #expect(ticket.upTo == 10)
        for sequence in UInt64(11)...15 { try writer.append(kind: .record, payload: pattern(sequence)) }

        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        syncer.submit(token: 7, sync: ticket)
        #expect(try completions(syncer, count: 1).map { [$0.token, Int($0.errno)] } == [[7, 0]])
        try writer.finishSync(ticket, errno: 0)
        #expect(writer.lastSyncedSequence == 10, "entries appended after the ticket are not counted as synced")
        try writer.acknowledge(upTo: 10)
        #expect(throws: DAQError.self) { try writer.acknowledge(upTo: 12) }

        let next = try #require(try writer.beginSync())
        #expect(next.upTo == 15)
        syncer.submit(token: 8, sync: next)
        _ = try completions(syncer, count: 1)
        try writer.finishSync(next, errno: 0)
        #expect(writer.lastSyncedSequence == 15)
        #expect(try writer.beginSync() == nil, "nothing left to sync")
        try writer.close()
        #expect(try readAll(dir).map(\.sequence) == Array(1...15))
    }

    @Test func theWriterMayCloseItsDescriptorWhileItsDuplicateSyncs() throws {
        let dir = try freshJournalDirectory("bgsync-close")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        try writer.append(kind: .record, payload: pattern(1))
        let ticket = try #require(try writer.beginSync())
        try writer.close()
        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        syncer.submit(token: 1, sync: ticket)
        #expect(try completions(syncer, count: 1).map { [$0.token, Int($0.errno)] } == [[1, 0]])
    }

    @Test func aFailedSyncLeavesTheWriterUnusable() throws {
        let dir = try freshJournalDirectory("bgsync-fail")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        try writer.append(kind: .record, payload: pattern(1))
        let ticket = try #require(try writer.beginSync())
        close(ticket.fd)
        // fdatasync on a pipe fails (EINVAL): a real failure from the worker, named by its errno.
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        close(fds[1])
        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        syncer.submit(token: 3, fd: fds[0])
        let done = try completions(syncer, count: 1)
        #expect(done.count == 1 && done[0].token == 3 && done[0].errno == EINVAL)

        let error = try #require(throws: DAQError.self) { try writer.finishSync(ticket, errno: done[0].errno) }
        #expect(error.description.contains("fdatasync"))
        #expect(writer.lastSyncedSequence == 0)
        #expect(throws: DAQError.self, "a writer whose sync failed takes no more entries") {
            try writer.append(kind: .record, payload: pattern(2))
        }
    }

    /// A deferred rotation (the device's) leaves its syncs to the next ticket: the new segment
    /// stays under its temporary name until the ticket synced what came before it, so no name
    /// ever stands for a segment whose predecessor's entries a power cut could still take. After
    /// a crash before that ticket, the next open names the new segment when it starts where the
    /// one before it ends (its entries kept: they were removed before), and removes it when that
    /// one lost its tail: never a gap between segments.
    @Test func aDeferredRotationIsSyncedAndRenamedByTheNextTicket() throws {
        let dir = try freshJournalDirectory("bgsync-rotation")
        defer { removeJournalDirectory(dir) }
        var writer: JournalWriter! = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5, segmentSizeLimit: 4096, quotaBytes: 1 << 20))
        writer.defersRotationSyncs = true
        var sequence: UInt64 = 0
        func appendUntilRotated(_ times: Int) throws {
            let before = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jnl.new") }.count
            while try FileManager.default.contentsOfDirectory(atPath: dir).filter({ $0.hasSuffix(".jnl.new") }).count < before + times {
                sequence += 1
                try writer.append(kind: .record, payload: pattern(sequence))
            }
        }
        try writer.sync()
        try appendUntilRotated(2)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(files.filter { $0.hasSuffix(".jnl") }.count == 1, "\(files)")
        let verify = try JournalVerifier.verify(directory: dir)
        #expect(verify.notes.filter { $0.contains("not yet renamed into place") }.count == 2, "\(verify.notes)")

        let ticket = try #require(try writer.beginSync())
        #expect(ticket.upTo == sequence)
        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        syncer.submit(token: 1, sync: ticket)
        #expect(try completions(syncer, count: 1).map(\.errno) == [0])
        try writer.finishSync(ticket, errno: 0)
        #expect(writer.lastSyncedSequence == sequence)
        let renamed = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(renamed.filter { $0.hasSuffix(".jnl") }.count == 3 && !renamed.contains { $0.hasSuffix(".new") }, "\(renamed)")
        #expect(try readAll(dir).map(\.sequence) == Array(1...sequence))

        // A kill after the next rotation, before its sync: the segment before the new one is
        // whole, so the new one is named at the next open, with its entry.
        let synced = sequence
        try appendUntilRotated(1)
        let lastOfOld = sequence - 1  // the entry that rotated went into the new segment
        writer = nil  // as a kill: descriptors closed, nothing synced
        let configuration = JournalConfiguration(epoch: 5, segmentSizeLimit: 4096, quotaBytes: 1 << 20)
        var reopened: JournalWriter! = try JournalWriter(directory: dir, configuration: configuration)
        #expect(reopened.lastSequence == sequence && lastOfOld > synced)
        #expect(reopened.recovery.adoptedSegments == [SegmentName.name(firstSequence: sequence)], "\(reopened.recovery)")
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir)).contains { $0.hasSuffix(".new") })
        #expect(try JournalVerifier.verify(directory: dir).isValid)
        #expect(try readAll(dir).map(\.sequence) == Array(1...sequence))

        // The same, but the segment before the new one lost its tail (a power cut took what was
        // not synced): the new one would stand after a gap, and goes.
        reopened.defersRotationSyncs = true
        writer = reopened
        reopened = nil
        try appendUntilRotated(1)
        let newest = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jnl") }.sorted().last)
        let unnamed = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".jnl.new") })
        writer = nil
        let path = dir + "/" + newest
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(truncate(path, off_t(size - 5)) == 0)
        reopened = try JournalWriter(directory: dir, configuration: configuration)
        #expect(reopened.lastSequence == sequence - 2, "the torn entry and the new segment's went")
        #expect(reopened.recovery.adoptedSegments.isEmpty && reopened.recovery.removedUnnamedSegments == [unnamed], "\(reopened.recovery)")
        #expect(reopened.recovery.truncatedSegment == newest)
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir)).contains { $0.hasSuffix(".new") })
        #expect(try JournalVerifier.verify(directory: dir).isValid)
        try reopened.close()
    }

    /// While a ticket that renames a new segment is out, a sync in place is refused (it would
    /// count the new segment's entries as synced before the rename), and retention keeps the
    /// last named segment (a crash would otherwise leave no segment at all: a new stream).
    @Test func whileARenameIsUnderWayNothingCountsItsEntriesOrDeletesTheLastNamedSegment() throws {
        let dir = try freshJournalDirectory("bgsync-inflight")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5, segmentSizeLimit: 4096, quotaBytes: 8192 + 28))
        writer.defersRotationSyncs = true
        var sequence: UInt64 = 0
        func appendOne() throws {
            sequence += 1
            try writer.append(kind: .record, payload: [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: 200))
        }
        // The first segment filled, synced and acknowledged whole; the next entry rotates.
        while !writer.startsSegment(payloadLength: 200) { try appendOne() }
        try writer.sync()
        try writer.acknowledge(upTo: sequence)
        try appendOne()
        let ticket = try #require(try writer.beginSync())
        let error = try #require(throws: DAQError.self) { try writer.sync() }
        #expect(error.description.contains("renames a new segment"), "\(error)")
        // A full quota may not delete the acknowledged segment while the next one has no name.
        let full = try #require(throws: DAQError.self) { while true { try appendOne() } }
        #expect(full.code == .journalFull, "\(full)")
        #expect(FileManager.default.fileExists(atPath: dir + "/" + SegmentName.name(firstSequence: 1)))
        #expect(!writer.canRetireASegment, "a paused acquisition would try again and again")
        // The rename done, the oldest segment may go, and appends go on.
        try writer.finishSync(ticket, errno: ticket.perform())
        #expect(writer.canRetireASegment)
        try appendOne()
        #expect(!FileManager.default.fileExists(atPath: dir + "/" + SegmentName.name(firstSequence: 1)))
        try writer.close()
        #expect(try JournalVerifier.verify(directory: dir).isValid)
    }

    /// An entry that opens a segment (a layout repeat) starts a new one even when it would fit the
    /// old one, and the record after it shares its segment even when both exceed the limit: every
    /// segment after the first starts with the repeat, none holds it alone.
    @Test func anEntryThatOpensASegmentIsItsFirstAndNeverAlone() throws {
        let dir = try freshJournalDirectory("opens-segment")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5, segmentSizeLimit: 1000, quotaBytes: 1 << 20))
        var sequence: UInt64 = 0
        for index in 0..<40 {
            // First a repeat smaller than a record (it would fit where the record does not), then
            // one so large that header, repeat and record exceed the limit together.
            let repeatPayload = [UInt8](repeating: 0x33, count: index < 30 ? 30 : 500)
            let record = [UInt8](repeating: 0x11, count: index < 30 ? 100 : 600)
            if writer.startsSegment(payloadLength: record.count) {
                sequence = try repeatPayload.withUnsafeBytes { try writer.append(kind: .layoutRepeat, payload: $0, opensSegment: true) }
            }
            sequence = try writer.append(kind: .record, payload: record)
        }
        try writer.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".jnl") }.sorted()
        #expect(names.count > 5, "\(names)")
        for name in names.dropFirst() {
            var kinds: [JournalEntryKind] = []
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
            _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { _, kind, _, _ in kinds.append(kind) } }
            #expect(kinds.first == .layoutRepeat && kinds.count >= 2 && kinds.dropFirst().allSatisfy { $0 == .record }, "\(name): \(kinds)")
        }
    }

    @Test func completionsComeBackInOrderAndShutdownRunsWhatIsQueued() throws {
        let dir = try freshJournalDirectory("bgsync-order")
        defer { removeJournalDirectory(dir) }
        let writer = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        let syncer = try BackgroundSync()
        var tickets: [JournalWriter.SyncTicket] = []
        for sequence in UInt64(1)...20 {
            try writer.append(kind: .record, payload: pattern(sequence))
            let ticket = try #require(try writer.beginSync())
            tickets.append(ticket)
            syncer.submit(token: Int(sequence), fd: ticket.fd)
        }
        let first = try completions(syncer, count: 5)
        syncer.shutdown()
        let all = first + syncer.takeCompletions()
        #expect(all.map(\.token) == Array(1...20), "every queued sync ran, in order, before shutdown returned")
        #expect(all.allSatisfy { $0.errno == 0 })
        for ticket in tickets { try writer.finishSync(ticket, errno: 0) }
        #expect(writer.lastSyncedSequence == 20)
        try writer.close()
    }
}

extension BackgroundSyncTests {
    /// The device persists its ack cursor off the loop: the ticket's write lands the cursor a
    /// reopened journal reads, the writer counts it only once told, and a cursor beyond what is
    /// synced is refused before anything is written.
    @Test func anAckTicketPersistsTheCursorOffTheCaller() throws {
        let dir = try freshJournalDirectory("bgack")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 5, count: 6)
        try writer.sync()
        #expect(throws: DAQError.self) { _ = try writer.beginAcknowledge(upTo: 7) }

        let ticket = try #require(try writer.beginAcknowledge(upTo: 4))
        #expect(ticket.upTo == 4 && writer.acknowledgedUpTo == 0)
        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        syncer.submit(token: 3, ack: ticket)
        let done = try completions(syncer, count: 1)
        #expect(done.map { [$0.token, Int($0.errno)] } == [[3, 0]])
        try writer.finishAcknowledge(ticket, errno: done[0].errno)
        #expect(writer.acknowledgedUpTo == 4)
        #expect(try writer.beginAcknowledge(upTo: 4) == nil, "not ahead of the persisted cursor")
        try writer.close()
        #expect(try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5)).acknowledgedUpTo == 4)
    }

    /// A cursor write that failed (here EIO, as a dying card reports it) leaves the cursor where it
    /// was and the writer usable: the entries stay until a later write succeeds.
    @Test func aFailedAckWriteLeavesTheCursorAndTheWriterUsable() throws {
        let dir = try freshJournalDirectory("bgackfail")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 5, count: 3)
        try writer.sync()
        let ticket = try #require(try writer.beginAcknowledge(upTo: 3))
        #expect(throws: DAQError.self) { try writer.finishAcknowledge(ticket, errno: EIO) }
        #expect(writer.acknowledgedUpTo == 0)
        try writer.append(kind: .record, payload: pattern(4))
        try writer.sync()
        try writer.acknowledge(upTo: 4)
        #expect(writer.acknowledgedUpTo == 4)
        try writer.close()
    }
}
