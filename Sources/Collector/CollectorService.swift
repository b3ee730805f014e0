// The fleet-side collector: a durable MQTT 5 session (clean start off, session expiry set)
// subscribed to every device's data topic; each batch is checked, deduplicated, reordered within
// a bound, committed to that device's rebuilt journal, then acknowledged end to end.
import DAQCore
import Foundation
import JournalStore
import Delivery
import PKI
import Runtime
import Uplink
#if canImport(Glibc)
import Glibc
#endif

/// Settings of `daqctl collect`.
public struct CollectorOptions: Sendable {
    public var host: String
    public var port: Int
    public var tls: MQTTTLSFiles
    public var clientID = "collector"
    public var sessionExpiry: UInt32 = 7 * 24 * 3600
    /// Output directory: `<output>/<device>/journal/` for the first stream (epoch) met of each
    /// device, `<output>/<device>/epoch-<E>/journal/` for each other one.
    public var output: String
    /// Exit after this many seconds without a data message (nil: run until a signal).
    public var idleExit: Double?
    /// Exit after this many seconds in all.
    public var duration: Double?
    /// A connect attempt that has no accepted MQTT connection after this many seconds (a host
    /// that drops the SYN, a TLS handshake that never ends) is given up and tried again.
    public var connectTimeout: Double = 10
    /// A device heard from in this run that sends nothing for this many seconds gets one line, and
    /// one more when it is heard again (nil: say nothing).
    public var quietAfter: Double? = 60
    /// The copy of a stream its device no longer sends on (it sent on another in this run: its
    /// journal was started afresh), quiet for this many seconds with nothing in flight, is closed
    /// (its journal's descriptors and lock) and opened again when it sends (nil: never). A fleet's
    /// journals started afresh over months (card swaps) each left a copy open. A device's current
    /// stream stays open, however quiet: opening a copy is a journal recovery (every segment's
    /// header read, the newest segment read whole), which an outage must not make every copy pay.
    public var closeIdleStreamsAfter: Double? = 600
    /// Certificates and the CRL whose end stops the fleet's data: said at start and once a day
    /// while within their warning window, as an alarm once ended.
    public var watchedCredentials: [CredentialLifetime.Watched] = []
    /// The PKI's `index.json` and directory, when the collector runs from it: every device's newest
    /// certificate is watched too (30 days).
    public var deviceIndex: (path: String, pki: String)?

    public init(host: String, port: Int, tls: MQTTTLSFiles, output: String) {
        self.host = host
        self.port = port
        self.tls = tls
        self.output = output
    }
}

/// Per-device figures at the end.
public struct CollectorDeviceReport: Sendable {
    public var deviceID: String
    /// The stream's epoch, and whether its copy is the device's first (`<out>/<device>/`) or one
    /// beside it (`<out>/<device>/epoch-<E>/`).
    public var epoch: UInt64
    public var besideFirst: Bool
    /// How the collector names the stream: the device, and the epoch if beside the first.
    public var stream: String { Self.streamName(device: deviceID, epoch: epoch, besideFirst: besideFirst) }
    public var committed: UInt64
    public var entries: UInt64
    public var bytes: UInt64
    public var duplicates: UInt64
    public var gaps: UInt64
    /// Gaps the resent entries filled in this run (the rest wait for the device).
    public var gapsFilled: UInt64 = 0
    /// Entries the device could not read from its journal, committed as `lost` placeholders.
    public var lost: UInt64

    static func streamName(device: String, epoch: UInt64, besideFirst: Bool) -> String {
        besideFirst ? "\(device) epoch \(epoch)" : device
    }
}

/// One stream of one device: the device's journal from its creation (a journal started afresh
/// gets a new epoch).
struct StreamKey: Hashable {
    let device: String
    let epoch: UInt64
}

