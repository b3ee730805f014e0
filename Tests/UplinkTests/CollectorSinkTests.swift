// The collector's per-device sink with codec-3 (and codec-4) batches, on a real rebuilt journal: a batch that
// arrives ahead of a gap waits compressed and is decoded once its context is committed; one whose
// context differs from the journal is rejected; one that fails to decode late rewinds the stream
// to the journal and asks again — and acks only ever name what is synced.
import DAQCore
import Delivery
import Foundation
import Journal
import JournalStore
import Testing
import TestSupport
import Uplink
@testable import Collector

/// Every entry of a journal directory, in order.
private func readAll(_ directory: String) throws -> [JournalEntry] {
    let reader = try JournalReader(directory: directory, from: 1)
    var entries: [JournalEntry] = []
    while let entry = try reader.next() { entries.append(entry) }
    return entries
}

extension DeviceStreamSink {
    /// The collector's group commit with the sync done here instead of on `BackgroundSync`: the
    /// ack the commits so far allow, once they are durable.
    func syncInPlace() throws -> UInt64? {
        switch try nextSyncStep() {
        case .acknowledge(let upTo):
            return upTo
        case .sync(let ticket):
            let code = fdatasync(ticket.fd) == 0 ? 0 : errno
            Glibc.close(ticket.fd)
            return try syncFinished(errno: code)
        case nil:
            return nil
        }
    }
}

@Suite struct CollectorSinkTests {
    /// Records of two groups whose values drift, as a device's journal would hold them.
    static let entries: [[UInt8]] = (UInt64(1)...60).map { sequence in
        let group: UInt16 = sequence % 3 == 0 ? 2 : 1
        var payload = [UInt8(group), 0]
        for word in 0..<(group == 1 ? 9 : 5) {
            let value = UInt16(truncatingIfNeeded: Int(sequence) * (word + 1) * 7 + word * 1000)
            payload += [UInt8(value & 0xFF), UInt8(value >> 8)]
        }
        return JournalFraming.encode(kind: .record, sequence: sequence, payload: payload)
    }

    /// Entries `range` as the device would publish them: codec 3 (or 4 when `modelled`) against
    /// `context`, else codec 2.
    static func payload(_ range: ClosedRange<Int>, context: ClosedRange<Int>?, contextChecksum: UInt32? = nil,
                        corruptBody: Bool = false, modelled: Bool = false) -> [UInt8] {
        func joined(_ r: ClosedRange<Int>) -> ([UInt8], [Range<Int>]) {
            var body: [UInt8] = []
            var ranges: [Range<Int>] = []
            for entry in entries[(r.lowerBound - 1)...(r.upperBound - 1)] {
                ranges.append(body.count..<(body.count + entry.count))
                body += entry
            }
            return (body, ranges)
        }
        let (body, ranges) = joined(range)
        var header = UplinkBatch(deviceID: "sink-01", epoch: 9, first: UInt64(range.lowerBound), last: UInt64(range.upperBound),
                                 segmentStarts: [], codec: .transposedZstd, bodyLength: UInt32(body.count),
                                 bodyChecksum: UplinkBatch.entriesChecksum(body: body, entries: ranges))
        var transformContext: BatchTransform.Context?
        if let context {
            let (before, beforeRanges) = joined(context)
            transformContext = before.withUnsafeBytes { BatchTransform.Context(body: $0, entries: beforeRanges) }
            header.codec = .contextTransposedZstd
            header.context = .init(first: UInt64(context.lowerBound),
                                   checksum: contextChecksum ?? UplinkBatch.entriesChecksum(body: before, entries: beforeRanges))
        }
        if modelled, let transformContext {
            header.codec = .contextModelled
            return header.encodedHeader() + ContextCoder.encode(body: body, entries: ranges, context: transformContext)
        }
        var transformed = BatchTransform.encode(body: body, entries: ranges, context: transformContext)
        if corruptBody { transformed[transformed.count - 3] ^= 0x5A }  // a matrix byte: decodes, wrongly
        return header.encodedHeader() + transformed.withUnsafeBytes { BatchCompression.compress($0, level: 3) }
    }

    static func batch(_ payload: [UInt8]) throws -> ReceivedBatch {
        try ReceivedBatch(payload: payload, source: "devices/sink-01/data")
    }

