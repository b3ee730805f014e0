// One device's stream on the collector: the pure CollectorStream decides, this sink keeps the
// early batches it holds and appends committed entries to the device's rebuilt journal, synced
// before any ack leaves (the rebuilt journal's last entry IS the committed high-water mark).
import DAQCore
import Delivery
import Journal
import JournalStore

final class DeviceStreamSink {
    let deviceID: String
    let epoch: UInt64
    /// A stream of another epoch than the device's first, kept beside it (`<device>/epoch-<E>/`).
    let besideFirst: Bool
    /// How the collector's messages name this stream: the device, and the epoch if beside the first.
    var label: String { CollectorDeviceReport.streamName(device: deviceID, epoch: epoch, besideFirst: besideFirst) }
    private let journal: JournalWriter
    private var stream: CollectorStream
    private var held: [Int: ReceivedBatch] = [:]
    private var nextBatchID = 0
    private(set) var committedEntries: UInt64 = 0
    /// Told of every commit (`first`, the batch body, the committed entries' ranges in it): the
    /// collector's MDF files follow the journal from there (`MDFTrail`).
    var onCommitted: ((UInt64, [UInt8], [Range<Int>]) -> Void)?
    private(set) var committedBytes: UInt64 = 0
    /// `lost` placeholders committed: entries the device could not read back from its journal.
    private(set) var lostEntries: UInt64 = 0
    /// Told of each run of `lost` placeholders committed (first, last, the device's reason).
    var onLost: ((UInt64, UInt64, String) -> Void)?
    /// The highest ack earned and not yet handed out by `nextSyncStep()`.
    private var pendingAck: UInt64?
    /// The entries of the last commits (the usual context of the next codec-3 or codec-4 batch).
    private var recentCommits = RecentEntries(keep: ContextCoder.contextEntries)
    private let directory: String

    /// Opens (or recovers) the device's rebuilt journal in `directory`; `recordedEpoch` is the
    /// epoch its copy is known to hold (`FirstStreamEpoch`, or the `epoch-<E>/` it lies in).
    init(deviceID: String, epoch: UInt64, directory: String, besideFirst: Bool = false,
         recordedEpoch: UInt64? = nil) throws(DAQError) {
        self.deviceID = deviceID
        self.epoch = epoch
        self.besideFirst = besideFirst
        self.directory = directory
        // Segments are cut only where the device cut them (appendFramed), never by size; the
        // quota is not a retention policy here: the collector keeps everything.
        var configuration = JournalConfiguration(epoch: epoch, segmentSizeLimit: Int.max / 4, quotaBytes: Int.max / 2)
        // A damaged header whose epoch nothing else gives is rebuilt with the recorded one.
        configuration.recordedEpoch = recordedEpoch
        journal = try JournalWriter(directory: directory, configuration: configuration)
        guard journal.epoch == epoch else {
            throw DAQError(.malformedInput, "device \(deviceID) sends epoch \(epoch) but its rebuilt journal has epoch \(journal.epoch)",
                           at: InputLocation(file: directory, field: "epoch"))
        }
        stream = CollectorStream(committed: journal.lastSequence)
    }

    var committed: UInt64 { stream.committed }
    var duplicates: UInt64 { stream.duplicates + carried.duplicates }
    var gaps: UInt64 { stream.gaps + carried.gaps }
    var gapsFilled: UInt64 { stream.gapsFilled + carried.gapsFilled }
    /// The counts of this run's earlier opening of the stream, closed while idle (`carryCounts`).
    private var carried: (duplicates: UInt64, gaps: UInt64, gapsFilled: UInt64) = (0, 0, 0)
    /// When the last batch arrived, or the copy was opened (loop clock).
    var lastReceived: Int64 = 0

    /// Nothing in flight: no batch held, no ack owed, no sync running, no conflict to remember.
    /// Such a copy may be closed while its device is quiet and opened again when it sends.
    var isQuiescent: Bool { held.isEmpty && pendingAck == nil && syncInFlight == nil && conflict == nil }

    /// Drops the entries kept as the next batch's usual context (a copy closed while idle: its
    /// counts are all that is kept; a reopened copy reads a context back from its journal).
    func shedMemory() {
        recentCommits = RecentEntries(keep: ContextCoder.contextEntries)
    }

    /// Takes over the counts of `earlier`, this stream's copy closed while idle, so the run's
    /// report counts the whole run.
    func carryCounts(from earlier: DeviceStreamSink) {
        committedEntries += earlier.committedEntries
        committedBytes += earlier.committedBytes
        lostEntries += earlier.lostEntries
        carried = (earlier.duplicates, earlier.gaps, earlier.gapsFilled)
    }

