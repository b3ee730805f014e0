// The device's uplink inside the acquisition loop: the pure UplinkSender decides, this task does
// the I/O — one single-use MQTT connection at a time, batches read from the RAM ring (or the
// journal when the ring no longer holds them), coded as the link allows (raw, codec 3 with zstd, or
// codec 4 — live parts always codec 4), end-to-end acks persisted as the journal's cursor.
import Acquisition
import DAQCore
import Delivery
import Foundation
import Journal
import JournalStore
import Logging
import OTADevice
import Runtime
import PKI
import Uplink

/// Where and as whom the device connects.
public struct UplinkOptions: Sendable {
    public var deviceID: String
    public var host: String
    public var port: Int
    public var tls: MQTTTLSFiles
    public var policy = UplinkPolicy()
    public var keepalive = 10
    /// A connection attempt that has not reached CONNACK by then is abandoned (ns).
    public var connectTimeout: Int64 = 5_000_000_000
    public var compress = true
    /// Most journal bytes in one MQTT message (a batch the sender forms is cut to fit).
    public var maxBatchBytes = 256 << 10
    /// The collector's acks are persisted as the journal's cursor at most this often (ns).
    public var ackPersistInterval: Int64 = 200_000_000

    public init(deviceID: String, host: String, port: Int, tls: MQTTTLSFiles) {
        self.deviceID = deviceID
        self.host = host
        self.port = port
        self.tls = tls
    }

    public var dataTopic: String { "devices/\(deviceID)/data" }
    public var ackTopic: String { "devices/\(deviceID)/ack" }
    public var commandTopic: String { "devices/\(deviceID)/cmd" }
    public var statusTopic: String { "devices/\(deviceID)/ota/status" }
}

/// What the uplink did, for the run's summary.
public struct UplinkCounters: Sendable {
    public var batches: UInt64 = 0
    public var rawBytes: UInt64 = 0
    public var wireBytes: UInt64 = 0
    /// Connection attempts (each a socket), sessions the broker accepted, and sessions that ended
    /// other than by daqlink's stop (the link lost; a failed attempt is not a session lost).
    public var connects: UInt64 = 0
    public var sessions: UInt64 = 0
    public var linksLost: UInt64 = 0
    public var resendRequests: UInt64 = 0
    public var readsFromJournal: UInt64 = 0
    /// Entries unreadable in the journal (damaged storage), sent as `lost` placeholders.
    public var lostEntries: UInt64 = 0
    public var acknowledged: UInt64 = 0
    /// Alarms raised, each text once, at most `alarmLimit` of them (a fault that lasts months
    /// must not grow the device's memory); the rest are counted in `alarmsNotKept`.
    public private(set) var alarms: [String] = []
    public private(set) var alarmsNotKept: UInt64 = 0
    public static let alarmLimit = 100
    /// Batches the broker refused (PUBACK ≥ 0x80), and those it accepted with no subscriber (0x10:
    /// dropped).
    public var refusedBatches: UInt64 = 0
    public var undeliveredBatches: UInt64 = 0

    /// Records an alarm; true when it is new (to be logged), false when already kept.
    @discardableResult
    mutating func alarm(_ text: String) -> Bool {
        guard !alarms.contains(text) else { return false }
        guard alarms.count < Self.alarmLimit else {
            alarmsNotKept += 1
            return true
        }
        alarms.append(text)
        return true
    }
    /// Parts per body coding, by `BodyCoding` raw value: raw, fast (codec 3 at zstd level 1),
    /// strong (codec 4, or codec 2 at zstd level 12 for a part without a context).
    public var partsByCoding = [UInt64](repeating: 0, count: BodyCoding.allCases.count)
    /// The codings' names in the summary, in the same order.
    public static let codingNames = BodyCoding.governed.map(\.name)
    /// Loop clock (ns) of the first data publish and of the last end-to-end ack that left nothing
    /// unacknowledged: the drain's own duration, without start-up and connection set-up.
    public var firstPublishAt: Int64?
    public var drainedAt: Int64?
    /// The process's CPU time (ns) at those two moments: what the drain itself cost the device.
    public var firstPublishCPU: Int64?
    public var drainedCPU: Int64?
    /// The governor's last link estimate (wire bytes/s), if a backlog measured one.
    public var linkBytesPerSecond: Double?
}

