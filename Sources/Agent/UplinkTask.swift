// The device's uplink inside the acquisition loop: the pure UplinkSender decides, this task does
// the I/O — one single-use MQTT connection at a time, batches read from the RAM ring (or the
// journal when the ring no longer holds them), transposed zstd bodies (codec 3 continuing from the
// part sent before, else codec 2; codec 4 for live parts with a context), end-to-end acks persisted
// as the journal's cursor.
import Acquisition
import DAQCore
import Delivery
import Journal
import JournalStore
import Logging
import OTADevice
import Runtime
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
    public var connects: UInt64 = 0
    public var disconnects: UInt64 = 0
    public var resendRequests: UInt64 = 0
    public var readsFromJournal: UInt64 = 0
    public var acknowledged: UInt64 = 0
    public var alarms: [String] = []
}

/// Drives `UplinkSender` with a real MQTT connection on the run's event loop.
final class UplinkTask {
    let options: UplinkOptions
    private let loop: EventLoop
    private let journal: JournalWriter
    private var sender: UplinkSender
    private var connection: MQTTConnection?
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
    var connectionOutcome: ((MQTTTLSFiles, Bool) -> Void)?
    var onAcknowledged: ((UInt64) -> Void)?
    /// OTA status reports waiting for the broker (published QoS 1 on `statusTopic`).
    var statusOutbox: StatusOutbox?
    private var statusInFlight: [Int32: UInt64] = [:]
    private var connectionFiles: MQTTTLSFiles?
    private var connectionAccepted = false

    init(options: UplinkOptions, loop: EventLoop, journal: JournalWriter, seed: UInt64) {
        self.options = options
        self.loop = loop
        self.journal = journal
        jitter = Jitter(seed: seed)
        sender = UplinkSender(policy: options.policy, acknowledged: journal.acknowledgedUpTo,
                              journalEnd: journal.lastSyncedSequence)
    }

    var acknowledged: UInt64 { sender.acknowledged }
    var isDrained: Bool { sender.acknowledged >= journal.lastSyncedSequence }

    func start(ring: @escaping () -> RecordRing) {
        ringAccess = ring
        perform(sender.start())
        loop.schedule(at: loop.clock.now() + 1_000_000_000) { [weak self] in self?.periodic() }
    }

    private var ringAccess: (() -> RecordRing)?

    /// The journal synced up to `sequence`: those entries may now leave the device.
    func journalSynced(upTo sequence: UInt64) {
        guard !stopped else { return }
        perform(sender.on(.journalAdvanced(last: sequence), now: loop.clock.now(), jitter: nextJitter()))
    }

    func stop() {
        wireTrace?.write()
        if let timer = ackPersistTimer { loop.cancel(timer) }
        ackPersistTimer = nil
        persistAcknowledged()
        stopped = true
        closeConnection()
        for (_, id) in timers { loop.cancel(id) }
        timers.removeAll()
    }

    // MARK: actions