    /// Feeds one batch whose header was checked; returns where to ask the device to resend from
    /// and, if a held codec-3 batch turned out undecodable, why it was dropped. Committed entries
    /// are written but not yet durable: the ack they earn waits for the sync `nextSyncStep()` starts
    /// (group commit: one fdatasync for every batch of a loop turn).
    func receive(_ arrived: ReceivedBatch, now: Int64) throws(DAQError) -> (resends: [UInt64], rejected: DAQError?) {
        lastReceived = now
        var batch = arrived
        // Codec 3 or 4 whose context is committed: decode now, so a bad body is rejected before the
        // stream sees it, and so its entries the collector holds are compared with them (below). One
        // ahead of a gap waits encoded. A pure duplicate was not decoded, so not compared: a journal
        // restored from a backup sent new entries under committed numbers, acknowledged unseen.
        if !batch.isDecoded && batch.header.first - 1 <= stream.committed {
            do throws(DAQError) {
                try decode(&batch)
            } catch where error.code == .malformedInput && batch.header.context != nil {
                // Its context is not what this copy holds, cannot be read back from it, or its
                // body does not decode against it: ask for the entries again (the device codes the
                // resend without a context).
                return (stream.refused(now: now).map { [$0] } ?? [], error)
            }
        }
        if let conflict { throw conflict }
        if batch.isDecoded, batch.header.first <= stream.committed, let differing = differingEntry(batch) {
            conflict = DAQError(.malformedInput,
                "entry \(differing) differs from the one committed under the same epoch and number: the device's journal was "
                + "started again (a new card, a wiped directory) with the same --epoch given again. Its batches are refused, and not acknowledged "
                + "(the device keeps them), until the collector is stopped and this copy moved aside; started again, the collector "
                + "rebuilds the device's new stream from its first entry",
                at: InputLocation(file: directory, field: "entry \(differing)"))
            throw conflict!
        }
        nextBatchID += 1
        let id = nextBatchID
        held[id] = batch
        var resends: [UInt64] = []
        var rejected: DAQError?
        var actions = stream.receive(batch: id, first: batch.header.first, last: batch.header.last, bytes: batch.heldBytes, now: now)
        var index = 0
        while index < actions.count {
            let action = actions[index]
            index += 1
            switch action {
            case .commit(let batchID, let first, let last):
                guard var source = held[batchID] else { preconditionFailure("commit of a batch not held") }
                if !source.isDecoded {
                    do throws(DAQError) {
                        try decode(&source)
                    } catch where error.code == .malformedInput {
                        // The actions after this commit assumed it: go back to what the journal holds.
                        rejected = error
                        held.removeAll()
                        actions = stream.commitFailed(committed: journal.lastSequence, now: now)
                        index = 0
                        if journal.lastSequence > 0 { pendingAck = max(pendingAck ?? 0, journal.lastSequence) }
                        continue
                    }
                }
                try append(source, first: first, last: last)
            case .release(let batchID):
                held[batchID] = nil
            case .acknowledge(let upTo):
                pendingAck = max(pendingAck ?? 0, upTo)
            case .requestResend(let from):
                resends.append(from)
            }
        }
        return (resends, rejected)
    }

    /// The first entry of `batch` at or below the committed mark whose CRC32C (which covers all
    /// its bytes) differs from the committed entry's. A resend after a reconnect repeats committed
    /// entries byte for byte; a journal started again with the same epoch numbers new entries like
    /// them, and dropping those as duplicates would lose them silently. Nil when they match, or
    /// when the committed entries cannot be read back (damage in this copy).
    private func differingEntry(_ batch: ReceivedBatch) -> UInt64? {
        let first = batch.header.first, through = min(batch.header.last, stream.committed)
        guard let (body, entries) = try? committedEntries(first, through, source: batch.source) else { return nil }
        for index in 0..<entries.count where index < batch.entries.count {
            // A `lost` placeholder on either side is no sign of a new stream: the entry was
            // unreadable on the device then, or is now.
            let lost = JournalEntryKind.lost.rawValue
            guard body[entries[index].lowerBound + 4] != lost, batch.body[batch.entries[index].lowerBound + 4] != lost else { continue }
            let committed = body[(entries[index].upperBound - 4)..<entries[index].upperBound]
            let arrived = batch.body[(batch.entries[index].upperBound - 4)..<batch.entries[index].upperBound]
            if !committed.elementsEqual(arrived) { return first + UInt64(index) }
        }
        return nil
    }

    /// Set when the device sent an entry that differs from the committed one with its number:
    /// every later batch is refused with this error (appending would mix two streams).
    private(set) var conflict: DAQError?

    /// Decodes a codec-3 or codec-4 batch against its context, the committed entries `context.first..<first`,
    /// after checking they are the ones the device used.
    private func decode(_ batch: inout ReceivedBatch) throws(DAQError) {
        guard let reference = batch.header.context else { return try batch.decode(context: nil) }
        let (body, entries) = try committedEntries(reference.first, batch.header.first - 1, source: batch.source)
        let context = body.withUnsafeBytes { raw -> BatchTransform.Context? in
            guard UplinkBatch.ContextReference.checksum(body: raw, entries: entries) == reference.checksum else { return nil }
            return BatchTransform.Context(body: raw, entries: entries)
        }
        guard let context else {
            throw DAQError(.malformedInput, "context \(reference.first)…\(batch.header.first - 1) differs from the rebuilt journal",
                           at: InputLocation(file: batch.source, field: "context checksum"))
        }
        try batch.decode(context: context)
    }

