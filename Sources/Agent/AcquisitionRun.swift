// One acquisition run of the device agent: a single-threaded cooperative loop that moves frames
// from a source (log replay or SocketCAN) through the pipeline (decode → sampler) into the RAM
// ring and the crash-safe journal, with group commit, raster tick timers, progress and shutdown.
import Acquisition
import DAQCore
import Experiment
import Journal
import JournalStore
import Logging
import MDFFiles
import OTADevice
import Uplink
import Runtime
import SocketCAN
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

/// Runs one acquisition to its end (log exhausted, duration, signal, or a full journal).
public final class AcquisitionRun {
    public let options: AcquisitionOptions
    private let logger = Logger(label: "daqlink.acquisition")
    private var pipeline: AcquisitionPipeline
    private let journal: JournalWriter
    private var ring: RecordRing
    private var commit: GroupCommitPolicy
    /// Journal syncs and ack-cursor writes, off the loop.
    private let persistence: JournalPersistence
    /// Bytes appended while a sync was under way (it does not cover them), and when the first was:
    /// told to the group-commit policy again once that sync is done.
    private var appendedDuringSync: (bytes: Int, since: Int64)?
    private let loop = EventLoop()
    private var records = RecordBuffer()
    private var summary = AcquisitionSummary()
    private var layoutWritten = false
    /// The layout entry's payload of the measurement in force, repeated at each new segment.
    private var layoutPayload: [UInt8]?
    private let serviceNotify = ServiceNotify()
    private var recordsPerGroup: [UInt64]
    private var bytesPerGroup: [UInt64]
    private var stopped = false
    private var failure: DAQError?
    private let startedAt: Int64
    private var lateness: [Int64] = []
    /// Log/source time of the first frame (for `duration`).
    private var firstFrameTime: Timestamp?

    // Replay state.
    private var logSource: LogFrameSource?
    private var pacer: ReplayPacer?
    private var heldFrame: CANFrame?

    // Live state.
    private var buses: [SocketCANBus] = []
    private var tickTimer: EventLoop.TimerID?
    private var tickDeadline: Int64?
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at start: kernel timestamps are realtime, timers monotonic.
    private var realtimeOffset: Int64 = 0
    /// Per bus, the base's time frames still queued were queued after: the stamp of the last
    /// frame read when a read filled its batch (a queue is first in, first out), else the moment
    /// of the read that emptied it (`ClockBase.map`'s `away`).
    private lazy var queuedSince: [Int64] = Array(repeating: startedAtBase, count: buses.count)
    private var startedAtBase: Int64 = 0
    /// When the buses were opened (CLOCK_REALTIME): frames queue from then on, while the journal
    /// is opened and recovered.
    private var busesOpenedAt: Int64 = 0
    /// Per bus, `clockBase.steps` when a read last emptied its queue: equal to the steps now, every
    /// frame queued is stamped on the clock after the last step.
    private lazy var emptiedAtStep: [Int] = Array(repeating: 0, count: buses.count)
    /// Live frames' kernel stamps onto the measurement's time base across clock steps.
    private var clockBase = ClockBase(startOffset: 0)
    private var receiveBuffer: [CANFrame] = []
    private var uplink: UplinkTask?
    private var updates: UpdateTask?
    /// An experiment installed over the air, applied at the next record boundary.
    private var pendingExperiment: String?
    /// Per-group figures of experiments replaced during the run.
    private var replacedGroups: [(name: String, records: UInt64, bytes: UInt64)] = []
    private var mdf: MDFRecording?
    private var pendingStop: StopReason?
    /// DAQLINK_APPEND_TRACE (a benchmark aid): append times per journal entry.
    private let appendTrace = AppendTrace.fromEnvironment()

