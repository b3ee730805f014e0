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
        syncer.submit(token: 7, fd: ticket.fd)
        #expect(try completions(syncer, count: 1).map { [$0.token, Int($0.errno)] } == [[7, 0]])
        try writer.finishSync(ticket, errno: 0)
        #expect(writer.lastSyncedSequence == 10, "entries appended after the ticket are not counted as synced")
        try writer.acknowledge(upTo: 10)
        #expect(throws: DAQError.self) { try writer.acknowledge(upTo: 12) }

        let next = try #require(try writer.beginSync())
        #expect(next.upTo == 15)
        syncer.submit(token: 8, fd: next.fd)
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
        syncer.submit(token: 1, fd: ticket.fd)
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