    /// Committed entries `from...to`: from the last commits when they hold them, else from the
    /// rebuilt journal (after a restart, or a context longer than what is kept).
    private func committedEntries(_ from: UInt64, _ to: UInt64, source: String) throws(DAQError) -> ([UInt8], [Range<Int>]) {
        guard to <= journal.lastSequence else { preconditionFailure("context \(from)…\(to) is not committed") }
        if let held = recentCommits.entries(from: from, through: to) { return held }
        var body: [UInt8] = []
        var entries: [Range<Int>] = []
        do throws(DAQError) {
            let reader = try JournalReader(directory: directory, from: from)
            while UInt64(entries.count) <= to - from,
                  try reader.readEntries(maxEntries: Int(to - from) + 1 - entries.count, maxBytes: .max, through: to,
                                         into: &body, ranges: &entries) != nil {}
        } catch where error.code == .journalCorrupt {
            // Damage in this copy's own storage: that batch is refused (and asked for again
            // without a context), not the collector stopped for every device.
            throw DAQError(.malformedInput, "context \(from)…\(to) cannot be read back from the rebuilt journal: \(error)",
                           at: InputLocation(file: source, field: "context"))
        }
        guard UInt64(entries.count) == to - from + 1 else {
            throw DAQError(.malformedInput, "context \(from)…\(to) is not in the rebuilt journal",
                           at: InputLocation(file: source, field: "context"))
        }
        return (body, entries)
    }

    /// A sync running off the loop (`BackgroundSync`) and the ack it allows once it returned.
    private var syncInFlight: (ticket: JournalWriter.SyncTicket, ack: UInt64)?

    /// What to do next about the ack earned so far: send it (nothing it names waits for a sync),
    /// or make everything committed durable (data and high-water mark are the same bytes) with
    /// this sync, run off the loop, and report it with `syncFinished`; the ack never leaves before. Nil while one runs (the
    /// next covers everything committed meanwhile) or when no ack is earned.
    enum SyncStep {
        case acknowledge(UInt64)
        case sync(JournalWriter.SyncTicket)
    }

    func nextSyncStep() throws(DAQError) -> SyncStep? {
        guard syncInFlight == nil, let ack = pendingAck else { return nil }
        pendingAck = nil
        if journal.lastSyncedSequence < journal.lastSequence, let ticket = try journal.beginSync() {
            syncInFlight = (ticket, ack)
            return .sync(ticket)
        }
        return .acknowledge(ack)
    }

    /// The outcome of the sync `nextSyncStep` started (0 or its errno); returns the ack it allows.
    func syncFinished(errno code: Int32) throws(DAQError) -> UInt64? {
        guard let (ticket, ack) = syncInFlight else { return nil }
        syncInFlight = nil
        try journal.finishSync(ticket, errno: code)
        return ack
    }

    private func append(_ batch: ReceivedBatch, first: UInt64, last: UInt64) throws(DAQError) {
        let starts = batch.header.segmentStarts
        let entries = Array(batch.entries[Int(first - batch.header.first)...Int(last - batch.header.first)])
        try batch.body.withUnsafeBytes { raw in
            Result { () throws(DAQError) in
                // One write per segment piece. `ReceivedBatch.decode` checked (or computed) every
                // entry's CRC32C in these bytes; the writer still checks their framing.
                try journal.appendFramed(run: raw, entries: entries, checksumsVerifiedByCaller: true,
                                         startsSegment: { starts.contains($0) })
            }
        }.get()
        noteLost(first: first, body: batch.body, entries: entries)
        recentCommits.append(first: first, body: batch.body, entries: entries)
        committedEntries += UInt64(entries.count)
        committedBytes += UInt64(entries.last!.upperBound - entries.first!.lowerBound)
        onCommitted?(first, batch.body, entries)
    }

    /// Counts and reports the `lost` placeholders among committed entries (one byte per entry).
    private func noteLost(first: UInt64, body: [UInt8], entries: [Range<Int>]) {
        var run: (first: UInt64, last: UInt64, reason: String)?
        for (index, range) in entries.enumerated() {
            let sequence = first + UInt64(index)
            guard JournalEntryKind(rawValue: body[range.lowerBound + 4]) == .lost else { continue }
            lostEntries += 1
            if let open = run, open.last + 1 == sequence {
                run!.last = sequence
                continue
            }
            if let open = run { onLost?(open.first, open.last, open.reason) }
            let payload = body[(range.lowerBound + JournalFraming.headerLength)..<(range.upperBound - JournalFraming.trailerLength)]
            run = (sequence, sequence, String(decoding: payload, as: UTF8.self))
        }
        if let open = run { onLost?(open.first, open.last, open.reason) }
    }

    func close() throws(DAQError) {
        try journal.close()
    }
}
