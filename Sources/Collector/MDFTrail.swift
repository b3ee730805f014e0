// The collector's MDF files trail its rebuilt journals, off the drain's path. The journal is the
// truth the ack promises; the MDF files are derived from it (a restart rewrites the files it was
// writing from the journal) and need not be written before the device hears that its
// entries are safe — nor with the CPU time the next batches need. Written on the loop, they cost a
// backlog drain about a third of the collector's CPU time (per-record queueing and a second
// write of every byte). So one thread at SCHED_IDLE writes them: it runs on CPU time nothing else
// wants, catches up as soon as the load drops, and finishes every file before a clean stop ends.
//
// Committed entries reach it as the batch bodies they arrived in while those fit in `maxQueued`
// bytes; beyond that (a collector short of CPU for longer than a burst), it reads them back from
// the rebuilt journal instead, so RAM stays bounded however far the files trail.
//
// While commits arrive as a backlog drains (over `burstBytes` in a `burstWindow`), the thread is
// given nothing: idle priority alone left it taking ~10 % of a loopback drain's time (it runs
// whenever a core waits a moment). Nor are the burst's bodies kept: holding 50 MB of them made the
// loop fault in 50 MB of fresh pages during the drain (~25 ms of its CPU), where bodies let go at
// once are reused by the next batch. Once a window passes without a burst (`tick`), the thread
// reads the burst back from the rebuilt journal, still in the page cache. A hold lasts `maxHold`
// at most: a fleet whose live data alone commits that fast is not a burst, and its files must not
// wait for the collector to stop (the next hold needs a window without a burst first).
import DAQCore
import Journal
import JournalStore
import Acquisition
import MDFFiles
import Runtime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One device's MDF files, fed its committed entries in order. Which measurement it was writing
/// survives a kill (`measurementLog`), so a restart rewrites from there: files still being written
/// when the collector died — several measurements' worth, if the trail lagged — are complete
/// again. Every call after `init` runs on the MDF thread (unchecked Sendable: the loop only
/// creates it and hands it to that thread's jobs).
final class MDFFollower: @unchecked Sendable {
    let deviceID: String
    private let journalDirectory: String
    private let mdfDirectory: String
    private var recording: MDFRecording?
    /// The layout payload of `recording`'s measurement, to tell a layout repeat of another one.
    private var recordingLayout: [UInt8] = []
    /// Whether a record after a `lost` placeholder is still `recording`'s measurement's (the
    /// device's rebuild follows the same rule).
    private var continuity = MeasurementContinuity()
    /// The next entry to feed: everything before it is in the files (or had none).
    private var next: UInt64
    /// Set while the current measurement's file must first be rebuilt from the journal, through
    /// this entry (the collector restarted with entries already committed).
    private var resumeThrough: UInt64?
    /// The first error met; the follower does nothing more after it.
    private(set) var failure: DAQError?
    /// Journal bytes read back at a time: the files are written after each such run, so RAM stays
    /// bounded however much is read back (a burst, or a whole measurement after a restart).
    let runBytes: Int
    /// The most MDF bytes ever queued in RAM before a write.
    private(set) var mostUnwritten = 0

    init(deviceID: String, journalDirectory: String, mdfDirectory: String, committed: UInt64, runBytes: Int = 4 << 20) {
        self.deviceID = deviceID
        self.journalDirectory = journalDirectory
        self.mdfDirectory = mdfDirectory
        self.runBytes = runBytes
        next = committed + 1
        resumeThrough = committed > 0 ? committed : nil
    }

    /// Runs `body`, keeping its error as `failure`; false if it (or an earlier step) failed.
    func run(_ body: () throws(DAQError) -> Void) -> Bool {
        guard failure == nil else { return false }
        do throws(DAQError) { try body() } catch { failure = error }
        return failure == nil
    }

    /// Feeds committed entries `entries` of `body`, the first one `first`: what the files already
    /// hold is skipped, and entries between the files' end and `first` are read from the journal.
    func feed(first: UInt64, body: [UInt8], entries: [Range<Int>]) throws(DAQError) {
        try resumeIfNeeded()
        let last = first + UInt64(entries.count) - 1
        guard last >= next else { return }
        if first > next { try catchUp(through: first - 1) }
        let skip = Int(next - first)
        try record(body, entries: entries[skip...], first: next)
        next = last + 1
        try flush()
    }