    public init(binding: ExperimentBinding, options: AcquisitionOptions) throws(DAQError) {
        self.options = options
        pipeline = AcquisitionPipeline(binding)
        // The source first: a log that cannot be read, or an interface that is not there, must
        // not leave a new journal (with an epoch of its own) behind.
        switch options.source {
        case .replay(let path, _):
            logSource = try LogFrameSource(path: path, lenient: options.lenient)
        case .socketCAN(let interfaces):
            for name in interfaces {
                var configuration = SocketCANBus.Configuration()
                // Room for bursts while the loop is busy (a journal fsync, a TLS handshake):
                // the kernel's default queue holds only a few hundred frames.
                configuration.receiveBufferBytes = options.receiveBufferBytes
                buses.append(try SocketCANBus(interface: name, configuration: configuration))
            }
            busesOpenedAt = SystemClock.realtime()
        }
        var configuration = JournalConfiguration(epoch: options.epoch ?? AcquisitionOptions.freshEpoch(),
                                                 segmentSizeLimit: options.segmentSizeLimit, quotaBytes: options.quotaBytes)
        // A header whose epoch is lost for good: its entries go on as a new stream, not acquisition stopped.
        configuration.newEpochForUnknownHeaders = true
        journal = try JournalWriter(directory: options.journalDirectory, configuration: configuration)
        ring = RecordRing(capacity: options.ringCapacity)
        commit = GroupCommitPolicy(options.commit)
        // Its syncs run off the loop, a rotation's too.
        journal.defersRotationSyncs = true
        persistence = try JournalPersistence(journal: journal, loop: loop)
        recordsPerGroup = Array(repeating: 0, count: binding.groups.count)
        bytesPerGroup = Array(repeating: 0, count: binding.groups.count)
        startedAt = loop.clock.now()
        let recovery = journal.recovery
        var recovered: [String] = []
        for repaired in recovery.repairedHeaders {
            recovered.append(repaired.newStream ? "\(repaired)" : "\(repaired): its bytes are the original's")
            logger.warning("journal recovery: \(recovered.last!)")
        }
        for damage in recovery.damaged {
            recovered.append("\(damage); the entries after it were kept (the uplink sends 'lost' placeholders for these)")
            logger.error("journal recovery: \(recovered.last!)")
        }
        for segment in recovery.freedForRename {
            recovered.append("deleted \(segment), acknowledged by the collector, to make room for naming a new segment (its rename was refused for space)")
            logger.warning("journal recovery: \(recovered.last!)")
        }
        for segment in recovery.adoptedSegments {
            recovered.append("named \(segment), a new segment no sync had renamed into place: it continues the journal, and its entries are kept")
            logger.notice("journal recovery: \(recovered.last!)")
        }
        for segment in recovery.removedUnnamedSegments {
            recovered.append("removed \(segment), a new segment no sync had renamed into place: it did not continue the journal (the segment "
                             + "before it lost its tail, or another stream's), or no room could be made to name it; none of its entries had been sent")
            logger.warning("journal recovery: \(recovered.last!)")
        }
        if let segment = recovery.truncatedSegment {
            recovered.append("cut \(recovery.truncatedBytes) bytes of a torn tail from \(segment) at offset \(recovery.truncatedAtOffset ?? 0)")
            logger.warning("journal recovery: \(recovered.last!)")
        }
        if let lost = recovery.numberedAfterAcknowledged {
            recovered.append("entries \(lost.lowerBound)…\(lost.upperBound) went with it (the collector holds them); new entries are numbered from \(lost.upperBound + 1)")
            logger.warning("journal recovery: \(recovered.last!)")
        }
        if !recovered.isEmpty { summary.recovery = recovered.joined(separator: "; ") }
        if recovery.createdNewJournal {
            // The collector names a new stream by its epoch ("a new stream, epoch E"): said here too.
            logger.notice("journal \(options.journalDirectory): a new journal, stream epoch \(journal.epoch)")
        }
        if journal.onVolatileStorage {
            logger.warning("journal \(options.journalDirectory) is on tmpfs/ramfs: it is gone at power-off, with whatever the link had not carried yet, and each boot starts a new stream; put it on the SD card or disk")
        }
        logger.info("journal \(options.journalDirectory): next seq \(journal.nextSequence), acknowledged up to \(journal.acknowledgedUpTo), epoch \(journal.epoch)")
        if let directory = options.mdfDirectory, journal.lastSequence > 0 {
            for name in try InterruptedMDF.finalize(mdfDirectory: directory, journalDirectory: options.journalDirectory) {
                logger.warning("MDF: \(name) was left unfinalized; rebuilt from the journal and finalized")
            }
        }
    }