public final class CollectorService {
    public let options: CollectorOptions
    private let loop = EventLoop()
    /// SUBACKs received on the current connection (one per topic in `subscriptions`).
    private var subscriptionsGranted = 0
    /// Every device's data and OTA status, and the broker's error log (`log_dest topic`), where
    /// session takeovers show up and nowhere else.
    private static let subscriptions = ["devices/+/data", "devices/+/ota/status", "$SYS/broker/log/E"]
    private var takeoverWatch = SessionTakeoverWatch()
    private var connection: MQTTConnection?
    /// One copy per stream: a device's journal started afresh (a new card, a wiped directory) gets
    /// a new epoch, and its stream a copy of its own beside the first.
    private var sinks: [StreamKey: DeviceStreamSink] = [:]
    /// Copies closed while idle (`closeIdleStreams`), kept for their counts until opened again.
    private var closedIdle: [StreamKey: DeviceStreamSink] = [:]
    private var lastMessage: Int64
    private var rejected: UInt64 = 0
    /// Directories of streams whose rebuilt journal could not be opened (reported once until it opens).
    private var unopenable: Set<String> = []
    /// Streams started afresh per device in this run (a copy beside the first each): at
    /// `newStreamsAlarm`, one alarm, since a journal that keeps starting afresh is a device fault.
    private var newStreams: [String: Int] = [:]
    /// Streams a batch came from in this run.
    private var heardFrom: Set<String> = []
    /// Devices that stopped sending (`CollectorOptions.quietAfter`), and each one's stream last heard.
    private var quietDevices: QuietDevices?
    private var lastStream: [String: StreamKey] = [:]
    static let newStreamsAlarm = 3
    /// New streams one device may open in a run: each holds files open until the device has left
    /// it for `closeIdleStreamsAfter` (or the collector stops), and a device sending epoch after
    /// epoch (broken, or hostile with a valid certificate) would otherwise run the collector out of
    /// descriptors, for every device. Past it, its batches of
    /// a new epoch are refused (not acknowledged: the device keeps them) until a restart.
    static let newStreamsLimit = 16
    private var failure: DAQError?
    private var stopping = false
    private var watchedFD: Int32?
    /// Runs each device's fdatasync off the loop, so batches keep arriving and being written while
    /// the disk flushes (acks still wait for their sync); tokens name the device of each sync.
    private var syncer: BackgroundSync?
    private var syncDevices: [Int: StreamKey] = [:]
    private var nextSyncToken = 0
    /// Writes each device's MDF files from its commits on a thread of idle priority (`MDFTrail`).
    private var mdf: MDFTrail?
    private var burstTimer: EventLoop.TimerID?
    /// DAQCTL_COMMIT_TRACE (a benchmark aid): commit times per acknowledged batch.
    private let commitTrace = CommitTrace.fromEnvironment()
    /// OTA status reports per device.
    private lazy var history = UpdateHistory(output: options.output)

    /// The collector held a session with all its subscriptions at some point of the run.
    public private(set) var subscribedOnce = false

    public init(options: CollectorOptions) {
        self.options = options
        lastMessage = loop.clock.now()
        quietDevices = options.quietAfter.map { QuietDevices(after: waitNanoseconds(seconds: $0)) }
        revokedDevices = options.deviceIndex.map { RevokedDevices(indexPath: $0.path) }
    }

    /// Runs until a signal, the idle timeout or the duration; returns per-device reports.
    public func run() throws(DAQError) -> [CollectorDeviceReport] {
        raiseOpenFileLimit()
        let signals = try SignalWatch()
        loop.watch(signals.fileDescriptor, interest: .read) { [unowned self] _ in
            if !signals.drain().isEmpty { stop() }
        }
        let syncer = try BackgroundSync()
        self.syncer = syncer
        defer { syncer.shutdown() }
        loop.watch(syncer.fileDescriptor, interest: .read) { [unowned self] _ in syncsFinished() }
        let mdf = try MDFTrail()
        self.mdf = mdf
        loop.watch(mdf.fileDescriptor, interest: .read) { [unowned self] _ in
            do throws(DAQError) {
                try mdf.takeCompletions().forEach(reportMDFDropped)
            } catch {
                storageFailed(error)
            }
        }
        try resumeKnownDevices()
        if !sinks.isEmpty {
            let devices = Set(sinks.keys.map(\.device)).count
            writeError("daqctl collect: reopened \(sinks.count) stream\(sinks.count == 1 ? "" : "s") of \(devices) device\(devices == 1 ? "" : "s") "
                       + "in \(options.output)\(sinks.count > devices ? " (a device's journal started afresh is a stream of its own)" : "")\n")
        }
        checkCredentialLifetimes()
        try connect()
        if let duration = options.duration {
            loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: duration)) { [unowned self] in stop() }
        }
        periodic()
        try loop.run()
        // Syncs still running finish first; their acks are not sent (the loop is done): the
        // devices resend those entries and the collector drops them as duplicates.
        syncer.shutdown()
        for line in lostRuns.finish() { writeError("daqctl collect: \(line)\n") }
        for sink in sinks.values {
            do throws(DAQError) { try sink.close() } catch { if failure == nil { failure = error } }
        }
        // The MDF files catch up with every commit and are finalized (this waits for the thread).
        do throws(DAQError) {
            var dropped = try mdf.takeCompletions()
            if mdf.isBehind {
                writeError("daqctl collect: the MDF files trail the journal; writing the rest before finalizing them\n")
            }
            dropped += try mdf.finish()
            dropped.forEach(reportMDFDropped)
        } catch {
            if failure == nil { failure = error }
        }
        if let failure { throw failure }
        return (Array(sinks.values) + closedIdle.values).sorted {
            ($0.deviceID, $0.besideFirst ? 1 : 0, $0.epoch) < ($1.deviceID, $1.besideFirst ? 1 : 0, $1.epoch)
        }.map {
            CollectorDeviceReport(deviceID: $0.deviceID, epoch: $0.epoch, besideFirst: $0.besideFirst,
                                  committed: $0.committed, entries: $0.committedEntries,
                                  bytes: $0.committedBytes, duplicates: $0.duplicates, gaps: $0.gaps, gapsFilled: $0.gapsFilled,
                                  lost: $0.lostEntries)
        }
    }