    @Test(arguments: [false, true])
    func aCodec3Or4BatchAheadOfAGapWaitsForItsContext(modelled: Bool) throws {
        let work = try PackagePaths.temporaryDirectory("sink-gap")
        defer { try? FileManager.default.removeItem(at: work) }
        let sink = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: work.appendingPathComponent("journal").path)
        // 21…40 (context 1…20) and 41…60 (context 21…40) arrive before 1…20.
        let early = try Self.batch(Self.payload(21...40, context: 1...20, modelled: modelled))
        #expect(!early.isDecoded, "its context is not committed: it must wait encoded")
        #expect(try sink.receive(early, now: 0).resends == [1])
        _ = try sink.receive(try Self.batch(Self.payload(41...60, context: 21...40, modelled: modelled)), now: 1)
        #expect(sink.committed == 0)
        let result = try sink.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 2)
        #expect(result.rejected == nil)
        #expect(sink.committed == 60)
        #expect(try sink.syncInPlace() == 60)
        try sink.close()
        let rebuilt = try readAll(work.appendingPathComponent("journal").path)
        #expect(rebuilt.map(\.framed) == Self.entries)
    }

    /// The collector's pipelined group commit: one background sync at a time per device, its ack
    /// names only what it covered, and whatever was committed meanwhile gets the next sync.
    @Test func anAckWaitsForTheBackgroundSyncThatCoversIt() throws {
        let work = try PackagePaths.temporaryDirectory("sink-bgsync")
        defer { try? FileManager.default.removeItem(at: work) }
        let sink = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: work.appendingPathComponent("journal").path)
        let syncer = try BackgroundSync()
        defer { syncer.shutdown() }
        func runInBackground(_ step: DeviceStreamSink.SyncStep?) throws -> Int32 {
            guard case .sync(let ticket) = step else { Issue.record("expected a sync, got \(String(describing: step))"); return -1 }
            syncer.submit(token: Int(ticket.upTo), sync: ticket)
            var done: [BackgroundSync.Completion] = []
            while done.isEmpty {
                var fd = pollfd(fd: syncer.fileDescriptor, events: Int16(POLLIN), revents: 0)
                _ = poll(&fd, 1, 1000)
                done = syncer.takeCompletions()
            }
            #expect(done.map(\.token) == [Int(ticket.upTo)])
            return done[0].errno
        }

        _ = try sink.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 0)
        let first = try sink.nextSyncStep()
        // 21…40 commits while the sync of 1…20 runs: no second sync, no ack yet.
        _ = try sink.receive(try Self.batch(Self.payload(21...40, context: 1...20)), now: 1)
        #expect(try sink.nextSyncStep() == nil, "one sync at a time per device")
        #expect(try sink.syncFinished(errno: try runInBackground(first)) == 20, "the ack names what the sync covered")
        #expect(try sink.syncFinished(errno: try runInBackground(try sink.nextSyncStep())) == 40)
        #expect(try sink.nextSyncStep() == nil, "nothing earned, nothing to do")

        // A duplicate earns an ack again with nothing to sync: it goes at once.
        _ = try sink.receive(try Self.batch(Self.payload(21...40, context: 1...20)), now: 2)
        guard case .acknowledge(let upTo) = try sink.nextSyncStep() else { Issue.record("expected an immediate ack"); return }
        #expect(upTo == 40)
        try sink.close()
        #expect(try readAll(work.appendingPathComponent("journal").path).map(\.framed) == Array(Self.entries[0..<40]))
    }

    @Test(arguments: [false, true])
    func aContextThatDiffersFromTheJournalIsRejectedOnArrival(modelled: Bool) throws {
        let work = try PackagePaths.temporaryDirectory("sink-mismatch")
        defer { try? FileManager.default.removeItem(at: work) }
        let sink = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: work.appendingPathComponent("journal").path)
        _ = try sink.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 0)
        // Refused, and asked for again (the device codes a resend without a context); once per
        // resend interval, however many parts with that context were in flight.
        let refused = try sink.receive(try Self.batch(Self.payload(21...40, context: 1...20, contextChecksum: 0xBAD, modelled: modelled)), now: 1)
        #expect(refused.rejected?.code == .malformedInput && refused.resends == [21])
        let again = try sink.receive(try Self.batch(Self.payload(21...40, context: 1...20, contextChecksum: 0xBAD, modelled: modelled)), now: 2)
        #expect(again.rejected != nil && again.resends.isEmpty)
        #expect(sink.committed == 20)
        // A context read back from the journal instead of the last commit (as after a restart).
        try sink.close()
        let reopened = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: work.appendingPathComponent("journal").path)
        #expect(reopened.committed == 20)
        let result = try reopened.receive(try Self.batch(Self.payload(21...40, context: 11...20, modelled: modelled)), now: 2)
        #expect(result.rejected == nil)
        #expect(reopened.committed == 40)
        try reopened.close()
    }

    @Test func aHeldBatchThatFailsToDecodeRewindsToTheJournal() throws {
        let work = try PackagePaths.temporaryDirectory("sink-rewind")
        defer { try? FileManager.default.removeItem(at: work) }
        let sink = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: work.appendingPathComponent("journal").path)
        _ = try sink.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 0)
        #expect(try sink.syncInPlace() == 20)
        // In order (its context is committed) a corrupt codec-3 body is rejected on arrival, and
        // asked for again (the device codes a resend without a context).
        let refused = try sink.receive(try Self.batch(Self.payload(21...40, context: 1...20, corruptBody: true)), now: 1)
        #expect(refused.rejected?.code == .malformedInput && refused.resends == [21])
        #expect(sink.committed == 20)
        // Now the failure after the fact: a corrupt 21…40 held behind a gap at 1…20 on a fresh stream.
        let second = try PackagePaths.temporaryDirectory("sink-rewind-2")
        defer { try? FileManager.default.removeItem(at: second) }
        let late = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: second.appendingPathComponent("journal").path)
        _ = try late.receive(try Self.batch(Self.payload(21...40, context: 1...20, corruptBody: true)), now: 0)
        _ = try late.receive(try Self.batch(Self.payload(41...60, context: 21...40)), now: 1)
        let result = try late.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 2)
        #expect(result.rejected != nil, "the late decode failure is reported")
        #expect(result.resends == [21], "and the rest asked for again")
        #expect(late.committed == 20, "nothing past the journal counts as committed")
        #expect(try late.syncInPlace() == 20, "the ack names only what is synced")
        // The device resends 21…60 (codec 2 first, as after a resend request): the stream completes.
        _ = try late.receive(try Self.batch(Self.payload(21...40, context: nil)), now: 3)
        _ = try late.receive(try Self.batch(Self.payload(41...60, context: 21...40)), now: 4)
        #expect(late.committed == 60)
        try late.close()
        #expect(try readAll(second.appendingPathComponent("journal").path).map(\.framed) == Self.entries)
        try sink.close()
    }

    /// A damaged entry in the collector's own copy (kept at its restart: valid entries follow it)
    /// inside a batch's context: that batch is refused and asked for again, instead of the read
    /// error stopping the collector for every device; the context-free resend completes the stream.
    @Test func aContextThatCannotBeReadBackIsAskedForAgain() throws {
        let work = try PackagePaths.temporaryDirectory("sink-damaged-context")
        defer { try? FileManager.default.removeItem(at: work) }
        let directory = work.appendingPathComponent("journal").path
        let sink = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: directory)
        _ = try sink.receive(try Self.batch(Self.payload(1...20, context: nil)), now: 0)
        #expect(try sink.syncInPlace() == 20)
        try sink.close()
        // Flip a payload bit of entry 15 in the rebuilt journal.
        let segment = URL(fileURLWithPath: directory).appendingPathComponent(SegmentName.name(firstSequence: 1))
        var bytes = [UInt8](try Data(contentsOf: segment))
        var offsets: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
        bytes[offsets[15]! + JournalFraming.headerLength + 2] ^= 0x04
        try Data(bytes).write(to: segment)

        let reopened = try DeviceStreamSink(deviceID: "sink-01", epoch: 9, directory: directory)
        #expect(reopened.committed == 20)
        let refused = try reopened.receive(try Self.batch(Self.payload(21...40, context: 11...20)), now: 1)
        #expect(refused.rejected?.code == .malformedInput, "\(String(describing: refused.rejected))")
        #expect("\(String(describing: refused.rejected))".contains("cannot be read back from the rebuilt journal"))
        #expect(refused.resends == [21] && reopened.committed == 20)
        _ = try reopened.receive(try Self.batch(Self.payload(21...40, context: nil)), now: 2)
        #expect(reopened.committed == 40)
        try reopened.close()
    }
}