/// Drives `UplinkSender` with a real MQTT connection on the run's event loop.
final class UplinkTask {
    let options: UplinkOptions
    private let loop: EventLoop
    private let journal: JournalWriter
    private let persistence: JournalPersistence
    private var sender: UplinkSender
    private var connection: MQTTConnection?
    /// Connects to a broker given by name off the loop (its name lookup may block for seconds).
    private lazy var connector: BrokerConnector = {
        let connector = BrokerConnector(loop: loop)
        connector.started = { [weak self] result in
            guard let self, !self.stopped else { return }
            switch result {
            case .success(let connection):
                self.connectStarted(connection)
            case .failure(let error):
                self.connectCallFailed(error)
            }
        }
        return connector
    }()
    /// Numbers connect attempts, so a deadline only ends the attempt it was armed for.
    private var connectAttempt = 0
    private var watchedFD: Int32?
    private var connectDeadlineTimer: EventLoop.TimerID?
    private var tokens: [Int32: Int] = [:]
    /// The journal reader of the last backlog batch and the sequence number it will read next.
    private var backlogReader: (reader: JournalReader, next: UInt64)?
    /// The collector's latest ack not yet persisted as the journal's cursor, and the timer that will.
    private var acknowledgedToPersist: UInt64?
    private var ackPersistTimer: EventLoop.TimerID?
    /// The last parts published: the context of the next one if that one follows them directly.
    private var recentParts = RecentEntries(keep: ContextCoder.contextEntries)
    /// Sub-batches of a sender batch still waiting for PUBACK, and their worst reason code.
    private var partsOutstanding: [Int: Int] = [:]
    private var worstReason: [Int: UInt8] = [:]
    private var timers: [UplinkSender.Timer: EventLoop.TimerID] = [:]
    /// How backlog parts are coded on this link (`BodyCoding`).
    private var governor = CompressionGovernor(codings: BodyCoding.governed, initial: BodyCoding.initial)
    /// Wire bytes of each backlog part not yet PUBACKed (by MQTT message id), how many there are
    /// and since when that count holds.
    private var backlogPartBytes: [Int32: Int] = [:]
    private var backlogPartsSince: Int64 = 0
    /// Backlog parts PUBACKed on this connection (the governor trusts "device-bound" only after a window's worth).
    private var backlogPartsAcknowledged = 0
    /// The link sounding of this connection (`CompressionGovernor.sounded`): its first backlog part,
    /// if it has at least `CompressionGovernor.soundingBytes` of wire, and nothing else published
    /// until it is PUBACKed; then the next one again while the governor `wantsSounding`. (Smaller
    /// parts are not worth a pause: a sounding of several would idle the link while the device
    /// queued up parts, which then looks like a device-bound period.) `soundingPending`: the next
    /// backlog part may start it.
    private var sounding: (mid: Int32, started: Int64, wireBytes: Int)?
    private var soundingPending = false
    private let soundingTimeout: Int64 = 2_000_000_000
    /// Batches the sender asked for, published one per loop turn (`schedulePublishing`).
    private var publishQueue: [(token: Int, first: UInt64, last: UInt64)] = []
    private var publishTimer: EventLoop.TimerID?
    /// The current link period: its start, backlog wire bytes PUBACKed, time with at least a quarter of a
    /// window of backlog parts in flight (the link had work queued), time spent coding and publishing.
    private var linkPeriod = (start: Int64(0), wireBytes: 0, saturated: Int64(0), busy: Int64(0), published: 0)
    /// A link period closes at the first acknowledgement after this long (ns).
    private let linkPeriodLength: Int64 = 10_000_000
    private var jitter: Jitter
    private var stopped = false
    private(set) var counters = UplinkCounters()
    /// DAQLINK_WIRE_TRACE (a benchmark aid): every data payload published.
    private let wireTrace = WireTrace.fromEnvironment()
    private let logger = Logger(label: "daqlink.uplink")
    /// Called when everything in the journal is acknowledged end to end.
    var onDrained: (() -> Void)?
    /// OTA hooks: the TLS files for the next connection, its outcome, and each end-to-end ack.
    var credentialsForNextConnection: (() -> MQTTTLSFiles)?
    /// The TLS files the next connection will use, asked without starting one (the certificate
    /// lifetime check).
    var nextCredentials: (() -> MQTTTLSFiles)?
    var connectionOutcome: ((MQTTTLSFiles, Bool) -> Void)?
    var onAcknowledged: ((UInt64) -> Void)?
    /// OTA status reports waiting for the broker (published QoS 1 on `statusTopic`).
    var statusOutbox: StatusOutbox?
    private var statusInFlight: [Int32: UInt64] = [:]
    private var connectionFiles: MQTTTLSFiles?
    private var connectionAccepted = false