    /// Feeds the committed entries through `last` that the files do not hold yet, from the journal.
    func catchUp(through last: UInt64) throws(DAQError) {
        try resumeIfNeeded()
        guard last >= next else { return }
        try forEachRun(from: next, through: last) { bytes, entries, first throws(DAQError) in
            try record(bytes, entries: entries[...], first: first)
            try flush()
        }
        next = last + 1
    }

    private func flush() throws(DAQError) {
        mostUnwritten = max(mostUnwritten, recording?.unwrittenBytes ?? 0)
        try recording?.flush()
    }

    /// Finalizes the current measurement's files (a clean stop).
    func finish() throws(DAQError) {
        try resumeIfNeeded()
        try recording?.finish()
        recording = nil
    }

    /// After a restart: the files are written again from the start of the last measurement the
    /// log names (`measurementLog`) — every one before it was finished before that line was
    /// written — so they come out as if the collector had never stopped. No log: from the start.
    private func resumeIfNeeded() throws(DAQError) {
        guard let through = resumeThrough else { return }
        resumeThrough = nil
        next = Self.lastMeasurement(inLog: measurementLog, atMost: through) ?? 1
        try catchUp(through: through)
    }

    /// `<mdf directory>/.measurements`: the layout entry of each measurement the follower started,
    /// one line each, appended (and synced) after the previous measurement's files were finished.
    private var measurementLog: String { "\(mdfDirectory)/.measurements" }

    /// The last layout entry named in `log` that is at most `through` (a torn last line is not
    /// one: its measurement's predecessor was finished, and is simply written again).
    static func lastMeasurement(inLog log: String, atMost through: UInt64) -> UInt64? {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").compactMap { UInt64($0) }.last { $0 <= through }
    }

    /// Calls `body` with each run of the journal's entries `from...through`: their framed bytes,
    /// each one's range in them, and the first one's sequence number.
    private func forEachRun(from sequence: UInt64, through last: UInt64,
                            _ body: ([UInt8], [Range<Int>], UInt64) throws(DAQError) -> Void) throws(DAQError) {
        let reader = try JournalReader(directory: journalDirectory, from: sequence)
        var bytes: [UInt8] = [], entries: [Range<Int>] = []
        var expected = sequence
        while expected <= last {
            let read: JournalEntryRun?
            do {
                read = try reader.readEntries(maxEntries: 4096, maxBytes: runBytes, through: last, into: &bytes, ranges: &entries)
            } catch {
                // Damaged storage under the rebuilt journal (docs/journal.md): the files go
                // without the records it took.
                guard error.code == .journalCorrupt, let damage = try reader.skipDamaged() else { throw error }
                expected = max(expected, damage.last + 1)
                continuity.lost()  // read like a `lost` placeholder
                continue
            }
            guard let run = read else { break }
            try body(bytes, entries, run.firstSequence)
            expected = run.lastSequence + 1
            bytes.removeAll(keepingCapacity: true)
            entries.removeAll(keepingCapacity: true)
        }
        guard expected > last else {
            throw DAQError(.journalCorrupt, "the rebuilt journal ends at seq \(expected - 1); its MDF files need seq \(last)",
                           at: InputLocation(file: journalDirectory))
        }
    }