@Suite struct LostRunsTests {
    @Test func aRunInManyBatchesIsOneLineThenTheRunSoFarThenAllOfIt() {
        var runs = LostRuns(interval: 100)
        let reason = "deleted on the device"
        #expect(runs.add(device: "a", first: 10, last: 19, reason: reason, now: 0) == ["a: entries 10…19 committed as lost: \(reason)"])
        #expect(runs.add(device: "a", first: 20, last: 29, reason: reason, now: 50).isEmpty)
        #expect(runs.add(device: "b", first: 5, last: 5, reason: "unreadable", now: 60) == ["b: entries 5…5 committed as lost: unreadable"])
        #expect(runs.add(device: "a", first: 30, last: 39, reason: reason, now: 120) == ["a: entries 10…39 committed as lost so far: \(reason)"])
        #expect(runs.add(device: "a", first: 40, last: 49, reason: reason, now: 130).isEmpty)
        // Another run of the same device: the last one's rest first.
        #expect(runs.add(device: "a", first: 70, last: 70, reason: reason, now: 140)
                == ["a: entries 10…49 committed as lost in all: \(reason)", "a: entries 70…70 committed as lost: \(reason)"])
        #expect(runs.add(device: "a", first: 71, last: 72, reason: reason, now: 150).isEmpty)
        #expect(runs.finish() == ["a: entries 70…72 committed as lost in all: \(reason)"])
        #expect(runs.finish().isEmpty)
    }
}