    init(options: UplinkOptions, loop: EventLoop, journal: JournalWriter, persistence: JournalPersistence, seed: UInt64) {
        self.options = options
        self.loop = loop
        self.journal = journal
        self.persistence = persistence
        jitter = Jitter(seed: seed)
        sender = UplinkSender(policy: options.policy, acknowledged: journal.acknowledgedUpTo,
                              journalEnd: journal.lastSyncedSequence,
                              queuedThrough: Self.readQueuedNote(journal: journal),
                              divergedAfter: Self.readDivergedNote(journal: journal))
        divergedNoted = sender.divergedAfter
        persistence.acknowledged = { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let upTo): counters.acknowledged = max(counters.acknowledged, upTo)
            case .failure(let error):
                // Once per kind of failure (it recurs at every cursor write while it lasts).
                raiseAlarm("cannot persist the ack cursor: \(error) (the collector's acks are kept in memory; a restart resends from the last cursor written)")
            }
        }
    }

    // MARK: what the broker holds, across restarts

    /// `<journal>/queued`: "<epoch> <queuedThrough>", what the broker took for the collector. A
    /// restart with the collector away sent the whole backlog into its queue again (a vehicle
    /// started k times: k copies). Written at most once a second, without fsync: a note lost or
    /// old only means a resend, and one too high a gap the collector asks for.
    private var queuedNoted: UInt64 = 0
    private var queuedNoteTimer: EventLoop.TimerID?

    private static func readQueuedNote(journal: JournalWriter) -> UInt64 {
        readNote(journal.queuedNotePath, epoch: journal.epoch) ?? 0
    }

    /// The value of a note "<epoch> <value>" of this journal's epoch at `path` (nil: none).
    private static func readNote(_ path: String, epoch: UInt64) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, UInt64(fields[0]) == epoch, let value = UInt64(fields[1]) else { return nil }
        return value
    }

    /// Writes the note "<epoch> <value>" to `path` (through `temporary`, renamed over it); true
    /// when it was written. Plain POSIX calls, no sync: nothing on this loop may wait for the
    /// card (an SD card takes hundreds of milliseconds for one sync).
    /// `durable`: synced, file and directory (on the loop: only for the rare diverged note).
    private func writeNote(_ value: UInt64, to path: String, temporary: String, durable: Bool = false) -> Bool {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        let text = Array("\(journal.epoch) \(value)\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = !durable || fsync(fd) == 0
        close(fd)
        guard written == text.count, synced, rename(temporary, path) == 0 else { return false }
        if durable { syncJournalDirectory() }
        return true
    }

    private func syncJournalDirectory() {
        let fd = open(journal.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    private func noteQueued() {
        guard sender.queuedThrough != queuedNoted, queuedNoteTimer == nil else { return }
        queuedNoteTimer = loop.schedule(at: loop.clock.now() + 1_000_000_000) { [weak self] in
            guard let self else { return }
            self.queuedNoteTimer = nil
            self.writeQueuedNote()
        }
    }

    private func writeQueuedNote() {
        let through = sender.queuedThrough
        guard through != queuedNoted,
              writeNote(through, to: journal.queuedNotePath, temporary: journal.queuedNoteTemporaryPath) else { return }
        queuedNoted = through
    }

    // MARK: where the collector's copy and this journal diverged, across restarts

    /// `<journal>/diverged`: "<epoch> <divergedAfter>" (`UplinkSender.divergedAfter`), while the
    /// collector's copy holds entries this journal lost: a restart whose journal had grown past
    /// the collector's mark took its next ack of that mark, and with it entries the collector
    /// refused. Written and removed durably, on the loop: both are rare (a removal a power cut
    /// took back refused every ack for good after the collector's copy was rebuilt; a review).
    private var divergedNoted: UInt64?

    private static func readDivergedNote(journal: JournalWriter) -> UInt64? {
        readNote(journal.divergedNotePath, epoch: journal.epoch)
    }

    private func noteDiverged() {
        guard sender.divergedAfter != divergedNoted else { return }
        guard let after = sender.divergedAfter else {
            unlink(journal.divergedNotePath)
            syncJournalDirectory()
            divergedNoted = nil
            return
        }
        guard writeNote(after, to: journal.divergedNotePath, temporary: journal.divergedNoteTemporaryPath, durable: true) else { return }
        divergedNoted = after
    }

    /// Keeps an alarm in the summary and logs it, each text once.
    private func raiseAlarm(_ text: String) {
        if counters.alarm(text) { logger.error("ALARM: \(text)") }
    }

    var acknowledged: UInt64 { sender.acknowledged }
    var isDrained: Bool { sender.acknowledged >= journal.lastSyncedSequence }

    func start(ring: @escaping () -> RecordRing) {
        ringAccess = ring
        perform(sender.start())
        loop.schedule(at: loop.clock.now() + 1_000_000_000) { [weak self] in self?.periodic() }
        checkCertificateLifetime()
    }

    /// Says, at start and then once a day, when the certificate this device connects with ends
    /// within 30 days (a warning), or has ended (an alarm): a device in a vehicle runs for months,
    /// and an expired certificate shows otherwise only as a TLS handshake the broker refuses.
    private func checkCertificateLifetime() {
        guard !stopped else { return }
        let file = (nextCredentials?() ?? options.tls).certificateFile
        let now = CredentialLifetime.now()
        var again: Int64 = 86_400
        if let validity = try? CredentialLifetime.certificateValidity(path: file) {
            if let notice = CredentialLifetime.notice(
                "the device certificate \(file)", end: validity.end, now: now, warnDays: 30,
                consequence: "the broker refuses this device (it keeps acquiring into its journal)",
                remedy: "renew it (daqctl pki renew --dir DIR \(options.deviceID) --publish UPDATES): with --ota-renewal-url the device fetches it itself, even once it has expired (docs/ota.md)") {
                if notice.expired { raiseAlarm(notice.text) } else { logger.warning("\(notice.text)") }
            }
            // A clock behind the certificate's start (a board without an RTC before NTP): said
            // once, looked at every minute until set, then said again.
            if let text = CredentialLifetime.clockBehind("the device certificate \(file)", start: validity.start, now: now) {
                if !clockBehind { logger.warning("\(text)") }
                clockBehind = true
                again = 60
            } else if clockBehind {
                clockBehind = false
                logger.notice("the system clock is set now (\(CredentialLifetime.stamp(now))): past the device certificate's start")
            }
        }
        lifetimeTimer = loop.schedule(at: loop.clock.now() + again * 1_000_000_000) { [weak self] in
            self?.checkCertificateLifetime()
        }
    }

    private var clockBehind = false

    private var lifetimeTimer: EventLoop.TimerID?

    private var ringAccess: (() -> RecordRing)?

    /// The journal synced up to `sequence`: those entries may now leave the device.
    func journalSynced(upTo sequence: UInt64) {
        guard !stopped else { return }
        perform(sender.on(.journalAdvanced(last: sequence), now: loop.clock.now(), jitter: nextJitter()))
    }

    func stop() {
        if let timer = queuedNoteTimer { loop.cancel(timer) }
        queuedNoteTimer = nil
        writeQueuedNote()
        if let timer = lifetimeTimer { loop.cancel(timer) }
        lifetimeTimer = nil
        if let timer = ackPersistTimer { loop.cancel(timer) }
        ackPersistTimer = nil
        persistAcknowledged()
        stopped = true
        closeConnection()
        connector.stop(waiting: false)  // a lookup under way in a dead spot held the stop for its timeouts
        for (_, id) in timers { loop.cancel(id) }
        timers.removeAll()
        if let publishTimer { loop.cancel(publishTimer) }
        publishTimer = nil
    }

    // MARK: actions

    private func perform(_ actions: [UplinkSender.Action]) {
        noteQueued()
        for action in actions {
            switch action {
            case .connect:
                connect()
            case .publish(let token, let first, let last):
                // One batch per loop turn: encoding a window's worth at once would hold up the
                // sampling rasters, and PUBACKs read in between keep the governor's view current.
                publishQueue.append((token, first, last))
                schedulePublishing()
            case .persistAcknowledged(let upTo):
                if let (line, drained) = backlogProgress?.acknowledged(upTo: upTo, now: loop.clock.now()) {
                    logger.notice("\(line)")
                    if drained { backlogProgress = nil }
                }
                // Persisting costs two fsyncs (off the loop, but they wear an SD card and queue
                // behind the journal's syncs); acks arrive every few ms while a backlog drains. A
                // cursor persisted late only means a longer resend after a crash (the collector
                // drops what it holds), so persist at most every interval — and at once when
                // everything is acknowledged.
                acknowledgedToPersist = upTo
                onAcknowledged?(upTo)
                if isDrained {
                    counters.drainedAt = loop.clock.now()
                    counters.drainedCPU = SystemClock.processCPU()
                    persistAcknowledged()
                    onDrained?()
                } else if ackPersistTimer == nil {
                    ackPersistTimer = loop.schedule(at: loop.clock.now() + options.ackPersistInterval) { [weak self] in
                        self?.ackPersistTimer = nil
                        self?.persistAcknowledged()
                    }
                }
            case .arm(let timer, let deadline):
                if let existing = timers[timer] { loop.cancel(existing) }
                timers[timer] = loop.schedule(at: deadline) { [weak self] in
                    guard let self, !self.stopped else { return }
                    self.timers[timer] = nil
                    self.perform(self.sender.on(.timer(timer), now: self.loop.clock.now(), jitter: self.nextJitter()))
                }
            case .alarm(let text):
                raiseAlarm(text)
            case .notice(let text):
                logger.notice("\(text)")
            }
        }
    }

    /// Persists the newest acknowledged entry as the journal's cursor, off the loop
    /// (`JournalPersistence`: two fsyncs; `counters.acknowledged` follows once it is written).
    private func persistAcknowledged() {
        guard let upTo = acknowledgedToPersist else { return }
        acknowledgedToPersist = nil
        persistence.acknowledge(upTo: upTo)
    }

    private func connect() {
        closeConnection()
        // An abandoned attempt still waiting for its name lookup: try again once it is back.
        guard !connector.isBusy else { return connector.whenFree { [weak self] in self?.connect() } }
        do throws(DAQError) {
            let files = credentialsForNextConnection?() ?? options.tls
            connectionFiles = files
            connectionAccepted = false
            let connection = try MQTTConnection(clientID: options.deviceID, tls: files)
            connectAttempt += 1
            let attempt = connectAttempt
            connectDeadlineTimer = loop.schedule(at: loop.clock.now() + options.connectTimeout) { [weak self] in
                guard let self, !self.stopped, !self.sender.isConnected, self.connectAttempt == attempt else { return }
                let seconds = format2(Double(self.options.connectTimeout) / 1e9)
                self.lostConnection(self.connection == nil ? "no address for \(self.options.host) within \(seconds) s (name lookup)"
                                                           : "no MQTT session within \(seconds) s", linkFault: true)
            }
            if BrokerConnector.mustResolve(options.host) {
                try connector.start(connection, host: options.host, port: options.port, keepalive: options.keepalive)
            } else {
                try connection.connectAsync(host: options.host, port: options.port, keepalive: options.keepalive)
                connectStarted(connection)
            }
        } catch {
            connectCallFailed(error)
        }
    }

    /// The connect call failed, on the loop or off it (a broker given by name): refused at once
    /// (no route, bad TLS files), a failed attempt with backoff. Closed by the broker during the
    /// handshake (a revoked certificate, on a link where connect finishes at once), it counts
    /// against new credentials, as it does when it comes later: left out, their rollback waited
    /// on the timing of each attempt.
    private func connectCallFailed(_ error: DAQError) {
        if error.code == .closedByPeer, let files = connectionFiles { connectionOutcome?(files, false) }
        lostConnection("\(error)")
    }

    /// The attempt has its socket (the TLS handshake and CONNACK follow on the loop).
    private func connectStarted(_ connection: MQTTConnection) {
        self.connection = connection
        counters.connects += 1
        watchSocket()
    }

    private func watchSocket() {
        guard let connection, let fd = connection.socket else { return }
        if watchedFD != fd {
            if let old = watchedFD { loop.unwatch(old) }
            watchedFD = fd
            loop.watch(fd, interest: connection.wantsWrite ? [.read, .write] : .read) { [weak self] ready in
                self?.socketReady(ready)
            }
        } else {
            loop.update(fd, interest: connection.wantsWrite ? [.read, .write] : .read)
        }
    }

    private func socketReady(_ ready: PollInterest) {
        guard let connection else { return }
        var healthy = true
        if ready.contains(.read) { healthy = connection.handleReadable(hungUp: ready.contains(.hangUp)) && healthy }
        if ready.contains(.write) || connection.wantsWrite { healthy = connection.handleWritable() && healthy }
        handleEvents()
        if !healthy && self.connection === connection { lostConnection() }
        if self.connection != nil { watchSocket() }
    }

    /// Before the number of backlog parts in flight changes (and at a period's end): the time it
    /// held at least a quarter of a window counts as saturated.
    private func backlogPartsWillChange() {
        let now = loop.clock.now()
        if backlogPartBytes.count >= max(1, options.policy.window / 4) {
            linkPeriod.saturated += now - max(backlogPartsSince, linkPeriod.start)
        }
        backlogPartsSince = now
    }

    /// Publishes the oldest queued batch on the next loop turn, after the loop has polled.
    private func schedulePublishing() {
        guard publishTimer == nil else { return }
        publishTimer = loop.schedule(at: loop.clock.now()) { [weak self] in
            guard let self else { return }
            self.publishTimer = nil
            // A link sounding holds everything else back until it is PUBACKed (`finishSounding`).
            guard !self.stopped, !self.publishQueue.isEmpty, self.sounding == nil else { return }
            let (token, first, last) = self.publishQueue.removeFirst()
            // A batch the sender has since given up (a rewind) is not sent.
            if self.sender.isInFlight(token: token) {
                let started = self.loop.clock.now()
                self.publish(token: token, first: first, last: last)
                self.linkPeriod.busy += self.loop.clock.now() - started
            }
            if !self.publishQueue.isEmpty { self.schedulePublishing() }
        }
    }

    /// The link sounding's part is PUBACKed: its lower bound of the link's rate goes to the governor
    /// and publishing goes on.
    private func finishSounding(now: Int64) {
        guard let finished = sounding else { return }
        sounding = nil
        governor.sounded(wireBytes: finished.wireBytes, nanoseconds: now - finished.started)
        // A bound that may be a preempted sounding's is taken again with the next part.
        soundingPending = governor.wantsSounding
        counters.linkBytesPerSecond = governor.linkBytesPerSecond
        logger.debug("link sounding: \(finished.wireBytes) B PUBACKed \(now - finished.started) ns after its publish began → link ≈ \(Int(governor.linkBytesPerSecond ?? 0)) B/s, coding \(governor.codings[governor.choice].name)")
        schedulePublishing()
    }

    private func periodic() {
        guard !stopped else { return }
        if let connection {
            if !connection.handlePeriodic() { lostConnection() } else { handleEvents(); watchSocket() }
        }
        loop.schedule(at: loop.clock.now() + 1_000_000_000) { [weak self] in self?.periodic() }
    }

    private func handleEvents() {
        guard let connection else { return }
        defer {
            let now = loop.clock.now()
            if linkPeriod.wireBytes > 0 && now - linkPeriod.start >= linkPeriodLength {
                backlogPartsWillChange()
                governor.linkPeriod(wireBytes: linkPeriod.wireBytes, nanoseconds: now - linkPeriod.start,
                                    saturatedNanoseconds: linkPeriod.saturated, busyNanoseconds: linkPeriod.busy,
                                    publishedWireBytes: linkPeriod.published,
                                    warm: backlogPartsAcknowledged >= options.policy.window)
                counters.linkBytesPerSecond = governor.linkBytesPerSecond
                logger.debug("link period: \(linkPeriod.wireBytes) B acked (\(linkPeriod.published) B sent) in \(now - linkPeriod.start) ns, saturated \(linkPeriod.saturated) ns, busy \(linkPeriod.busy) ns → link ≈ \(Int(governor.linkBytesPerSecond ?? 0)) B/s, coding \(governor.codings[governor.choice].name)")
                linkPeriod = (now, 0, 0, 0, 0)
            }
        }
        for event in connection.drainEvents() {
            let now = loop.clock.now()
            switch event {
            case .connected(let rc):
                guard rc == 0 else {
                    counters.alarm("broker refused the connection: \(MQTTReasonCode.describe(Int(rc)))")
                    lostConnection("refused: \(MQTTReasonCode.describe(Int(rc)))")
                    return
                }
                if let timer = connectDeadlineTimer { loop.cancel(timer) }
                do throws(DAQError) {
                    try connection.subscribe(options.ackTopic)
                    try connection.subscribe(options.commandTopic)
                } catch {
                    lostConnection("subscribing to the ack and command topics failed: \(error)")
                    return
                }
                let offline = linkDown.map {
                    ($0.attempts == 0 ? " after " : " after \($0.attempts) failed attempt\($0.attempts == 1 ? "" : "s"), ")
                        + String(format: "%.1f s offline", Double(now - $0.since) / 1e9)
                } ?? ""
                counters.sessions += 1
                // The broker holds what it took on earlier connections for the collector: sending
                // starts after it (`UplinkSender.queuedThrough`).
                let from = sender.queuedThrough + 1
                let held = from > sender.acknowledged + 1
                    ? " (the broker took \(sender.acknowledged + 1)…\(from - 1) for the collector before)" : ""
                logger.notice("connected to \(BrokerAddress.text(host: options.host, port: options.port)) as \(options.deviceID)\(offline); sending from \(from)\(held)")
                linkDown = nil
                let retained = max(journal.lastSequence + 1 - journal.oldestSequence, 1)
                // What is still to send: the broker holds the rest for the collector.
                backlogProgress = BacklogProgress(acknowledged: from - 1, journalEnd: journal.lastSequence,
                                                  bytesPerEntry: Double(journal.journalBytes) / Double(retained), now: now)
                if let backlogProgress { logger.notice("\(backlogProgress.startLine)") }
                governor.linkChanged(initial: BodyCoding.initial)
                backlogPartsAcknowledged = 0
                soundingPending = options.compress
                linkPeriod = (now, 0, 0, 0, 0)
                connectionAccepted = true
                if let files = connectionFiles { connectionOutcome?(files, true) }
                perform(sender.on(.connected, now: now, jitter: nextJitter()))
                publishStatus()
            case .disconnected(let rc):
                lostConnection(rc == 0 ? "closed" : MQTTConnection.describeDisconnect(rc))
                return
            case .published(let mid, let reasonCode):
                if let report = statusInFlight.removeValue(forKey: mid) {
                    // 0x10: no subscriber took it (no collector session yet): keep it for the next connection.
                    if reasonCode < 0x10 { statusOutbox?.acknowledge(upTo: report) }
                    continue
                }
                if let bytes = backlogPartBytes[mid] {
                    backlogPartsWillChange()
                    backlogPartsAcknowledged += 1
                    backlogPartBytes[mid] = nil
                    linkPeriod.wireBytes += bytes
                    if sounding?.mid == mid { finishSounding(now: now) }
                }
                if let token = tokens.removeValue(forKey: mid) {
                    // The worst reason code of a batch's parts is the batch's.
                    let worst = max(worstReason[token] ?? 0, UInt8(clamping: reasonCode))
                    let remaining = (partsOutstanding[token] ?? 1) - 1
                    if remaining > 0 {
                        partsOutstanding[token] = remaining
                        worstReason[token] = worst
                    } else {
                        partsOutstanding[token] = nil
                        worstReason[token] = nil
                        perform(sender.on(.published(token: token, reasonCode: worst), now: now))
                        (counters.refusedBatches, counters.undeliveredBatches) = (UInt64(sender.refused), UInt64(sender.undelivered))
                    }
                }
            case .subscribed:
                break
            case .message(let topic, let payload):
                handleMessage(topic: topic, payload: payload, now: now)
            }
        }
    }

    /// `ack <epoch> <upTo>` on the ack topic, `resend <epoch> <from>` on the command topic.
    private func handleMessage(topic: String, payload: [UInt8], now: Int64) {
        let words = String(decoding: payload, as: UTF8.self).split(separator: " ")
        guard words.count == 3, let epoch = UInt64(words[1]), epoch == journal.epoch, let value = UInt64(words[2]) else {
            return
        }
        if topic == options.ackTopic, words[0] == "ack" {
            // Not cut to the journal's end: one beyond it is the sender's to judge (`divergedAfter`).
            perform(sender.on(.collectorAck(upTo: value), now: now))
            noteDiverged()
        } else if topic == options.commandTopic, words[0] == "resend" {
            counters.resendRequests += 1
            // The collector's copy is not what this side assumed: the next part is coded without
            // a context (one it could not read back, or one it lost, would be refused for ever).
            recentParts = RecentEntries(keep: ContextCoder.contextEntries)
            perform(sender.on(.resendRequest(from: value), now: now))
            noteDiverged()
        }
    }

    /// Publishes the OTA status reports not yet in flight (QoS 1, in order).
    func publishStatus() {
        guard let connection, sender.isConnected, let outbox = statusOutbox else { return }
        let inFlight = Set(statusInFlight.values)
        for report in outbox.pending where !inFlight.contains(report.sequence) {
            let bytes = Array(report.json.utf8)
            guard let mid = try? bytes.withUnsafeBytes({ raw in
                try Result { () throws(DAQError) -> Int32 in try connection.publish(topic: options.statusTopic, payload: raw) }.get()
            }) else { return }
            statusInFlight[mid] = report.sequence
        }
        watchSocket()
    }

    /// Drops the connection and connects again at once (new credentials to try).
    func reconnect() {
        guard !stopped else { return }
        guard connection != nil else {
            // Waiting between attempts: the next one goes now, with the credentials just changed
            // (a rollback to the old ones waited out the backoff the new ones had run up, a minute).
            // The sender decides it (an abandoned name lookup still running is waited for).
            guard let timer = timers[.reconnect] else {
                // No timer: an attempt under way, still looking up the broker's name, made with
                // the credentials before. Dropped, and one with the changed credentials starts
                // once the lookup is back (it connected with the old ones, and new ones waited
                // for a lost link).
                guard connector.isBusy else { return }
                logger.notice("connecting with the changed credentials once the name lookup under way is back")
                connect()
                return
            }
            loop.cancel(timer)
            timers[.reconnect] = nil
            logger.notice("connecting now with the changed credentials")
            perform(sender.on(.timer(.reconnect), now: loop.clock.now(), jitter: nextJitter()))
            return
        }
        logger.notice("reconnecting to use new credentials")
        lostConnection("reconnecting with new credentials", deliberate: true)
    }

    /// Since when the link is down and how many attempts failed since (nil while it is up).
    private var linkDown: (since: Int64, attempts: Int, lastReport: String?)?

    /// Ends this connection or attempt (`reason`: why, when known) and backs off. A link that was
    /// up is reported lost; failed attempts are reported once per kind of failure (a broker down
    /// for an hour is one line, not one a second), with the wait before the next.
    /// `linkFault`: the attempt timed out (no name, no session within the connect timeout): not
    /// held against a new certificate, which a slow link would otherwise roll back. (A refused
    /// connection is: a broker refusing a certificate closes the socket so fast that it can read
    /// as "no TCP connection" — measured with a revoked certificate.)
    /// `deliberate`: daqlink itself ends the session (new credentials): neither a link lost nor a
    /// failed attempt.
    private func lostConnection(_ reason: String? = nil, linkFault: Bool = false, deliberate: Bool = false) {
        // An attempt daqlink itself ends (new credentials) was not refused: not held against them.
        if connection != nil, !connectionAccepted, !linkFault, !deliberate, let files = connectionFiles { connectionOutcome?(files, false) }
        connectionAccepted = true  // report each attempt once
        let why = reason ?? connection?.lastFailure ?? "the connection failed"
        let wasUp = sender.isConnected
        closeConnection()
        if wasUp && !deliberate { counters.linksLost += 1 }
        guard !stopped else { return }
        let now = loop.clock.now()
        let actions = sender.on(deliberate ? .closedForNewCredentials : .disconnected, now: now, jitter: nextJitter())
        let retry = actions.lazy.compactMap { action -> Int64? in
            if case .arm(.reconnect, let deadline) = action { return deadline - now } else { return nil }
        }.first.map { String(format: "; retrying in %.1f s", Double($0) / 1e9) } ?? ""
        if deliberate {
            linkDown = (now, 0, why)
        } else if wasUp || linkDown == nil {
            linkDown = (now, wasUp ? 0 : 1, why)
            logger.notice("\(wasUp ? "link to" : "cannot connect to") \(BrokerAddress.text(host: options.host, port: options.port))\(wasUp ? " lost" : ""): \(why)\(retry)")
        } else if var down = linkDown {
            down.attempts += 1
            if down.lastReport != why {
                logger.notice("cannot connect to \(BrokerAddress.text(host: options.host, port: options.port)): \(why)\(retry) (attempt \(down.attempts))")
                down.lastReport = why
            }
            linkDown = down
        }
        perform(actions)
    }

    private func closeConnection() {
        connector.abandon()
        if let fd = watchedFD { loop.unwatch(fd) }
        watchedFD = nil
        if let timer = connectDeadlineTimer { loop.cancel(timer) }
        connectDeadlineTimer = nil
        unreadable.removeAll()
        tokens.removeAll()
        backlogPartBytes.removeAll()
        sounding = nil
        soundingPending = false
        publishQueue.removeAll()
        statusInFlight.removeAll()
        partsOutstanding.removeAll()
        worstReason.removeAll()
        connection = nil  // deinit destroys the libmosquitto handle and its queue
    }

    // MARK: batches

    private func publish(token: Int, first: UInt64, last: UInt64) {
        guard let connection else { return }
        var body: [UInt8] = []
        // Each entry's framed bytes in `body`: codec 2 regroups the entries' payloads.
        var entries: [Range<Int>] = []
        func add(_ framed: UnsafeRawBufferPointer) {
            entries.append(body.count..<(body.count + framed.count))
            body.append(contentsOf: framed)
        }
        let ring = ringAccess?()
        var sequence = first
        // The ring holds the most recent entries; older ones come from the journal files.
        while sequence <= last, ring?.withEntry(sequence, { add($0) }) != nil { sequence += 1 }
        if sequence <= last {
            publishFromJournal(token: token, first: first, last: last, connection: connection)
            return
        }
        // A batch the sender asked for may be larger than one MQTT message should be: cut it into
        // consecutive sub-batches of at most `maxBatchBytes` (at least one entry each), all under
        // the sender's token; the sender hears "published" once every part is PUBACKed.
        let segmentStarts = journal.segmentFirstSequences
        var partStart = 0
        while partStart < entries.count {
            var partEnd = partStart + 1
            while partEnd < entries.count,
                  entries[partEnd].upperBound - entries[partStart].lowerBound <= options.maxBatchBytes { partEnd += 1 }
            let partFirst = first + UInt64(partStart), partLast = first + UInt64(partEnd - 1)
            let byteRange = entries[partStart].lowerBound..<entries[partEnd - 1].upperBound
            let partEntries = entries[partStart..<partEnd].map { ($0.lowerBound - byteRange.lowerBound)..<($0.upperBound - byteRange.lowerBound) }
            guard sendPart(token: token, first: partFirst, last: partLast,
                           body: partStart == 0 && partEnd == entries.count ? body : Array(body[byteRange]), entries: partEntries,
                           // A part whose first entry starts a segment says so too (at sequence 1 it
                           // changes nothing: the collector cuts only a segment that holds entries).
                           segmentStarts: segmentStarts.filter { $0 >= partFirst && $0 <= partLast },
                           fromJournal: false, connection: connection)
            else { return }
            partStart = partEnd
        }
    }

    /// Publishes `first…last` read back from the journal files (a backlog): each run of entries the
    /// reader returns — at most `maxBatchBytes`, never across a segment end — is one part, read
    /// straight into its own buffer (one copy, each entry's CRC32C checked once).
    private func publishFromJournal(token: Int, first: UInt64, last: UInt64, connection: MQTTConnection) {
        counters.readsFromJournal += 1
        // Entries retention removed after the collector acknowledged them, asked for again (its
        // copy lost them): placeholders that say so, and the rest from the journal.
        var first = first
        if first < journal.oldestSequence {
            let through = min(last, journal.oldestSequence - 1)
            let reason = "deleted on the device: acknowledged by the collector, then removed by the journal's retention"
            guard sendLost(first: first, through: through, reason: reason, startsSegment: false, token: token,
                           connection: connection)
            else { return }
            guard through < last else { return }
            first = through + 1
        }
        do throws(DAQError) {
            // A backlog drains batch after batch: keep the reader where the last batch ended
            // instead of opening (and scanning) the segment again for every batch.
            if backlogReader?.next != first {
                // Dropped first: a reader that fails to open must not leave the last one's place
                // for the retry (it retried an empty range, and the batch stayed in flight).
                backlogReader = nil
                backlogReader = (try JournalReader(directory: journal.directory, from: first), first)
            }
            while backlogReader!.next <= last {
                var body: [UInt8] = []
                body.reserveCapacity(options.maxBatchBytes + JournalFraming.overhead)
                var entries: [Range<Int>] = []
                let read: JournalEntryRun?
                do throws(DAQError) {
                    read = try backlogReader!.reader.readEntries(
                        maxEntries: Int(last - backlogReader!.next + 1), maxBytes: options.maxBatchBytes, through: last,
                        into: &body, ranges: &entries)
                } catch where error.code == .journalCorrupt {
                    // Damaged storage: what cannot be read goes as placeholders, and the rest flows.
                    // Entries up to `last` are synced, so damage at the newest segment's end is
                    // not an end still being written.
                    guard let damage = try backlogReader!.reader.skipDamaged(written: last) else { throw error }
                    guard sendLost(damage, through: last, token: token, connection: connection) else { return }
                    backlogReader!.next = damage.last + 1
                    continue
                }
                guard let run = read else {
                    throw DAQError(.journalCorrupt, "entries \(backlogReader!.next)…\(last) are not in the journal",
                                   at: InputLocation(file: journal.directory))
                }
                backlogReader!.next = run.lastSequence + 1
                guard sendPart(token: token, first: run.firstSequence, last: run.lastSequence, body: body, entries: entries,
                               segmentStarts: run.startsSegment ? [run.firstSequence] : [], fromJournal: true,
                               connection: connection)
                else { return }
            }
            unreadable[first] = nil
        } catch {
            // What was read before the failure is published; the rest starts here.
            let first = backlogReader?.next ?? first
            backlogReader = nil
            // A read that failed (EIO from a dying card, a USB glitch): the batch stays in flight
            // and is read again after 2 s, then 4 s; a range that fails three times in a row goes
            // as `lost` placeholders, with an alarm, so the stream goes on past it. (It stayed in
            // flight for ever: with a whole segment unreadable, the window filled with such
            // batches and the uplink stalled, live data behind it, until the journal was full.)
            let attempts = (unreadable[first] ?? 0) + 1
            unreadable[first] = attempts
            guard attempts < Self.readAttempts else {
                unreadable[first] = nil
                // Only up to the end of the segment that failed (the next one is another file) and
                // short of what the RAM ring still holds (recent entries go from there).
                let ring = ringAccess?()
                let inRing = (first...last).first { sequence in ring?.withEntry(sequence, { _ in () }) != nil }
                let through = min(last, journal.segmentFirstSequences.first { $0 > first }.map { $0 - 1 } ?? last,
                                  (inRing ?? last + 1) - 1)
                guard through >= first else { return publish(token: token, first: first, last: last) }
                let text = "entries \(first)…\(through) could not be read from the journal \(attempts) times (\(error)): "
                    + "sent as 'lost' placeholders so the rest goes on"
                raiseAlarm(text)
                guard sendLost(first: first, through: through, reason: "unreadable on the device: \(error)",
                               startsSegment: journal.segmentFirstSequences.contains(first), token: token, connection: connection),
                      through < last else { return }
                return publish(token: token, first: through + 1, last: last)
            }
            // Once per fault: a retry meets it again.
            if reportedDamage.insert("\(error)").inserted {
                raiseAlarm("cannot read entries \(first)…\(last) from the journal: \(error) (read again after 2 s and 4 s; "
                           + "after \(Self.readAttempts) failures they go as 'lost')")
            }
            let retryFirst = first
            // The batch is not published while the rest waits for its retry: a part already sent
            // must not complete it on its PUBACK (the broker would count as taken what was never
            // sent, and the retry found the batch no longer in flight).
            partsOutstanding[token, default: 0] += 1
            loop.schedule(at: loop.clock.now() + (Int64(1) << attempts) * 1_000_000_000) { [weak self, weak connection] in
                guard let self, !self.stopped, let current = self.connection, current === connection else { return }
                self.partsOutstanding[token, default: 1] -= 1
                guard self.sender.isInFlight(token: token) else { return }
                self.publishFromJournal(token: token, first: retryFirst, last: last, connection: current)
            }
        }
    }

    /// Reads of the same backlog range that fail before it goes as `lost` placeholders.
    static let readAttempts = 3
    /// Failed reads per backlog range (by its first entry) in a row.
    private var unreadable: [UInt64: Int] = [:]

    /// The backlog found at the last connect, while it drains (lines for the operator).
    private var backlogProgress: BacklogProgress?

    /// Journal damage and read faults already reported: a resend, or the next batch, meets them again.
    private var reportedDamage: Set<String> = []

    /// Publishes a `lost` placeholder for each entry of `damage` up to `last`, in parts of at most
    /// `maxBatchBytes`: the collector commits them in the entries' place, so the stream goes on
    /// past the damage and its copy says what is missing and why. The payload names the segment,
    /// offset and defect, so a resend sends the same bytes. Alarms once per damaged place.
    /// False when the connection failed.
    private func sendLost(_ damage: JournalReader.Damage, through last: UInt64, token: Int, connection: MQTTConnection) -> Bool {
        if reportedDamage.insert("\(damage.segment) \(damage.offset)").inserted {
            let text = damage.count > 0
                ? "journal \(damage); sent as 'lost' placeholders so the backlog after them goes on"
                : "journal damage in \(damage.segment) at offset \(damage.offset) (\(damage.defect)) passed over; no entry to send was lost there"
            raiseAlarm(text)
        }
        guard damage.count > 0, damage.first <= last else { return true }
        return sendLost(first: damage.first, through: min(damage.last, last),
                        reason: "unreadable on the device: \(damage.segment) offset \(damage.offset): \(damage.defect)",
                        startsSegment: damage.first == damage.segmentFirstSequence, token: token, connection: connection)
    }

    /// Publishes a `lost` placeholder carrying `reason` for each entry `first…through`, in parts of
    /// at most `maxBatchBytes`; the first part starts a segment when `startsSegment` says so.
    private func sendLost(first: UInt64, through: UInt64, reason text: String, startsSegment: Bool, token: Int,
                          connection: MQTTConnection) -> Bool {
        let reason = Array(text.utf8)
        var sequence = first
        while sequence <= through {
            var body: [UInt8] = []
            var entries: [Range<Int>] = []
            let partFirst = sequence
            repeat {
                let start = body.count
                reason.withUnsafeBytes { JournalFraming.encode(kind: .lost, sequence: sequence, payload: $0, into: &body) }
                entries.append(start..<body.count)
                sequence += 1
            } while sequence <= through && body.count + JournalFraming.framedLength(payloadLength: reason.count) <= options.maxBatchBytes
            counters.lostEntries += UInt64(entries.count)
            guard sendPart(token: token, first: partFirst, last: sequence - 1, body: body, entries: entries,
                           segmentStarts: startsSegment && partFirst == first ? [partFirst] : [], fromJournal: true,
                           coding: .raw, connection: connection)
            else { return false }
        }
        return true
    }

    /// Publishes one sub-batch; false when the connection failed.
    /// `coding` overrides the choice below (placeholders go raw: they are few and small).
    private func sendPart(token: Int, first: UInt64, last: UInt64, body: [UInt8], entries: [Range<Int>],
                          segmentStarts: [UInt64], fromJournal: Bool, coding chosen: BodyCoding? = nil,
                          connection: MQTTConnection) -> Bool {
        let checksum = UplinkBatch.entriesChecksum(body: body, entries: entries)
        // Backlog parts: the coding the governor finds fastest on this link (raw on a LAN or a local
        // broker, compressed over 4G). Live parts: the strongest, since the CPU is idle between
        // them and every byte crosses the link (docs/uplink.md, "Which coding a part gets").
        let coding = chosen ?? (!options.compress ? BodyCoding.raw : fromJournal ? BodyCoding(rawValue: governor.choice)! : .strong)
        let started = loop.clock.now()
        let wire = encodePart(first: first, last: last, body: body, entries: entries, segmentStarts: segmentStarts,
                              checksum: checksum, coding: coding)
        if fromJournal, coding != .raw {
            governor.encoded(coding: coding.rawValue, rawBytes: body.count, wireBytes: wire.count,
                             nanoseconds: loop.clock.now() - started)
        }
        // The context of the next parts (codecs 3 and 4), whichever way this one was coded.
        recentParts.append(first: first, body: body, entries: entries)
        let publishStarted = loop.clock.now()
        do throws(DAQError) {
            let mid = try wire.withUnsafeBytes { raw in
                Result { () throws(DAQError) -> Int32 in try connection.publish(topic: options.dataTopic, payload: raw) }
            }.get()
            tokens[mid] = token
            // Backlog parts measure the link for the governor (live parts leave the window open).
            if fromJournal {
                backlogPartsWillChange()
                backlogPartBytes[mid] = wire.count
                linkPeriod.published += wire.count
                if soundingPending && wire.count >= CompressionGovernor.soundingBytes {
                    sounding = (mid, publishStarted, wire.count)
                    // A PUBACK that does not come (a broker holding it back) must not hold the
                    // uplink: past this, the sounding is given up and says nothing.
                    loop.schedule(at: publishStarted + soundingTimeout) { [weak self] in
                        guard let self, self.sounding?.mid == mid, self.sounding?.started == publishStarted else { return }
                        self.sounding = nil
                        self.logger.debug("link sounding: no PUBACK within \(self.soundingTimeout / 1_000_000) ms; given up")
                        self.schedulePublishing()
                    }
                }
                soundingPending = false
            }
            counters.partsByCoding[coding.rawValue] += 1
            if counters.firstPublishAt == nil {
                counters.firstPublishAt = loop.clock.now()
                counters.firstPublishCPU = SystemClock.processCPU()
            }
            wireTrace?.published(wire, rawEntries: coding == .raw ? (first, last, wire.count - body.count) : nil)
            partsOutstanding[token, default: 0] += 1
            counters.batches += 1
            counters.rawBytes += UInt64(body.count)
            counters.wireBytes += UInt64(wire.count)
            watchSocket()
            return true
        } catch {
            lostConnection("\(error)")
            return false
        }
    }

    /// Header and body of one part, coded with `coding`: `fast` is codec 3 against the part before
    /// (codec 2 without one) at zstd level 1; `strong` is codec 4 against the last
    /// `ContextCoder.contextEntries` entries (codec 2 at zstd level 12 without them). A context is
    /// what the device published just before this part; the collector decodes the part once it has
    /// committed those entries (it commits strictly in order).
    private func encodePart(first: UInt64, last: UInt64, body: [UInt8], entries: [Range<Int>], segmentStarts: [UInt64],
                            checksum: UInt32, coding: BodyCoding) -> [UInt8] {
        var header = UplinkBatch(deviceID: options.deviceID, epoch: journal.epoch, first: first, last: last,
                                 segmentStarts: segmentStarts, codec: .none, bodyLength: UInt32(body.count),
                                 bodyChecksum: checksum)
        guard coding != .raw else { return header.encodedHeader() + body }
        let contextCount = coding == .fast ? recentParts.newestRunCount : ContextCoder.contextEntries
        let found = recentParts.context(before: first, count: contextCount)
        if coding == .strong, let (context, reference) = found {
            header.codec = .contextModelled
            header.context = reference
            return header.encodedHeader() + ContextCoder.encode(body: body, entries: entries, context: context)
        }
        header.codec = found == nil ? .transposedZstd : .contextTransposedZstd
        header.context = found?.1
        let (transposed, sections) = body.withUnsafeBytes {
            BatchTransform.encodeSections(body: $0, entries: entries, context: found?.0)
        }
        return header.encodedHeader() + transposed.withUnsafeBytes {
            BatchCompression.compress($0, sectionEnds: sections, level: coding == .fast ? 1 : 12)
        }
    }

    private func nextJitter() -> Double { jitter.next() }
}

/// How a part's body goes on the wire: raw (codec 0); transposed with zstd level 1 (codec 3, or 2
/// without a context); or context-modelled (codec 4, or codec 2 at zstd level 12 without a
/// context). The governor chooses among them for backlog parts by link and CPU
/// (`CompressionGovernor`); live parts are always `strong`.
/// Its raw value is its index in `governed`.
enum BodyCoding: Int, CaseIterable {
    case raw, fast, strong

    /// The governor's codings, in this order (weakest to strongest), with priors measured on the
    /// reference workload (ratios are wire bytes per journal byte, framing included: codec 3 at
    /// level 1 sends 14.08 MB for a 49.87 MB drain at ~150 MB/s; codec 4 0.270× of the record
    /// bytes at 16–17 MB/s: docs/benchmarks.md).
    static let governed: [CompressionGovernor.Coding] = [
        .init(name: "raw", secondsPerRawByte: 0, ratio: 1),
        .init(name: "zstd-1", secondsPerRawByte: 1 / 150e6, ratio: 0.282),
        .init(name: "codec-4", secondsPerRawByte: 1 / 16e6, ratio: 0.248),
    ]
    /// Until the link is measured: fast compression (a device on 4G must not start raw).
    static let initial = BodyCoding.fast.rawValue
}