    /// Runs to the end and returns the summary. Throws for I/O errors other than a full journal.
    public func run() throws(DAQError) -> AcquisitionSummary {
        persistence.synced = { [unowned self] in journalSynced($0) }
        let signals = try SignalWatch()
        loop.watch(signals.fileDescriptor, interest: .read) { [unowned self] _ in
            if !signals.drain().isEmpty { finish(.signal) }
        }
        if let ota = options.ota {
            updates = try makeUpdateTask(ota)
        }
        if let options = options.uplink {
            let task = UplinkTask(options: options, loop: loop, journal: journal, persistence: persistence,
                                  seed: UInt64(bitPattern: startedAt))
            uplink = task
            if let updates { connect(updates, to: task) }
            task.start(ring: { [unowned self] in ring })
        }
        updates?.start()
        switch options.source {
        case .replay(_, let speed):
            pacer = ReplayPacer(speed: speed)
            loop.schedule(at: loop.clock.now()) { [unowned self] in replayStep() }
            if options.progress { scheduleProgress() }
        case .socketCAN:
            realtimeOffset = SystemClock.realtime() - loop.clock.now()
            clockBase = ClockBase(startOffset: realtimeOffset)
            startedAtBase = min(loop.clock.now() + realtimeOffset, busesOpenedAt)
            for bus in buses {
                loop.watch(bus.fileDescriptor, interest: .read) { [unowned self] _ in drainBuses() }
                // The kernel grants at most net.core.rmem_max without CAP_NET_ADMIN (and reports
                // twice what it holds): a queue under half the one asked for is said.
                if bus.receiveBufferBytes < options.receiveBufferBytes / 2 {
                    let text = "\(bus.interface): the kernel granted a receive queue of \(bus.receiveBufferBytes) bytes, not the "
                        + "\(options.receiveBufferBytes) asked (run daqlink with CAP_NET_ADMIN, or raise net.core.rmem_max): "
                        + "a busy bus may lose frames while the loop waits"
                    logger.warning("\(text)")
                }
            }
            scheduleBusWatch()
            if let duration = options.duration {
                loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: duration)) { [unowned self] in finish(.duration) }
            }
        }
        // Under systemd (Type=notify, WatchdogSec=): ready now, and alive for as long as the loop
        // turns (docs/ota.md, "Under systemd").
        serviceNotify?.send("READY=1")
        serviceNotify?.keepAlive(on: loop)
        try loop.run()
        if let failure { throw failure }
        return summary
    }

    // MARK: updates

    private func makeUpdateTask(_ ota: UpdateOptions) throws(DAQError) -> UpdateTask {
        let provisioned = options.provisionedCredentials
            ?? CredentialFiles(certificateFile: options.uplink?.tls.certificateFile ?? "", keyFile: options.uplink?.tls.keyFile ?? "")
        let task: UpdateTask
        do {
            task = try UpdateTask(options: ota, loop: loop, credentials: CredentialStore(directory: ota.directory, provisioned: provisioned),
                                  seed: UInt64(bitPattern: startedAt) ^ 0x5EED)
        } catch let error as DAQError {
            throw error
        } catch {
            throw DAQError(.system, "cannot start the OTA task: \(error)")
        }
        task.validateExperiment = { path in _ = try ExperimentLoader.load(path: path) }
        task.applyExperiment = { [unowned self] path in pendingExperiment = path }
        task.reboot = { [unowned self] reason in
            logger.notice("rebooting: \(reason)")
            finish(.reboot)
        }
        return task
    }

    private func connect(_ updates: UpdateTask, to uplink: UplinkTask) {
        let ca = uplink.options.tls.caFile
        // A bundle's own trust anchors, else the provisioned CA file.
        let tls = { (files: CredentialFiles) in
            MQTTTLSFiles(caFile: files.caFile ?? ca, certificateFile: files.certificateFile, keyFile: files.keyFile)
        }
        uplink.credentialsForNextConnection = { tls(updates.credentialsForNextConnection()) }
        uplink.nextCredentials = { tls(updates.nextCredentials) }
        uplink.connectionOutcome = { files, succeeded in
            let used = CredentialFiles(certificateFile: files.certificateFile, keyFile: files.keyFile)
            if succeeded { updates.connectionSucceeded(with: used) } else { updates.connectionFailed(with: used) }
        }
        // The health check wants an ack of what this process wrote (it writes a layout entry at
        // least): an ack of what the slot before left unacknowledged proves nothing of this one.
        let writtenBefore = journal.lastSequence
        uplink.onAcknowledged = { upTo in if upTo > writtenBefore { updates.uplinkHealthy() } }
        uplink.statusOutbox = updates.outbox
        updates.reportsAdded = { [weak uplink] in uplink?.publishStatus() }
        updates.credentialsChanged = { [weak uplink] in uplink?.reconnect() }
    }

    /// Swaps in an experiment installed over the air, between two records: the old pipeline's
    /// records are all in the journal, the new layout entry starts a new measurement (and MDF file).
    private func applyPendingExperiment() throws(DAQError) {
        guard let path = pendingExperiment else { return }
        pendingExperiment = nil
        let binding: ExperimentBinding
        do throws(DAQError) { binding = try ExperimentLoader.load(path: path) } catch {
            logger.error("cannot apply experiment \(path): \(error)")
            return
        }
        replacedGroups += pipeline.binding.groups.indices.map {
            (pipeline.binding.groups[$0].name, recordsPerGroup[$0], bytesPerGroup[$0])
        }
        try mdf?.finish()
        mdf = nil
        pipeline = AcquisitionPipeline(binding)
        recordsPerGroup = Array(repeating: 0, count: binding.groups.count)
        bytesPerGroup = Array(repeating: 0, count: binding.groups.count)
        layoutWritten = false
        logger.notice("applied experiment \(path): \(binding.groups.count) channel groups from the next record on")
    }

    // MARK: replay

    private func replayStep() {
        guard !stopped, let source = logSource else { return }
        // (A handler that runs after `finish` in the same loop turn must not touch the journal.)
        let paced = pacer?.speed != .asFastAsPossible
        do throws(DAQError) {
            if let frame = heldFrame {
                heldFrame = nil
                if !accept(frame) { return }
            }
            var waitUntil: Int64?
            let more = try source.read(maxLines: 4096) { (frame) throws(DAQError) -> Bool in
                if paced, let deadline = pacer!.deadline(for: frame.timestamp, now: loop.clock.now()),
                   deadline > loop.clock.now() {
                    heldFrame = frame
                    waitUntil = deadline
                    return false
                }
                return accept(frame)
            }
            if stopped { return }
            try flushRecords()
            if let waitUntil {
                loop.schedule(at: waitUntil) { [unowned self] in replayStep() }
            } else if more || heldFrame != nil {
                loop.schedule(at: loop.clock.now()) { [unowned self] in replayStep() }
            } else {
                summary.malformedLines = source.malformedLines
                finish(.endOfLog)
            }
        } catch {
            fail(error)
        }
    }

    /// Ingests one frame unless the duration is reached; false stops the read.
    private func accept(_ frame: CANFrame) -> Bool {
        if firstFrameTime == nil { firstFrameTime = frame.timestamp }
        if let duration = options.duration, let first = firstFrameTime,
           Double(frame.timestamp.nanoseconds - first.nanoseconds) / 1e9 >= duration {
            finish(.duration)
            return false
        }
        pipeline.ingest(frame, into: &records)
        if records.count > 256 {
            do throws(DAQError) { try flushRecords() } catch { fail(error); return false }
        }
        return !stopped
    }

    private func scheduleProgress() {
        loop.schedule(at: loop.clock.now() + 1_000_000_000) { [unowned self] in
            guard !stopped else { return }
            let counters = pipeline.counters
            let percent = logSource?.progress.map { " \(Int($0 * 100))%" } ?? ""
            writeStderr("daqlink:\(percent) \(counters.frames) frames, \(journal.lastSequence) entries, "
                        + "\(summary.journalBytesWritten / 1024) KiB journal\n")
            scheduleProgress()
        }
    }

    // MARK: live

    /// Reads the realtime offset again (a step of the system clock is said and counted); returns
    /// the present in the measurement's time base.
    private func presentTime() -> Int64 {
        let monotonic = loop.clock.now()
        if let step = clockBase.observe(offset: SystemClock.realtime() - monotonic) {
            summary.clockSteps += 1
            let seconds = Double(step) / 1e9
            let text = String(format: "the system clock stepped by %+.3f s (NTP, an RTC, by hand?); ", seconds)
                + "this measurement keeps the time base it started with, the next one starts on the new clock"
            if abs(step) >= 1_000_000_000 { logger.notice("\(text)") } else { logger.debug("\(text)") }
        }
        return monotonic + realtimeOffset
    }

    /// Reads a bounded batch from every bus and passes on what is complete. Returns the moment up
    /// to which every frame has been passed on: the present, or the stamp of the last frame of a
    /// bus that filled its batch (its older frames are still queued).
    @discardableResult
    private func drainBuses() -> Int64 {
        guard !stopped else { return Int64.min }
        // A read that failed part way leaves nothing behind for the stop's read to count.
        defer { receiveBuffer.removeAll(keepingCapacity: true) }
        do throws(DAQError) {
            let now = presentTime()
            // A bounded batch from every bus, merged in time order, then back to the loop (the
            // sockets stay readable: the loop calls again). Read bus by bus, the second bus's
            // frames were older than the first's last one and were moved to its time (5,547 of
            // 11,415 frames of two buses, up to 0.35 s); read until empty, an overloaded bus held
            // the loop for seconds: no journal write, no watchdog ping, no stop.
            var ranges: [Range<Int>] = []
            var horizon = now
            for (index, bus) in buses.enumerated() {
                let reportsBefore = bus.counters.interfaceDownReports
                let start = receiveBuffer.count
                let read = try bus.receive(into: &receiveBuffer, limit: Self.framesPerBusAndTurn)
                ranges.append(start..<receiveBuffer.count)
                if bus.counters.interfaceDownReports > reportsBefore { interfaceWentDown(index) }
                let afterLastStep = emptiedAtStep[index] == clockBase.steps
                for position in start..<receiveBuffer.count {
                    receiveBuffer[position].timestamp = Timestamp(nanoseconds: clockBase.map(receiveBuffer[position].timestamp.nanoseconds,
                                                                                             now: now, away: now - queuedSince[index],
                                                                                             afterLastStep: afterLastStep))
                }
                if read == Self.framesPerBusAndTurn {
                    queuedSince[index] = receiveBuffer.last?.timestamp.nanoseconds ?? now
                } else {
                    queuedSince[index] = now
                    emptiedAtStep[index] = clockBase.steps
                }
                // A bus that filled its batch may hold older frames still: nothing after its last
                // one is complete yet.
                if read == Self.framesPerBusAndTurn, let last = receiveBuffer.last { horizon = min(horizon, last.timestamp.nanoseconds) }
            }
            if buses.count == 1 {
                for frame in receiveBuffer { ingestLive(frame) }
            } else {
                mergeAndIngest(ranges, before: horizon)
            }
            receiveBuffer.removeAll(keepingCapacity: true)
            try flushRecords()
            armTick()
            return horizon
        } catch {
            fail(error)
            return Int64.min
        }
    }

    /// Frames read from each bus per turn of the loop.
    static let framesPerBusAndTurn = 512

    /// Several buses: frames read, merged with those held from the turn before in time order.
    /// Those stamped before `horizon` (the moment the reads began: every bus had queued them when
    /// it was read) go to the pipeline; later ones wait for the next turn, which may still bring
    /// an older frame of another bus (ecu-sim's two buses: 6 % of the frames out of order when
    /// each turn went in whole). A turn follows within 2 ms while frames wait.
    private func mergeAndIngest(_ ranges: [Range<Int>], before horizon: Int64) {
        var sources = [held[...]] + ranges.map { receiveBuffer[$0] }
        var waiting: [CANFrame] = []
        while true {
            var pick: Int?
            for index in sources.indices where !sources[index].isEmpty {
                if pick == nil || sources[index].first!.timestamp < sources[pick!].first!.timestamp { pick = index }
            }
            guard let index = pick else { break }
            let frame = sources[index].removeFirst()
            if frame.timestamp.nanoseconds < horizon && waiting.isEmpty { ingestLive(frame) } else { waiting.append(frame) }
        }
        held = waiting
        guard !held.isEmpty, !heldTurnScheduled else { return }
        heldTurnScheduled = true
        loop.schedule(at: loop.clock.now() + 2_000_000) { [unowned self] in
            heldTurnScheduled = false
            if !held.isEmpty { drainBuses() }
        }
    }

    /// At the stop: reads each bus's queue up to the frames stamped after this moment, takes
    /// those before it, in time order with the held ones, and emits the raster ticks up to it.
    /// A run that stopped left them unread and uncounted: 3,755 of a 30,000-frame burst in the
    /// vcan guest, when the duration ran out while the queue was still full.
    private func readQueuedBeforeStop() {
        guard !buses.isEmpty else { return }
        let stopAt = presentTime()
        // A step of the clock under ClockBase's threshold goes unseen: the frames of the last
        // moments before the stop may be stamped that much after it.
        let lastTaken = stopAt + ClockBase.stepThreshold
        receiveBuffer.removeAll(keepingCapacity: true)
        var ranges: [Range<Int>] = []
        for (index, bus) in buses.enumerated() {
            let start = receiveBuffer.count
            var kept = start
            var retried = false
            // Bounded: frames stamped after the stop end the read, and no queue holds more than
            // its bytes over 128 (the cap stands against a clock that steps while it runs).
            let most = max(4096, bus.receiveBufferBytes / 128)
            reading: while kept - start < most {
                let before = receiveBuffer.count
                let reportsBefore = bus.counters.interfaceDownReports
                let read: Int
                do throws(DAQError) { read = try bus.receive(into: &receiveBuffer, limit: Self.framesPerBusAndTurn) } catch { break }
                let wentDown = bus.counters.interfaceDownReports > reportsBefore
                if wentDown { interfaceWentDown(index) }
                let away = stopAt - queuedSince[index], afterLastStep = emptiedAtStep[index] == clockBase.steps
                for position in before..<receiveBuffer.count {
                    let raw = receiveBuffer[position].timestamp.nanoseconds
                    // Stamped after the stop on the present clock: the read ends (mapped, such a
                    // stamp lies in the future and stands at the stop).
                    if raw - clockBase.shift > lastTaken { break reading }
                    let stamp = clockBase.map(raw, now: stopAt, away: away, afterLastStep: afterLastStep)
                    receiveBuffer[kept] = receiveBuffer[position]
                    receiveBuffer[kept].timestamp = Timestamp(nanoseconds: stamp)
                    kept += 1
                    queuedSince[index] = stamp
                }
                receiveBuffer.removeSubrange(kept...)
                if read < Self.framesPerBusAndTurn {
                    // The interface went down: the error ended this read, and the queue may hold
                    // more (the error is cleared by that read): read on once.
                    if wentDown, !retried { retried = true; continue }
                    break
                }
            }
            receiveBuffer.removeSubrange(kept...)
            ranges.append(start..<kept)
        }
        summary.framesReadAtStop = UInt64(ranges.reduce(0) { $0 + $1.count })
        if buses.count == 1 {
            for frame in receiveBuffer { ingestLive(frame) }
        } else {
            mergeAndIngest(ranges, before: lastTaken + 1)
            held.removeAll()  // stamped after the stop
        }
        receiveBuffer.removeAll(keepingCapacity: true)
        // The ticks up to the stop; none for a run that never saw a frame (an empty
        // measurement: a layout and nothing else).
        if pipeline.sampler.start != nil { pipeline.advance(to: Timestamp(nanoseconds: stopAt + 1), into: &records) }
        // What the kernel dropped up to here is the measurement's; later drops (while the uplink
        // drains) are not: the sockets close now.
        for bus in buses {
            bus.refreshDrops()
            bus.close()
        }
    }

    /// Frames of several buses read but not yet in the pipeline (`mergeAndIngest`).
    private var held: [CANFrame] = []
    private var heldTurnScheduled = false

    private func ingestLive(_ frame: CANFrame) {
        if frame.kind == .error, frame.id & Self.busOffFlag != 0, busOffSaid.insert(frame.interface).inserted {
            logger.warning("\(frame.interface): the controller reports bus-off (error frame class 0x40): no frames until it recovers; the summary counts the error frames")
        }
        // Looked up only while an interface is down: not a name comparison for every frame.
        if downSince.contains(where: { $0 != nil }), let index = buses.firstIndex(where: { $0.interface == frame.interface }),
           let since = downSince[index] {
            downSince[index] = nil
            logger.notice("\(frame.interface): frames again, \(format2(Double(loop.clock.now() - since) / 1e9)) s after the interface went down")
        }
        pipeline.ingest(frame, into: &records)
    }

    /// CAN_ERR_BUSOFF in an error frame's class bits.
    static let busOffFlag: UInt32 = 0x40
    private var busOffSaid: Set<String> = []
    /// Per bus: when its interface was found down (nil: up, or frames since).
    private lazy var downSince: [Int64?] = Array(repeating: nil, count: buses.count)

    private func interfaceWentDown(_ index: Int) {
        summary.interfaceDowns += 1
        guard downSince[index] == nil else { return }
        downSince[index] = loop.clock.now()
        logger.warning("\(buses[index].interface): the interface is down (ip link set … down, a driver restart, an adapter pulled?): acquisition goes on and takes its frames again when it is back; raster records hold the last values meanwhile")
    }

    /// Every 5 s: drops the kernel counted since (SO_MEMINFO: those at the end of a burst too), said
    /// while the run goes on, not only in the summary.
    private func scheduleBusWatch() {
        loop.schedule(at: loop.clock.now() + 5_000_000_000) { [unowned self] in
            guard !stopped else { return }
            for (index, bus) in buses.enumerated() {
                bus.refreshDrops()
                let total = bus.counters.kernelDrops
                if total > dropsSaid[index] {
                    logger.warning("\(bus.interface): the kernel dropped \(total - dropsSaid[index]) frames in the last 5 s (\(total) in all; receive queue \(bus.receiveBufferBytes) bytes): daqlink fell behind the bus")
                    dropsSaid[index] = total
                }
            }
            scheduleBusWatch()
        }
    }

    private lazy var dropsSaid: [UInt64] = Array(repeating: 0, count: buses.count)

    /// Keeps one timer armed for the sampler's next raster tick (kernel time → monotonic), or for
    /// `tickRetryAt` when that is later.
    private func armTick() {
        guard !stopped, let next = pipeline.sampler.nextTickTime else { return }
        let tickTime = next.nanoseconds - realtimeOffset
        let deadline = max(tickTime, tickRetryAt ?? Int64.min)
        if tickDeadline == deadline { return }
        if let tickTimer { loop.cancel(tickTimer) }
        tickDeadline = deadline
        tickTimer = loop.schedule(at: deadline) { [unowned self] in
            guard !stopped else { return }
            tickTimer = nil
            tickDeadline = nil
            let now = loop.clock.now()
            // Frames already in the socket buffers belong before this tick. A queue still holding
            // older frames (the loop held up: SIGSTOP, load) keeps the tick back: the next turns
            // read them, each frame emitting the ticks before it, and the tick is tried again
            // 1 ms on (not at once: the loop goes back to its signals). Emitted up to the present
            // at once, the ticks of the whole hold-up held the values of the last frame read, and
            // the frames read after came behind them.
            let complete = drainBuses()
            guard !stopped else { return }
            // How late the loop came to the tick: once per tick, tried again or not.
            if latenessTakenFor != tickTime {
                latenessTakenFor = tickTime
                let late = now - tickTime
                lateness.append(late)
                if lateness.count > 200_000 { lateness.removeFirst(100_000) }
                summary.tickLatenessMax = max(summary.tickLatenessMax, late)
                if late > rasterPeriod { summary.lateTicks += 1 }
            }
            if complete < now + realtimeOffset {
                tickRetryAt = loop.clock.now() + 1_000_000
                return armTick()
            }
            tickRetryAt = nil
            pipeline.advance(to: Timestamp(nanoseconds: now + realtimeOffset + 1), into: &records)
            do throws(DAQError) { try flushRecords() } catch { fail(error) }
            armTick()
        }
    }

    /// While a queue holds frames older than an overdue tick: when that tick is tried again.
    private var tickRetryAt: Int64?
    /// The tick whose lateness is taken.
    private var latenessTakenFor: Int64?

    private var rasterPeriod: Int64 {
        pipeline.binding.groups.compactMap { group -> Int64? in
            if case .raster(let period) = group.trigger { return period }
            return nil
        }.min() ?? .max
    }

    // MARK: journal

    /// Appends the pending records (after the layout entry, once) and applies group commit. A full
    /// journal with an uplink pauses the acquisition instead of stopping it (`JournalFullPause`).
    private func flushRecords() throws(DAQError) {
        guard uplink != nil else { return try appendRecords() }
        let now = loop.clock.now()
        guard fullPause.shouldTry(roomCanBeMade: journal.canRetireASegment, now: now, diskHasRoom: journal.diskHasRoom) else {
            fullPause.notKept(records.count)
            return records.removeAll()
        }
        do throws(DAQError) {
            try appendRecords()
            if let resumed = fullPause.resumed(now: now) {
                let how = fullPause.diskFull ? "room on the disk again" : "the collector acknowledged older segments"
                logger.notice("journal: room again after \(format2(resumed.seconds)) s (\(how)): acquisition resumed; \(resumed.recordsNotKept) records were not kept while it was full")
            }
        } catch where error.code == .journalFull {
            let disk = journal.lastFullWasTheDisk
            if fullPause.paused(now: now, disk: disk) {
                let until = disk ? "there is room on the disk again (tried once a second; acknowledged segments are deleted meanwhile)"
                    : "the collector acknowledges the oldest segment whole"
                logger.critical("ALARM: \(error) — acquisition paused until \(until); records are not kept meanwhile; nothing already written is lost")
            }
            fullPause.notKept(flushedRecords - keptRecords)
        }
    }

    /// Records of the current flush, and how many of them were appended (a full journal stops it
    /// part-way; the rest are dropped with the flush).
    private var flushedRecords = 0
    private var keptRecords = 0
    private var fullPause = JournalFullPause()

    private func appendRecords() throws(DAQError) {
        (flushedRecords, keptRecords) = (records.count, 0)
        if !layoutWritten, let layout = pipeline.layout {
            let payload = layout.encoded()
            try append(kind: .layout, payload: payload)
            layoutPayload = payload
            layoutWritten = true
            let segmentBytes = options.segmentSizeLimit
            let framed = JournalFraming.framedLength(payloadLength: payload.count)
            if framed * 10 > segmentBytes {
                let share = framed * 100 / segmentBytes
                logger.warning("each journal segment opens with the measurement's layout (\(payload.count) bytes): \(share) % of a \(segmentBytes)-byte segment; a larger --segment-bytes wastes less")
            }
            if let directory = options.mdfDirectory {
                // Named after the layout entry's sequence number: one file per measurement. Files
                // of that name are another journal's (one started again at 1): kept, renamed.
                let name = "measurement-\(journal.lastSequence)"
                for kept in try MDFRecording.setAside(directory: directory, name: name, tag: String(SystemClock.realtime() / 1_000_000_000)) {
                    logger.notice("an MDF file of another journal had the name \(name): kept as \(kept)")
                }
                mdf = try MDFRecording(directory: directory, name: name, layout: layout)
            }
        }
        guard !records.isEmpty else { return try applyPendingExperiment() }
        defer { records.removeAll() }
        var failure: DAQError?
        for index in 0..<records.count where failure == nil {
            records.withPayload(index) { payload in
                do throws(DAQError) {
                    try append(kind: .record, payload: payload)
                    keptRecords += 1
                    let group = RecordPayload.groupIndex(payload)
                    recordsPerGroup[group] += 1
                    bytesPerGroup[group] += UInt64(payload.count - RecordPayload.headerBytes)
                    try mdf?.append(payload)
                } catch { failure = error }
            }
        }
        if let failure { throw failure }
        try applyPendingExperiment()
    }

    private func append(kind: JournalEntryKind, payload: [UInt8]) throws(DAQError) {
        var failure: DAQError?
        payload.withUnsafeBytes { raw in
            do throws(DAQError) { try append(kind: kind, payload: raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    private func append(kind: JournalEntryKind, payload: UnsafeRawBufferPointer) throws(DAQError) {
        // Each segment starts with the layout in force, so that retention, which deletes whole
        // segments, never leaves records that nothing decodes (docs/journal.md).
        // The repeat opens the new segment whatever its size against the record's, and the
        // record follows it there.
        if kind == .record, let layoutPayload, journal.startsSegment(payloadLength: payload.count) {
            try append(kind: .layoutRepeat, payload: layoutPayload)
        }
        let seq = try journal.append(kind: kind, payload: payload, opensSegment: kind == .layoutRepeat)
        appendTrace?.appended(seq)
        if summary.firstSequence == nil { summary.firstSequence = seq }
        summary.lastSequence = seq
        let framed = JournalFraming.framedLength(payloadLength: payload.count)
        summary.journalBytesWritten += UInt64(framed)
        journal.withLastAppendedEntry { ring.append(seq: seq, bytes: $0) }
        let now = loop.clock.now()
        if persistence.isSyncing {
            appendedDuringSync = ((appendedDuringSync?.bytes ?? 0) + framed, appendedDuringSync?.since ?? now)
        }
        apply(commit.on(.appended(bytes: framed, now: now)))
    }

    private func apply(_ action: GroupCommitPolicy.Action) {
        switch action {
        case .none:
            break
        case .syncNow:
            // Off the loop; `journalSynced` follows. One under way already: the appends since are
            // told to the policy again when it is done, which asks for the next.
            do throws(DAQError) {
                if try !persistence.startSync(), !persistence.isSyncing {
                    _ = commit.on(.synced)  // nothing unsynced
                }
            } catch {
                fail(error)
            }
        case .armTimer(let deadline):
            loop.schedule(at: deadline) { [unowned self] in
                guard !stopped else { return }
                apply(commit.on(.timerFired(now: loop.clock.now())))
            }
        }
    }

    /// A sync started by `.syncNow` is done: its entries may leave the device, the MDF bytes
    /// queued so far follow them to disk, and what was appended meanwhile starts the next group.
    private func journalSynced(_ result: Result<Void, DAQError>) {
        if case .failure(let error) = result { return fail(error) }
        _ = commit.on(.synced)
        uplink?.journalSynced(upTo: journal.lastSyncedSequence)
        do throws(DAQError) { try mdf?.flush() } catch { return fail(error) }
        if let during = appendedDuringSync {
            appendedDuringSync = nil
            apply(commit.on(.appended(bytes: during.bytes, now: during.since)))
        }
    }

    // MARK: ending

    private func fail(_ error: DAQError) {
        if error.code == .journalFull {
            logger.critical("ALARM: \(error) — acquisition stopped; nothing already written is lost")
            finish(.journalFull)
        } else {
            failure = error
            finish(.signal)
        }
    }

    /// Flushes and syncs the journal; with an uplink, waits (bounded) until the collector has
    /// acknowledged everything, then closes and stops the loop.
    private func finish(_ reason: StopReason) {
        if stopped {
            // A second signal while draining: stop waiting.
            if pendingStop != nil, reason == .signal {
                drainWaitCutShort = true
                complete()
            }
            return
        }
        // Frames the sockets still hold from before this moment (a turn reads 512 per bus; a
        // loop held up, by SIGSTOP or load, finds the queues full), and those of several buses
        // held for the next turn: there is none.
        for bus in buses { loop.unwatch(bus.fileDescriptor) }
        // Not after a failure: a read or a write failed (an adapter pulled, the journal's disk),
        // maybe in the middle of an append.
        if reason != .journalFull, failure == nil { readQueuedBeforeStop() }
        for frame in held { ingestLive(frame) }
        held.removeAll()
        stopped = true
        summary.stopReason = reason
        if reason != .journalFull {
            do throws(DAQError) {
                try flushRecords()
                // The background syncs first (one may be renaming a new segment into place);
                // the cursor is written in place from here on.
                persistence.finish()
                try journal.sync()
                uplink?.journalSynced(upTo: journal.lastSyncedSequence)
            } catch {
                if error.code == .journalFull { summary.stopReason = .journalFull } else if failure == nil { failure = error }
            }
        }
        if let uplink, reason != .signal, reason != .reboot, options.drainTimeout > 0, failure == nil, !uplink.isDrained {
            pendingStop = reason
            drainWaitStarted = loop.clock.now()
            // Said, so whoever watches knows acquisition is over and what the wait is for.
            logger.notice("\(reason.rawValue): acquisition ended; waiting up to \(format2(options.drainTimeout)) s for the collector to acknowledge entries \(uplink.acknowledged + 1)…\(journal.lastSequence)")
            uplink.onDrained = { [unowned self] in complete() }
            loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: options.drainTimeout)) { [unowned self] in complete() }
            return
        }
        complete()
    }

    private var completed = false
    /// When the wait for the collector's acks began, and whether a signal ended it early.
    private var drainWaitStarted: Int64?
    private var drainWaitCutShort = false

    private func complete() {
        guard !completed else { return }
        completed = true
        uplink?.stop()
        updates?.stop()
        persistence.finish()  // a sync or cursor write under way returns first
        do throws(DAQError) { try journal.close() } catch { if failure == nil && error.code != .journalFull { failure = error } }
        do throws(DAQError) { try mdf?.finish() } catch { if failure == nil { failure = error } }
        if fullPause.pauses > 0 {
            summary.journalFull = (fullPause.pauses, fullPause.pausedSeconds(now: loop.clock.now()), fullPause.notKeptTotal)
        }
        let counters = pipeline.counters
        summary.frames = counters.frames
        summary.decoded = counters.decoded
        summary.unknownIDs = counters.unknown
        summary.otherBus = counters.otherBus
        summary.busFramesNotLogged = pipeline.sampler.busFramesTooLong
        summary.busFramesNotData = counters.nonData
        summary.busLogging = pipeline.sampler.logsBusFrames
        (summary.outOfOrder, summary.timeJumps, summary.skippedNanoseconds) = (counters.outOfOrder, counters.timeJumps, counters.skippedNanoseconds)
        summary.malformedLines = logSource?.malformedLines ?? 0
        summary.groups = replacedGroups + pipeline.binding.groups.indices.map {
            (pipeline.binding.groups[$0].name, recordsPerGroup[$0], bytesPerGroup[$0])
        }
        for bus in buses { bus.refreshDrops() }  // the drops at the end of a burst, which no frame told (closed: read at the stop)
        summary.kernelDrops = buses.reduce(0) { $0 + $1.counters.kernelDrops }
        if !lateness.isEmpty {
            let sorted = lateness.sorted()
            summary.tickLatenessP99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        }
        summary.elapsedSeconds = Double(loop.clock.now() - startedAt) / 1e9
        summary.uplink = uplink?.counters
        if let uplink, !uplink.isDrained, uplink.acknowledged < journal.lastSequence {
            let wait: AcquisitionSummary.Undrained.Wait
            if let started = drainWaitStarted {
                let waited = Double(loop.clock.now() - started) / 1e9
                wait = drainWaitCutShort ? .cutShort(after: waited, of: options.drainTimeout) : .timedOut(options.drainTimeout)
            } else {
                wait = .none
            }
            summary.undrained = .init(first: uplink.acknowledged + 1, last: journal.lastSequence, wait: wait)
        }
        appendTrace?.write()
        serviceNotify?.stopping(on: loop)
        loop.stop()
    }
}

func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
}