    private func perform(_ actions: [UplinkSender.Action]) {
        for action in actions {
            switch action {
            case .connect:
                connect()
            case .publish(let token, let first, let last):
                publish(token: token, first: first, last: last)
            case .persistAcknowledged(let upTo):
                // Persisting costs two fsyncs that stall the loop; acks arrive every few ms while
                // a backlog drains. A cursor persisted late only means a longer resend after a
                // crash (the collector drops what it holds), so persist at most every interval —
                // and at once when everything is acknowledged.
                acknowledgedToPersist = upTo
                onAcknowledged?(upTo)
                if isDrained {
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
                counters.alarms.append(text)
                logger.error("ALARM: \(text)")
            }
        }
    }

    private func persistAcknowledged() {
        guard let upTo = acknowledgedToPersist else { return }
        acknowledgedToPersist = nil
        do throws(DAQError) {
            try journal.acknowledge(upTo: upTo)
            counters.acknowledged = upTo
        } catch {
            counters.alarms.append("cannot persist the ack cursor: \(error)")
        }
    }

    private func connect() {
        closeConnection()
        do throws(DAQError) {
            let files = credentialsForNextConnection?() ?? options.tls
            connectionFiles = files
            connectionAccepted = false
            let connection = try MQTTConnection(clientID: options.deviceID, tls: files)
            self.connection = connection
            try connection.connectAsync(host: options.host, port: options.port, keepalive: options.keepalive)
            counters.connects += 1
            watchSocket()
            connectDeadlineTimer = loop.schedule(at: loop.clock.now() + options.connectTimeout) { [weak self] in
                guard let self, !self.stopped, !self.sender.isConnected, self.connection === connection else { return }
                self.lostConnection()
            }
        } catch {
            // Refused at once (no route, bad TLS files): count it as a failed attempt and back off.
            lostConnection()
        }
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
        if ready.contains(.read) { healthy = connection.handleReadable() && healthy }
        if ready.contains(.write) || connection.wantsWrite { healthy = connection.handleWritable() && healthy }
        handleEvents()
        if !healthy && self.connection === connection { lostConnection() }
        if self.connection != nil { watchSocket() }
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
        for event in connection.drainEvents() {
            let now = loop.clock.now()
            switch event {
            case .connected(let rc):
                guard rc == 0 else {
                    counters.alarms.append("broker refused the connection: reason code \(rc)")
                    lostConnection()
                    return
                }
                if let timer = connectDeadlineTimer { loop.cancel(timer) }
                do throws(DAQError) {
                    try connection.subscribe(options.ackTopic)
                    try connection.subscribe(options.commandTopic)
                } catch {
                    lostConnection()
                    return
                }
                logger.info("connected to \(options.host):\(options.port) as \(options.deviceID); resending from \(sender.acknowledged + 1)")
                connectionAccepted = true
                if let files = connectionFiles { connectionOutcome?(files, true) }
                perform(sender.on(.connected, now: now, jitter: nextJitter()))
                publishStatus()
            case .disconnected:
                lostConnection()
                return
            case .published(let mid, let reasonCode):
                if let report = statusInFlight.removeValue(forKey: mid) {
                    // 0x10: no subscriber took it (no collector session yet): keep it for the next connection.
                    if reasonCode < 0x10 { statusOutbox?.acknowledge(upTo: report) }
                    continue
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
            perform(sender.on(.collectorAck(upTo: min(value, journal.lastSyncedSequence)), now: now))
        } else if topic == options.commandTopic, words[0] == "resend" {
            counters.resendRequests += 1
            perform(sender.on(.resendRequest(from: value), now: now))
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
        guard !stopped, connection != nil else { return }
        logger.notice("reconnecting to use new credentials")
        lostConnection()
    }

    private func lostConnection() {
        if connection != nil, !connectionAccepted, let files = connectionFiles { connectionOutcome?(files, false) }
        connectionAccepted = true  // report each attempt once
        let wasOpen = connection != nil
        closeConnection()
        if wasOpen {
            counters.disconnects += 1
            logger.notice("link to \(options.host):\(options.port) lost or refused; backing off")
        }
        guard !stopped else { return }
        perform(sender.on(.disconnected, now: loop.clock.now(), jitter: nextJitter()))
    }

    private func closeConnection() {
        if let fd = watchedFD { loop.unwatch(fd) }
        watchedFD = nil
        if let timer = connectDeadlineTimer { loop.cancel(timer) }
        connectDeadlineTimer = nil
        tokens.removeAll()
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
        let fromJournal = sequence <= last
        if fromJournal {
            counters.readsFromJournal += 1
            do throws(DAQError) {
                body.removeAll()
                entries.removeAll()
                // A backlog drains batch after batch: keep the reader where the last batch ended
                // instead of opening (and scanning) the segment again for every batch.
                if backlogReader?.next != first {
                    backlogReader = (try JournalReader(directory: journal.directory, from: first), first)
                }
                while backlogReader!.next <= last, let entry = try backlogReader!.reader.next() {
                    entry.framed.withUnsafeBytes { add($0) }
                    backlogReader!.next = entry.sequence + 1
                }
            } catch {
                backlogReader = nil
                counters.alarms.append("cannot read entries \(first)…\(last) from the journal: \(error)")
                return
            }
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
            guard sendPart(token: token, first: partFirst, last: partLast, body: Array(body[byteRange]), entries: partEntries,
                           segmentStarts: segmentStarts.filter { $0 > partFirst && $0 <= partLast },
                           fromJournal: fromJournal, connection: connection)
            else { return }
            partStart = partEnd
        }
    }

    /// Publishes one sub-batch; false when the connection failed.
    private func sendPart(token: Int, first: UInt64, last: UInt64, body: [UInt8], entries: [Range<Int>],
                          segmentStarts: [UInt64], fromJournal: Bool, connection: MQTTConnection) -> Bool {
        let checksum = UplinkBatch.entriesChecksum(body: body, entries: entries)
        var header = UplinkBatch(deviceID: options.deviceID, epoch: journal.epoch, first: first, last: last,
                                 segmentStarts: segmentStarts, codec: .none, bodyLength: UInt32(body.count),
                                 bodyChecksum: checksum)
        var wire: [UInt8]
        if options.compress {
            // Codec 3 when the entries just before this part are at hand (the previous part sent):
            // its columns continue from them, so small batches compress like one long stream. The
            // collector decodes it once it has committed them (it commits strictly in order).
            // Otherwise codec 2. zstd level 1 while draining a backlog (CPU-bound; the transform
            // already did most of the work), 12 at steady state: a few KB every 50 ms, where the
            // CPU is free and every byte crosses the 4G link (docs/benchmarks.md, "Uplink") — and
            // there, with a context, codec 4 instead of zstd.
            // Codec 3 continues from the previous part, codec 4 from the last few hundred entries.
            var context: BatchTransform.Context?
            let contextCount = fromJournal ? recentParts.newestRunCount : ContextCoder.contextEntries
            if let (found, reference) = recentParts.context(before: first, count: contextCount) {
                context = found
                header.codec = .contextTransposedZstd
                header.context = reference
            } else {
                header.codec = .transposedZstd
            }
            if let context, !fromJournal {
                // Live parts with a context: codec 4, the same content range-coded with models
                // primed on the context (docs/uplink.md, "Codec 4").
                header.codec = .contextModelled
                wire = header.encodedHeader() + ContextCoder.encode(body: body, entries: entries, context: context)
            } else {
                let (transposed, sections) = body.withUnsafeBytes {
                    BatchTransform.encodeSections(body: $0, entries: entries, context: context)
                }
                let compressed = transposed.withUnsafeBytes {
                    BatchCompression.compress($0, sectionEnds: sections, level: fromJournal ? 1 : 12)
                }
                wire = header.encodedHeader() + compressed
            }
            recentParts.append(first: first, body: body, entries: entries)
        } else {
            wire = header.encodedHeader() + body
        }
        do throws(DAQError) {
            let mid = try wire.withUnsafeBytes { raw in
                Result { () throws(DAQError) -> Int32 in try connection.publish(topic: options.dataTopic, payload: raw) }
            }.get()
            tokens[mid] = token
            wireTrace?.published(wire)
            partsOutstanding[token, default: 0] += 1
            counters.batches += 1
            counters.rawBytes += UInt64(body.count)
            counters.wireBytes += UInt64(wire.count)
            watchSocket()
            return true
        } catch {
            lostConnection()
            return false
        }
    }

    private func nextJitter() -> Double { jitter.next() }
}