    /// A layout entry starts a new measurement file (the previous one is finished first), and so
    /// does a layout repeat with no file open or of another layout than the open file's; a record
    /// goes to the current one, and a `lost` placeholder ends it.
    private func record(_ body: [UInt8], entries: ArraySlice<Range<Int>>, first: UInt64) throws(DAQError) {
        try body.withUnsafeBytes { raw in
            Result { () throws(DAQError) in
                var sequence = first
                for range in entries {
                    defer { sequence += 1 }
                    guard range.count >= JournalFraming.overhead else { continue }
                    let payload = UnsafeRawBufferPointer(
                        rebasing: raw[(range.lowerBound + JournalFraming.headerLength)..<(range.upperBound - JournalFraming.trailerLength)])
                    switch JournalEntryKind(rawValue: raw[range.lowerBound + 4]) {
                    case .record:
                        guard let current = recording else { break }
                        guard current.fits(payload) else {
                            // Not this measurement's record: the layout entry before it was lost
                            // (a `lost` placeholder). Its measurement's layout is unknown: no
                            // file until the next layout entry or repeat.
                            try current.finish()
                            recording = nil
                            break
                        }
                        if continuity.admits(payload) { try current.append(payload) }
                    case .layout:
                        try startMeasurement(payload, at: sequence)
                    case .lost:
                        // An entry the device could not read back: it may have been the layout entry
                        // of a new measurement, whose records then fit the open file's layout (the
                        // same experiment started again) and went into it, at times counted from the
                        // wrong start. So the records after it decide (`MeasurementContinuity`):
                        // a group's time going back holds them out of the file until the next
                        // layout repeat says which measurement is in force (it ended here, before:
                        // one lost record cost the file the rest of the segment, and the repeat
                        // started another).
                        continuity.lost()
                    case .layoutRepeat:
                        // The layout in force, at a segment's start: the open file's (whatever was
                        // lost since was its own), or with no file open, records held out since a
                        // `lost` entry, or another layout, the records from here go to a file of
                        // their own.
                        if recording != nil, continuity.layoutRepeated(same: payload.elementsEqual(recordingLayout)) { break }
                        try startMeasurement(payload, at: sequence)
                    default:
                        break
                    }
                }
            }
        }.get()
    }
}

extension MDFFollower {
    /// Finishes the open file and starts measurement `measurement-<sequence>` with `payload`'s
    /// layout, logged first (`measurementLog`) so a restart rewrites it from there.
    fileprivate func startMeasurement(_ payload: UnsafeRawBufferPointer, at sequence: UInt64) throws(DAQError) {
        try recording?.finish()
        recording = nil
        _ = mkdir(mdfDirectory, 0o755)
        try DurableLines.append(Array("\(sequence)\n".utf8), to: measurementLog)
        let layout = try MeasurementLayout(decoding: payload, source: "\(deviceID) seq \(sequence)")
        recording = try MDFRecording(directory: mdfDirectory, name: "measurement-\(sequence)", layout: layout)
        recordingLayout = Array(payload)
        continuity = MeasurementContinuity()
    }
}

/// The collector's side of the MDF thread: hands each device's commits to its `MDFFollower`, in
/// order, and reports failures (`failures(removing:)`).
final class MDFTrail {
    /// Batch bodies queued for the thread at most; beyond, the entries are read back from the
    /// journal when the queue has room again.
    let maxQueued: Int
    private let worker: WorkerThread
    private var followers: [String: MDFFollower] = [:]
    /// Bytes of batch bodies handed to the thread and not yet done, per job token.
    private var queuedBytes: [Int: Int] = [:]
    /// Bytes of batch bodies kept for the thread (at most `maxQueued`).
    private(set) var queued = 0
    /// Devices whose commits went unqueued (the queue was full, or a burst), through which entry:
    /// their files are written from the journal later (`catchUpBehind`).
    private var behind: [String: UInt64] = [:]
    private var nextToken = 0

    /// Commit bytes in a `burstWindow` above which the files wait: by default 2 MB per 100 ms
    /// (20 MB/s), a backlog draining. Live data of a fleet is far below (a device sends ~50 KB/s).
    let burstBytes: Int
    static let burstWindow: Int64 = 100_000_000
    /// The current window: its start (loop clock) and the bytes committed in it.
    private var window = (start: Int64(0), bytes: 0)
    /// A burst is on: the files wait until it is over (commits go to `behind`).
    private(set) var holding = false
    /// Longest hold, and when the current one began; after one that reached it, no new hold until
    /// a window without a burst (`holdArmed`).
    static let maxHold: Int64 = 1_000_000_000
    private var holdStarted: Int64 = 0
    private var holdArmed = true

    /// Whether the files are behind the commits handed over so far (jobs queued or running, or
    /// commits left to read back from the journal).
    var isBehind: Bool { !queuedBytes.isEmpty || !behind.isEmpty }

    /// Readable while jobs have finished: watch it and call `takeCompletions()`.
    var fileDescriptor: Int32 { worker.fileDescriptor }

    init(maxQueued: Int = 64 << 20, burstBytes: Int = 2 << 20) throws(DAQError) {
        self.maxQueued = maxQueued
        self.burstBytes = burstBytes
        worker = try WorkerThread("MDF files", name: "mdf-trail", priority: .idle)
    }