    /// Reopens every stream this output directory already holds (each device's first in
    /// `<device>/`, the others in `<device>/epoch-<E>/`), so its state is restored before any batch
    /// arrives (its MDF files are rewritten from where they were, on the MDF thread), and a clean
    /// stop finalizes files even for devices that send nothing in this run.
    private func resumeKnownDevices() throws(DAQError) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: options.output) else { return }
        for device in names.sorted() {
            let home = "\(options.output)/\(device)"
            try resume(device, directory: home, beside: nil)
            let others = (try? FileManager.default.contentsOfDirectory(atPath: home)) ?? []
            for name in others.sorted() where name.hasPrefix("epoch-") {
                guard let epoch = UInt64(name.dropFirst("epoch-".count)) else { continue }
                try resume(device, directory: "\(home)/\(name)", beside: epoch)
            }
        }
    }

    /// Reopens one stream's copy; `beside` is the epoch its directory is named after (nil: the
    /// device's first stream, whose epoch its journal tells).
    private func resume(_ device: String, directory: String, beside: UInt64?) throws(DAQError) {
        let journal = "\(directory)/journal"
        guard FileManager.default.fileExists(atPath: journal) else { return }
        func reopen() throws(DAQError) {
            let reader = try JournalReader(directory: journal, from: 1)
            guard try reader.next() != nil, let epoch = reader.epoch else { return }
            _ = try open(StreamKey(device: device, epoch: beside ?? epoch), directory: directory, besideFirst: beside != nil)
        }
        do throws(DAQError) {
            do throws(DAQError) {
                try reopen()
            } catch where error.code == .journalCorrupt {
                // A writer opening the journal rewrites a damaged segment header: then once more.
                // A copy beside the first is named after its epoch, the first's is recorded beside
                // it: either rebuilds any header.
                var repair = JournalConfiguration(epoch: beside ?? 0)
                repair.recordedEpoch = beside ?? FirstStreamEpoch.read(in: directory)
                try JournalWriter(directory: journal, configuration: repair).close()
                try reopen()
            }
        } catch where error.code == .journalCorrupt || (error.code == .malformedInput && error.location?.field == "epoch") {
            // Its first batch tries again (an epoch-<E>/ holding another epoch is left as it is).
            cannotOpen(directory, error)
        }
    }

    /// Each stream holds its journal directory, its open segment and its MDF file open: at the
    /// usual soft limit of 1024 files a fleet of ~330 streams stopped the collector for every device
    /// (a failed open is a storage failure), and a restart failed the same way. The soft limit is
    /// raised to the hard one; a hard limit that still allows few streams is said at start.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        if limit.rlim_cur < 4096 {
            writeError("daqctl collect: WARNING: at most \(limit.rlim_cur) open files (about \(limit.rlim_cur / 3) device streams: "
                       + "each holds three open while in use); raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit)\n")
        }
    }

    /// At start, then once a day: the credentials near their end (`CollectorOptions.watchedCredentials`).
    private func checkCredentialLifetimes() {
        guard !stopping else { return }
        let now = CredentialLifetime.now()
        var notices = options.watchedCredentials.compactMap { $0.check(now: now) }
        if let (path, pki) = options.deviceIndex {
            do {
                notices += try CredentialLifetime.deviceNotices(index: path, now: now, warnDays: 30, pki: pki)
            } catch {
                notices.append(CredentialLifetime.Notice(expired: false, text: "\(path) cannot be read to check the devices' certificates: \(error)"))
            }
        }
        for notice in notices {
            writeError("daqctl collect: \(notice.expired ? "ALARM" : "WARNING"): \(notice.text)\n")
        }
        if !options.watchedCredentials.isEmpty || options.deviceIndex != nil {
            loop.schedule(at: loop.clock.now() + 86_400 * 1_000_000_000) { [unowned self] in checkCredentialLifetimes() }
        }
    }

    /// Runs of entries committed as `lost`, reported a line per run.
    private var lostRuns = LostRuns()
    /// With `--pki`: the devices the PKI revoked, whose batches are refused.
    private let revokedDevices: RevokedDevices?

    private func lost(_ device: String, _ first: UInt64, _ last: UInt64, _ reason: String) {
        for line in lostRuns.add(device: device, first: first, last: last, reason: reason, now: loop.clock.now()) {
            writeError("daqctl collect: \(line)\n")
        }
    }

    /// One stream's rebuilt journal (in `directory`) too damaged to open stops that stream, not the
    /// collector: its batches are refused (the device's journal keeps them), with one alarm until it
    /// opens again.
    private func cannotOpen(_ directory: String, _ error: DAQError) {
        if unopenable.insert(directory).inserted {
            let device = String(directory.dropFirst(options.output.count + 1))
            writeError("daqctl collect: ALARM: \(device): its rebuilt journal cannot be opened: \(error); "
                       + "its batches are refused until it is repaired (the device keeps them); the other devices go on\n")
        }
    }

    private func stop() {
        stopping = true
        connection?.disconnect()
        // An attempt still in a blocking connect is not waited for: the process is about to exit.
        connector.stop(waiting: false)
        loop.stop()
    }

    /// Connects off the loop (`BrokerConnector`: the durable connect blocks in TCP connect, two
    /// minutes against a host that drops the SYN), so signals, syncs and the MDF thread are served
    /// meanwhile. Throws only what no retry can mend (the TLS files); a failed or timed-out
    /// attempt is tried again a second later, once the one before has come back.
    private func connect() throws(DAQError) {
        guard !stopping else { return }
        guard !connector.isBusy else {
            return connector.whenFree { [unowned self] in
                do throws(DAQError) { try connect() } catch { failure = error; stop() }
            }
        }
        let connection = try MQTTConnection(clientID: options.clientID, tls: options.tls, cleanStart: false)
        connectAttempt += 1
        let attempt = connectAttempt
        let (host, port, expiry) = (options.host, options.port, options.sessionExpiry)
        do throws(DAQError) {
            try connector.start(connection) { (connection: MQTTConnection) throws(DAQError) in
                try connection.connectDurable(host: host, port: port, sessionExpiry: expiry)
            }
        } catch {
            return connectFailed(error)
        }
        loop.schedule(at: loop.clock.now() + waitNanoseconds(seconds: options.connectTimeout)) { [unowned self] in
            guard !stopping, connectAttempt == attempt, self.connection?.isAccepted != true else { return }
            let what = self.connection == nil ? "no TCP connection" : "no MQTT session"
            connector.abandon()
            reconnectLater()
            connectFailed(DAQError(.io, "\(what) within \(options.connectTimeout) s"))
        }
    }

    private lazy var connector: BrokerConnector = {
        let connector = BrokerConnector(loop: loop)
        connector.started = { [unowned self] result in
            switch result {
            case .success(let connection):
                do throws(DAQError) {
                    for topic in Self.subscriptions { try connection.subscribe(topic) }
                } catch {
                    return connectFailed(error)
                }
                subscriptionsGranted = 0
                self.connection = connection
                watch()
            case .failure(let error):
                connectFailed(error)
            }
        }
        return connector
    }()
    /// Numbers connect attempts, so a deadline only ends the attempt it was armed for.
    private var connectAttempt = 0
    /// The last connect failure reported (a broker down for long is reported once, not per retry).
    private var lastConnectFailure: String?

    private func connectFailed(_ error: DAQError) {
        let text = "\(error)"
        if text != lastConnectFailure {
            writeError("daqctl collect: cannot connect to \(BrokerAddress.text(host: options.host, port: options.port)): \(text); retrying every second\n")
            lastConnectFailure = text
        }
        guard connection == nil, !stopping else { return }
        scheduleReconnect()
    }

    private func watch() {
        guard let connection, let fd = connection.socket else { return }
        if let old = watchedFD, old != fd { loop.unwatch(old) }
        watchedFD = fd
        loop.watch(fd, interest: connection.wantsWrite ? [.read, .write] : .read) { [unowned self] ready in
            guard let connection = self.connection else { return }
            var healthy = true
            if ready.contains(.read) { healthy = connection.handleReadable(hungUp: ready.contains(.hangUp)) && healthy }
            if ready.contains(.write) || connection.wantsWrite { healthy = connection.handleWritable() && healthy }
            handleEvents()
            if !healthy {
                linkLost(connection.lastFailure ?? "the connection failed")
                reconnectLater()
            } else {
                watch()
            }
        }
    }

    /// When the collector lost its session (nil while it holds one, or never had one).
    private var lostSince: Int64?

    /// The session ended: said once per loss, with why (the broker's reason, a reset, a keepalive).
    private func linkLost(_ why: String) {
        guard !stopping, self.connection != nil, lostSince == nil, subscribedOnce else { return }
        lostSince = loop.clock.now()
        writeError("daqctl collect: lost the broker at \(BrokerAddress.text(host: options.host, port: options.port)): \(why); reconnecting every second "
                   + "(the devices' batches wait in its queue for this session)\n")
    }

    private func reconnectLater() {
        quietDevices?.disconnected()
        if let fd = watchedFD { loop.unwatch(fd) }
        watchedFD = nil
        guard connection != nil else { return }  // a reconnect is already scheduled
        connection = nil
        guard !stopping else { return }
        scheduleReconnect()
    }

    private var reconnectScheduled = false

    private func scheduleReconnect() {
        guard !reconnectScheduled else { return }
        reconnectScheduled = true
        loop.schedule(at: loop.clock.now() + 1_000_000_000) { [unowned self] in
            reconnectScheduled = false
            guard !stopping, connection == nil else { return }
            do throws(DAQError) { try connect() } catch { failure = error; stop() }
        }
    }

    /// While the MDF files hold back for a burst of commits, looks every window whether it is over.
    private func watchBurst() {
        guard burstTimer == nil, let mdf else { return }
        burstTimer = loop.schedule(at: loop.clock.now() + MDFTrail.burstWindow) { [unowned self] in
            burstTimer = nil
            mdf.tick(now: loop.clock.now())
            if mdf.holding { watchBurst() }
        }
    }

    private func periodic() {
        if let connection, !connection.handlePeriodic() { reconnectLater() }
        if let idle = options.idleExit, Double(loop.clock.now() - lastMessage) / 1e9 >= idle { stop() }
        for (device, silent) in quietDevices?.tick(now: loop.clock.now()) ?? [] {
            let committed = lastStream[device].flatMap { sinks[$0] ?? closedIdle[$0] }.map { ", committed up to \($0.committed)" } ?? ""
            writeError("daqctl collect: \(device): nothing received for \(QuietDevices.describe(silent))\(committed); "
                       + "the device is off, or its link is down (its journal keeps what it acquires)\n")
        }
        closeIdleStreams()
        guard !stopping else { return }
        loop.schedule(at: loop.clock.now() + 200_000_000) { [unowned self] in periodic() }
    }

    /// Closes the copies of streams their devices left (see `closeIdleStreamsAfter`) that received
    /// nothing for that long and have nothing in flight; `sink(for:)` opens one again when its
    /// stream sends.
    private func closeIdleStreams() {
        guard let seconds = options.closeIdleStreamsAfter else { return }
        let now = loop.clock.now()
        let limit = waitNanoseconds(seconds: seconds)
        let busy = Set(syncDevices.values)
        for (key, sink) in sinks where lastStream[key.device].map({ $0 != key }) == true
                && now - sink.lastReceived >= limit && sink.isQuiescent && !busy.contains(key) {
            do throws(DAQError) {
                try sink.close()
            } catch {
                storageFailed(error)
                return
            }
            sinks[key] = nil
            sink.shedMemory()
            closedIdle[key] = sink
        }
    }

    private func handleEvents() {
        guard let connection else { return }
        for event in connection.drainEvents() {
            // A storage failure stops the collector: nothing after it in this turn is handled (a
            // device's next batch could name the batch that failed as its context, or find the
            // stream's mark ahead of its copy), and nothing more is acknowledged.
            guard !stopping else { return }
            switch event {
            case .message(let topic, let payload):
                lastMessage = loop.clock.now()
                handleData(topic: topic, payload: payload)
            case .disconnected(let rc):
                acknowledgeCommitted()
                linkLost(rc == 0 ? "closed" : MQTTConnection.describeDisconnect(rc))
                reconnectLater()
                return
            case .subscribed:
                // All subscriptions granted: from now on the broker keeps every device's data for us.
                subscriptionsGranted += 1
                if subscriptionsGranted == Self.subscriptions.count {
                    if let lost = lostSince {
                        writeError(String(format: "daqctl collect: connected again after %.1f s; the broker kept the devices' batches meanwhile\n",
                                          Double(loop.clock.now() - lost) / 1e9))
                        lostSince = nil
                    }
                    subscribedOnce = true
                    quietDevices?.connected(now: loop.clock.now())
                    writeError("daqctl collect: subscribed to devices/+/data on \(BrokerAddress.text(host: options.host, port: options.port))\n")
                    lastConnectFailure = nil
                }
            default:
                break
            }
        }
        acknowledgeCommitted()
    }

    private func handleData(topic: String, payload: [UInt8]) {
        if topic.hasPrefix("$SYS/broker/log/") {
            watchForTakeover(String(decoding: payload, as: UTF8.self))
            return
        }
        let parts = topic.split(separator: "/")
        if parts.count == 4, parts[0] == "devices", parts[2] == "ota", parts[3] == "status" {
            do throws(DAQError) {
                if try history.record(device: String(parts[1]), payload: payload, source: topic) {
                    writeError("daqctl collect: \(parts[1]) OTA: \(String(decoding: payload, as: UTF8.self))\n")
                }
            } catch {
                rejected += 1
                writeError("daqctl collect: rejected an OTA status report: \(error)\n")
            }
            return
        }
        guard parts.count == 3, parts[0] == "devices", parts[2] == "data" else { return }
        let topicDevice = String(parts[1])
        do throws(DAQError) {
            // The id names directories under --out: only what `daqctl pki` issues as a CN (a
            // certificate from another tool named ".." would have written beside the output).
            do { try CommonName.validateClientName(topicDevice) } catch {
                throw DAQError(.malformedInput, "\(error) (refused as a directory name under --out)",
                               at: InputLocation(file: topic, field: "device id"))
            }
            if let revokedDevices, revokedDevices.isRevoked(topicDevice, now: loop.clock.now(), say: { writeError("daqctl collect: \($0)\n") }) {
                rejected += 1
                return
            }
            let batch = try ReceivedBatch(payload: payload, source: topic)
            guard batch.header.deviceID == topicDevice else {
                throw DAQError(.malformedInput, "batch names device \(batch.header.deviceID) on \(topic)",
                               at: InputLocation(file: topic, field: "device id"))
            }
            if let line = quietDevices?.heard(topicDevice, now: loop.clock.now()) { writeError("daqctl collect: \(line)\n") }
            let sink: DeviceStreamSink
            do throws(DAQError) {
                sink = try self.sink(for: topicDevice, epoch: batch.header.epoch)
            } catch where error.code == .journalCorrupt || error.code == .journalBusy {
                rejected += 1
                return  // said by `cannotOpen`; each batch tries the journal again: a repair needs no restart
            }
            if sink.conflict != nil {
                rejected += 1  // said once, when it was found
                return
            }
            lastStream[topicDevice] = StreamKey(device: sink.deviceID, epoch: sink.epoch)
            if heardFrom.insert(sink.label).inserted {
                // One line per stream and run: which devices this collector is hearing from.
                writeError("daqctl collect: \(sink.label): first batch of this run, entries \(batch.header.first)…\(batch.header.last) "
                           + (sink.committed == 0 ? "(a new copy)\n" : "(committed up to \(sink.committed))\n"))
            }
            let result: (resends: [UInt64], rejected: DAQError?)
            do throws(DAQError) {
                result = try sink.receive(batch, now: loop.clock.now())
            } catch where sink.conflict != nil {
                rejected += 1
                writeError("daqctl collect: ALARM: \(sink.label): \(error)\n")
                return
            }
            for from in result.resends { publish("devices/\(topicDevice)/cmd", "resend \(sink.epoch) \(from)") }
            if let rejected = result.rejected { throw rejected }
        } catch {
            rejected += 1
            if error.code == .malformedInput {
                writeError("daqctl collect: rejected a batch: \(error)\n")
            } else {
                storageFailed(error)
            }
        }
    }

    /// Group commit: after every message of a loop turn is committed, one fdatasync per device,
    /// run off the loop (`BackgroundSync`: the next batches are read and written meanwhile), then
    /// its ack (never before the sync returned). A device with a sync running waits for it; the next
    /// sync covers everything committed meanwhile.
    private func acknowledgeCommitted() {
        guard !stopping else { return }
        for sink in sinks.values {
            do throws(DAQError) {
                switch try sink.nextSyncStep() {
                case .acknowledge(let upTo):
                    acknowledge(sink, upTo: upTo)
                case .sync(let ticket):
                    guard let syncer else { preconditionFailure("a sync before the collector runs") }
                    nextSyncToken += 1
                    syncDevices[nextSyncToken] = StreamKey(device: sink.deviceID, epoch: sink.epoch)
                    syncer.submit(token: nextSyncToken, sync: ticket)
                case nil:
                    break
                }
            } catch {
                storageFailed(error)
                return
            }
        }
    }

    /// Background syncs that returned: their acks go out, then whatever was committed meanwhile
    /// gets its own sync.
    private func syncsFinished() {
        guard let syncer else { return }
        for done in syncer.takeCompletions() {
            guard let stream = syncDevices.removeValue(forKey: done.token), let sink = sinks[stream] else { continue }
            do throws(DAQError) {
                if let upTo = try sink.syncFinished(errno: done.errno) { acknowledge(sink, upTo: upTo) }
            } catch {
                storageFailed(error)
                return
            }
        }
        acknowledgeCommitted()
    }

    private func acknowledge(_ sink: DeviceStreamSink, upTo: UInt64) {
        commitTrace?.committed(device: sink.deviceID, upTo: upTo)
        publish("devices/\(sink.deviceID)/ack", "ack \(sink.epoch) \(upTo)")
    }

    /// Storage trouble: stop rather than ack what was not stored.
    private func storageFailed(_ error: DAQError) {
        // The first failure is the cause; what follows from it is not reported in its place.
        if failure == nil { failure = error }
        stop()
    }

    /// The copy of `device`'s stream `epoch`. The first stream the collector meets of a device
    /// lives in `<out>/<device>/`; a stream of another epoch (its journal started afresh: a new
    /// card, a wiped directory) gets a copy of its own beside it, in `<out>/<device>/epoch-<E>/`,
    /// and the two go on side by side (a card put back resumes its own).
    private func sink(for device: String, epoch: UInt64) throws(DAQError) -> DeviceStreamSink {
        let key = StreamKey(device: device, epoch: epoch)
        if let sink = sinks[key] { return sink }
        let home = "\(options.output)/\(device)"
        // A copy closed while idle opens again where it was.
        if let idle = closedIdle[key] {
            return try open(key, directory: idle.besideFirst ? "\(home)/epoch-\(key.epoch)" : home, besideFirst: idle.besideFirst)
        }
        // Each directory made here is synced into its parent before any ack can depend on it.
        try Directories.create(options.output)
        try Directories.create(home)
        let first = (sinks.first { $0.key.device == device && !$0.value.besideFirst }
                     ?? closedIdle.first { $0.key.device == device && !$0.value.besideFirst })?.key.epoch
        if first == nil {
            do throws(DAQError) {
                return try open(key, directory: home, besideFirst: false)
            } catch where error.code == .malformedInput && error.location?.field == "epoch" {
                // `<device>/` holds another stream (one with no entry yet, or not reopened).
            }
        }
        let directory = "\(home)/epoch-\(epoch)"
        if newStreams[device, default: 0] >= Self.newStreamsLimit, access(directory, F_OK) != 0 {
            throw DAQError(.malformedInput, "\(device) sends epoch \(epoch), its \(Self.newStreamsLimit + 1)th new stream in this run: refused "
                           + "(each holds files open while in use); its batches are not acknowledged, the device keeps "
                           + "them, and a collector started again takes them", at: InputLocation(file: home, field: "epoch"))
        }
        let fresh = try Directories.create(directory)
        let sink = try open(key, directory: directory, besideFirst: true)
        if fresh {
            writeError("daqctl collect: \(device): a new stream, epoch \(epoch) (its journal was started afresh: a new card, "
                       + "a wiped directory); its copy is kept in \(directory)/, beside "
                       + "\(first.map { "epoch \($0)'s" } ?? "the first stream's") in \(home)/\n")
            newStreams[device, default: 0] += 1
            if newStreams[device] == Self.newStreamsAlarm {
                writeError("daqctl collect: ALARM: \(device): \(Self.newStreamsAlarm) new streams in this run: its journal keeps "
                           + "starting afresh (on tmpfs, wiped at boot, a failing card?). Each stream is kept whole, one copy "
                           + "each in \(home)/epoch-*/; see to the device's storage\n")
            }
        }
        return sink
    }

    /// Opens (or recovers) one stream's copy in `directory` (`journal/`, and `mdf/` for its MDF files).
    private func open(_ key: StreamKey, directory: String, besideFirst: Bool) throws(DAQError) -> DeviceStreamSink {
        let journal = "\(directory)/journal"
        let recorded = besideFirst ? key.epoch : FirstStreamEpoch.read(in: directory)
        let sink: DeviceStreamSink
        do throws(DAQError) {
            sink = try DeviceStreamSink(deviceID: key.device, epoch: key.epoch, directory: journal, besideFirst: besideFirst,
                                        recordedEpoch: recorded)
            // The first copy's epoch, recorded once its journal holds it (and for a copy from
            // before it was recorded).
            if !besideFirst && recorded != key.epoch { try FirstStreamEpoch.record(key.epoch, in: directory) }
        } catch where error.code == .journalCorrupt || error.code == .journalBusy {
            // (Busy: another writer took the lock of a copy closed while idle.)
            cannotOpen(directory, error)
            throw error
        }
        unopenable.remove(directory)
        let label = sink.label
        sink.lastReceived = loop.clock.now()
        sink.onLost = { [unowned self] first, last, reason in lost(label, first, last, reason) }
        // Opened again after it was closed while idle: its MDF files went on following its journal.
        let reopened = closedIdle.removeValue(forKey: key)
        if let reopened { sink.carryCounts(from: reopened) }
        if let mdf {
            if reopened == nil {
                mdf.follow(device: label, journalDirectory: journal, mdfDirectory: "\(directory)/mdf", committed: sink.committed)
            }
            sink.onCommitted = { [unowned self] in
                mdf.committed(device: label, first: $0, body: $1, entries: $2, now: loop.clock.now())
                if mdf.holding { watchBurst() }
            }
        }
        sinks[key] = sink
        return sink
    }

    private func publish(_ topic: String, _ text: String) {
        guard let connection else { return }
        let bytes = Array(text.utf8)
        _ = try? bytes.withUnsafeBytes { raw in
            Result { () throws(DAQError) in try connection.publish(topic: topic, payload: raw) }
        }.get()
        watch()
    }

    /// A broker log line: a replaced connection is noted in `<out>/security-events.jsonl`; repeated
    /// replacements of one client raise an alarm (`SessionTakeoverWatch`).
    private func watchForTakeover(_ line: String) {
        let verdict = takeoverWatch.observe(line, now: loop.clock.now())
        let client: String, event: String, count: Int
        switch verdict {
        case .unrelated:
            return
        case .replaced(let who, let times):
            (client, event, count) = (who, "connection replaced", times)
            writeError("daqctl collect: client \(who) connected again while connected; the broker closed the old "
                       + "connection (a half-open link, or a second holder of its certificate)\n")
        case .takeover(let who, let times):
            (client, event, count) = (who, "session takeover", times)
            writeError("daqctl collect: ALARM: session takeover: the connection of client \(who) was replaced \(times) times "
                       + "within \(SessionTakeoverWatch.window / 1_000_000_000) s: two live connections present its certificate "
                       + "(a copied key?); revoke it with `daqctl pki revoke` (docs/pki.md)\n")
        }
        let record = "{\"time\": \(JSONText.quoted(ISO8601DateFormatter().string(from: Date()))), \"client\": \(JSONText.quoted(client)), "
            + "\"event\": \(JSONText.quoted(event)), \"count\": \(count)}\n"
        do throws(DAQError) {
            try DurableLines.append(Array(record.utf8), to: "\(options.output)/security-events.jsonl")
        } catch {
            writeError("daqctl collect: cannot record a security event: \(error)\n")
        }
    }

    /// A device's MDF files ended on a layout entry that cannot be read (`MDFTrail`).
    private func reportMDFDropped(_ error: DAQError) {
        writeError("daqctl collect: no more MDF files for this device (its journal goes on): \(error)\n")
    }

    /// One line on stderr, stamped like daqlink's log (UTC, to the second): a collector runs for
    /// weeks, and its log is read against the devices'.
    private func writeError(_ text: String) {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var stamp = [CChar](repeating: 0, count: 32)
        let length = strftime(&stamp, stamp.count, "%Y-%m-%dT%H:%M:%S+0000 ", &parts)
        let bytes = Array(stamp.prefix(length).map { UInt8(bitPattern: $0) }) + Array(text.utf8)
        bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }
}