    /// Starts following a device whose journal holds `committed` entries (its current
    /// measurement's file is rebuilt from them first).
    func follow(device: String, journalDirectory: String, mdfDirectory: String, committed: UInt64) {
        followers[device] = MDFFollower(deviceID: device, journalDirectory: journalDirectory,
                                        mdfDirectory: mdfDirectory, committed: committed)
    }

    /// `entries` of `body` (the first one `first`) were committed to `device`'s journal at `now`.
    func committed(device: String, first: UInt64, body: [UInt8], entries: [Range<Int>], now: Int64) {
        guard let follower = followers[device] else { return }
        let last = first + UInt64(entries.count) - 1
        tick(now: now)
        window.bytes += body.count
        if window.bytes > burstBytes, holdArmed, !holding {
            holding = true
            holdStarted = now
        }
        guard !holding, behind[device] == nil, queued + body.count <= maxQueued else {
            behind[device] = last
            // With no job in flight, no completion would come to start the read-back.
            if !holding, queuedBytes.isEmpty { catchUpBehind() }
            return
        }
        submit(bytes: body.count) { follower.run { () throws(DAQError) in try follower.feed(first: first, body: body, entries: entries) } }
    }

    /// The burst is over: the thread reads it back from the journal (once the jobs before it are done).
    private func release() {
        holding = false
        if queuedBytes.isEmpty { catchUpBehind() }
    }

    /// Starts a new window once the current one is over; a window without a burst ends a hold (and
    /// allows the next), as does `maxHold` (which does not). Call it every `burstWindow` while
    /// `holding` (the collector does): with no commits coming, nothing else ends the hold.
    func tick(now: Int64) {
        if holding && now - holdStarted >= Self.maxHold {
            holdArmed = false
            release()
        }
        guard now - window.start >= Self.burstWindow else { return }
        if window.bytes <= burstBytes {
            holdArmed = true
            if holding { release() }
        }
        window = (now, 0)
    }

    /// Jobs done since the last call. A device whose journal holds a layout entry its follower
    /// cannot read gets no more MDF files (its journal is unaffected): returned, to be reported.
    /// Any other failure (a write error, a full disk) is thrown.
    func takeCompletions() throws(DAQError) -> [DAQError] {
        var failed = false
        for done in worker.takeCompletions() {
            queued -= queuedBytes.removeValue(forKey: done.token) ?? 0
            failed = failed || done.result != 0
        }
        let dropped = failed ? try failures(removing: true) : []
        // Room again: what went unqueued is read back from the journal (after a burst).
        if !holding, queued <= maxQueued / 2 { catchUpBehind() }
        return dropped
    }

    /// Files written through every commit so far, then finalized; waits for the thread. Returns
    /// the devices dropped as `takeCompletions()` does; throws any other failure.
    func finish() throws(DAQError) -> [DAQError] {
        release()
        catchUpBehind()
        for follower in followers.values {
            submit(bytes: 0) { follower.run { () throws(DAQError) in try follower.finish() } }
        }
        worker.shutdown()
        _ = worker.takeCompletions()
        return try failures(removing: false)
    }

    /// The followers' failures: one that met a layout entry it cannot read (malformed input) is
    /// returned, and with `removing` dropped (its device gets no more MDF files); any other
    /// failure (a write error, a full disk) is thrown.
    private func failures(removing: Bool) throws(DAQError) -> [DAQError] {
        var dropped: [DAQError] = []
        for (device, follower) in followers {
            guard let failure = follower.failure else { continue }
            guard failure.code == .malformedInput else { throw failure }
            dropped.append(failure)
            if removing {
                followers[device] = nil
                behind[device] = nil
            }
        }
        return dropped
    }

    private func catchUpBehind() {
        for (device, last) in behind {
            guard let follower = followers[device] else { continue }
            submit(bytes: 0) { follower.run { () throws(DAQError) in try follower.catchUp(through: last) } }
        }
        behind.removeAll()
    }

    private func submit(bytes: Int, _ job: @escaping @Sendable () -> Bool) {
        nextToken += 1
        queuedBytes[nextToken] = bytes
        queued += bytes
        worker.submit(token: nextToken) { job() ? 0 : 1 }
    }
}
