// `daqctl bench uplink`: the secure uplink measured end to end on a local fleet (fresh PKI,
// mosquitto with mutual TLS 1.3, collector and device as processes): backlog drain throughput next
// to a bare in-process QoS 1 publisher over the same broker, wire bytes per raw record byte, and
// frame-to-collector-commit latency at steady state (original replay speed).
import ArgumentParser
import CANLogs
import DAQCore
import Delivery
import FaultInjection
import Foundation
import JournalStore
import Runtime
import Uplink
#if canImport(Glibc)
import Glibc
#endif

struct BenchUplinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uplink",
        abstract: "Uplink drain throughput (next to a bare QoS 1 publisher), wire ratio and commit latency.",
        discussion: """
            Runs on this machine in a temporary work directory and stops every process at the \
            end.

            1. a PKI (CA, broker, collector, devices bench-01, bench-02, bench-03) and mosquitto on a \
            free loopback port (TLS 1.3, client certificates, per-device ACL)

            2. backlogs: daqlink run replays the reference log repeated with shifted timestamps at \
            --speed max with no broker, into a journal of about --backlog-mb MB (and one of \
            --cellular-mb MB for bench-03)

            3. drain: daqctl collect starts, then daqlink run --broker replays a one-frame log into \
            the same journal and drains the whole backlog; timed by the device from its first publish \
            to the collector's end-to-end ack of the last entry (committed + fsynced); the time from \
            the process's start is shown too. The summary says how many parts went raw, as codec 3 \
            (zstd 1) or as codec 4: the device codes a backlog as the link allows. CPU seconds per \
            process: the device's own between those two moments, the collector's and the broker's \
            from /proc/<pid>/task/*/schedstat around the device's run; then, apart, the \
            collector's until it has been quiet for 1 s (its MDF files trail the journal at idle \
            priority, and a backlog's are written once its burst of commits is over).

            4. latency: device bench-02 replays the reference log at original speed for \
            --latency-seconds; per journal entry, the collector's commit time minus the moment the \
            device appended the entry (hidden env traces DAQLINK_APPEND_TRACE / DAQCTL_COMMIT_TRACE, \
            both CLOCK_REALTIME); the first second is left out (connect)

            5. peers: a bare QoS 1 publisher (MQTTConnection, own poll loop, --peer-window in flight) \
            to a subscriber with the collector's identity, timed until the subscriber has every message; \
            A publishes the drain's own wire messages byte for byte (the device records each in the hidden \
            DAQLINK_WIRE_TRACE file as it publishes it: a coded part verbatim, a raw part as its header and \
            the entries it carries, read back from the journal and checked), B the backlog journal's raw bytes in messages of \
            daqlink's mean batch size. Peer A's CPU (its thread, and the broker's) next to the drain's \
            gives the most ours / peer A can reach when every core is busy. Peer C publishes A's \
            messages again to the same subscriber code in a process of its own (hidden `daqctl bench \
            peer-subscriber`): the drain's topology, three processes on the cores, without the \
            product's work; C / A is what that topology costs by itself.

            6. the same drain over a rate-limited link: bench-03 through a TCP proxy that lets \
            --cellular-mbit Mbit/s through towards the broker (a cellular uplink), next to the bare \
            publisher through the same proxy (raw journal bytes, and that drain's own wire messages); \
            the device's link soundings and periods are in drain.log, drain-<round>.log and \
            drain-cellular.log (keep them with --workdir)

            7. rounds 2 to --rounds: the backlog restored from a copy, a collector with an empty \
            output directory, the drain again, then peer A with that drain's messages; ours / peer A \
            is judged on the median of all rounds (one round's peer A alone varies 1.5–2× here)

            Build with -c release: a debug build's figures mean nothing.
            """
    )

    @Option(help: "Directory holding reference.toml, engine.dbc and engine-10s.log (default: Fixtures/reference).")
    var fixtures: String?

    @Option(name: .customLong("backlog-mb"), help: "Size of the backlog journal to drain, in MB.")
    var backlogMB: Double = 50

    @Option(name: .customLong("latency-seconds"), help: "Seconds of original-speed replay for the latency measurement.")
    var latencySeconds: Double = 10

    @Option(name: .customLong("latency-sync-ms"), help: "The device's --sync-ms in the latency run (default: daqlink's own).")
    var latencySyncMs: Int?

    @Option(name: .customLong("peer-window"), help: "QoS 1 messages in flight for the bare publisher.")
    var peerWindow: Int = 20

    @Option(name: .customLong("cellular-mb"), help: "Size of the backlog drained over the rate-limited link, in MB (0: skip that part).")
    var cellularMB: Double = 10

    @Option(name: .customLong("cellular-mbit"), help: "Uplink rate of the rate-limited link, in Mbit/s (a cellular uplink).")
    var cellularMbit: Double = 16

    @Option(help: "Drains of the same backlog, each followed by peer A with its messages; ours / peer A is their median (the peer alone varies 1.5–2× from run to run on a shared machine).")
    var rounds: Int = 5

    @Option(help: "Work directory, new or empty; kept at the end (default: a new temporary directory, removed at the end).")
    var workdir: String?

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    func validate() throws {
        if !(backlogMB > 0) { throw ValidationError("--backlog-mb must be positive") }
        if !(latencySeconds > 0) { throw ValidationError("--latency-seconds must be positive") }
        if peerWindow < 1 { throw ValidationError("--peer-window must be at least 1") }
        if rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if let latencySyncMs, latencySyncMs < 0 { throw ValidationError("--latency-sync-ms must not be negative") }
        if !(cellularMB >= 0) { throw ValidationError("--cellular-mb must not be negative") }
        if !(cellularMbit > 0) { throw ValidationError("--cellular-mbit must be positive") }
    }

    func run() throws {
        #if DEBUG
        printError("warning: daqctl is a debug build; benchmark figures need `swift build -c release`")
        #endif
        let work = workdir.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("daqctl-bench-uplink-\(getpid())")
        let fleet = try LocalFleet(work: work)
        LocalFleetCleanup.installSignalHandlers()
        defer {
            fleet.stopAll()
            if workdir == nil { try? FileManager.default.removeItem(at: work) }
        }
        let bench = UplinkBench(fleet: fleet, fixtures: try LocalFleet.fixtureDirectory(fixtures), quiet: json)
        let report = try bench.run(backlogMB: backlogMB, latencySeconds: latencySeconds,
                                   latencySyncMs: latencySyncMs, peerWindow: peerWindow, rounds: rounds,
                                   cellular: cellularMB > 0 ? (cellularMB, Int(cellularMbit * 1e6 / 8)) : nil)
        print(json ? report.json : report.table)
    }
}

/// One run of the uplink benchmark on a local fleet.
private final class UplinkBench {
    let fleet: LocalFleet
    let fixtures: URL
    let quiet: Bool
    let started = SystemClock.monotonicNow()

    init(fleet: LocalFleet, fixtures: URL, quiet: Bool) {
        self.fleet = fleet
        self.fixtures = fixtures
        self.quiet = quiet
    }

    private var daqlink: String { fleet.tools.appendingPathComponent("daqlink").path }
    private var daqctl: String { fleet.tools.appendingPathComponent("daqctl").path }
    private var experiment: String { fixtures.appendingPathComponent("reference.toml").path }
    private var fixtureLog: String { fixtures.appendingPathComponent("engine-10s.log").path }
    private func path(_ name: String) -> String { fleet.work.appendingPathComponent(name).path }

    private func say(_ text: String) {
        guard !quiet else { return }
        printError(String(format: "[%6.2f s] ", Double(SystemClock.monotonicNow() - started) / 1e9) + text)
    }

    func run(backlogMB: Double, latencySeconds: Double, latencySyncMs: Int?, peerWindow: Int, rounds: Int,
             cellular: (megabytes: Double, bytesPerSecond: Int)?) throws -> UplinkBenchReport {
        let pki = try fleet.makePKI(devices: ["bench-01", "bench-02", "bench-03"])
        let port = try fleet.startBroker(pki: pki)
        let broker = "127.0.0.1:\(port)"
        say("PKI and mosquitto (mTLS, TLS 1.3) on \(broker), work directory \(fleet.work.path)")

        // Backlog: the reference log repeated, replayed at max speed with no broker.
        let calibration = try runDevice(["--source", "replay:\(fixtureLog)", "--speed", "max", "--journal", path("calibration")],
                                        log: "calibration.log")
        try? FileManager.default.removeItem(atPath: path("calibration"))
        let perRepeat = max(1, calibration.journalBytes)
        let quota = max(512 << 20, Int(backlogMB * 2e6) + (64 << 20))
        let journal = path("device/journal")
        let (backlog, repeats, frames) = try buildBacklog(megabytes: backlogMB, perRepeat: perRepeat, journal: journal, quota: quota)
        let cellularJournal = path("device3/journal")
        let cellularBacklog = try cellular.map {
            try buildBacklog(megabytes: $0.megabytes, perRepeat: perRepeat, journal: cellularJournal, quota: quota).summary
        }

        // Drain: the collector, then the device replaying one frame into the same journal.
        let commitTrace = path("commits.trace")
        try fleet.start("collector", daqctl, ["collect", "--broker", broker, "--pki", pki, "--out", path("collected")],
                        log: "collector.log", environment: ["DAQCTL_COMMIT_TRACE": commitTrace])
        try waitForCollector(log: "collector.log")
        let tinyLog = path("one-frame.log")
        let firstLine = try String(contentsOfFile: fixtureLog, encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
        try (firstLine + "\n").write(toFile: tinyLog, atomically: true, encoding: .utf8)
        /// Runs `device` replaying one frame into `journal` (a backlog) through `broker` until the
        /// collector acknowledged everything; its published messages go to `trace`.
        func runDrain(_ device: String, journal: String, broker: String, log: String, trace: String,
                      extra: [String] = []) throws -> (summary: DeviceSummary, uplink: DeviceSummary.Uplink) {
            let drain = try runDevice(["--source", "replay:\(tinyLog)", "--speed", "max", "--journal", journal,
                                       "--quota-bytes", "\(quota)", "--broker", broker, "--device", device, "--pki", pki,
                                       "--drain-timeout", "600", "--log-level", "debug"] + extra, log: log, timeout: 660,
                                      environment: ["DAQLINK_WIRE_TRACE": trace])
            guard let uplink = drain.uplink, uplink.acknowledged == drain.lastSequence, drain.lastSequence > 0 else {
                throw ValidationError("\(device) did not drain its backlog (acknowledged \(drain.uplink?.acknowledged ?? 0) of "
                                      + "\(drain.lastSequence)); see \(path(log)) and \(path("collector.log"))")
            }
            return (drain, uplink)
        }
        let wireTrace = path("wire.trace")
        // The later rounds drain the same backlog again, restored from this copy.
        let pristine = path("device/journal.pristine")
        if rounds > 1 { try FileManager.default.copyItem(atPath: journal, toPath: pristine) }
        sync()  // nothing is written back during the drain
        let drainStarted = SystemClock.monotonicNow()
        // The collector and the broker are idle before the device starts and after it stopped.
        let collectorPID = fleet.pid(of: "collector"), brokerPID = fleet.pid(of: "mosquitto")
        let cpuBefore = (ProcessCPU.seconds(collectorPID), ProcessCPU.seconds(brokerPID))
        let (drain, drainUplink) = try runDrain("bench-01", journal: journal, broker: broker, log: "drain.log", trace: wireTrace)
        let drainWall = Double(SystemClock.monotonicNow() - drainStarted) / 1e9
        var drainCPU = DrainCPU(device: drainUplink.drainCPUSeconds ?? .nan,
                                collector: ProcessCPU.seconds(collectorPID) - cpuBefore.0,
                                broker: ProcessCPU.seconds(brokerPID) - cpuBefore.1)
        // The collector's MDF files trail its journal on a thread of idle priority: what they
        // still cost after the drain is counted too, apart.
        (drainCPU.collectorAfter, drainCPU.collectorSettleSeconds) = ProcessCPU.untilQuiet(collectorPID)
        say("drain: \(drainUplink.rawBytes) journal bytes in \(drainUplink.batches) batches, \(drain.elapsed) s (process wall \(drainWall) s)")

        // Latency: device bench-02 at original speed.
        let appendTrace = path("appends.trace")
        let latencyLog = path("latency.log")
        let latencyRepeats = max(1, Int((latencySeconds / 10).rounded(.up)))
        _ = try BenchLogBuilder.build(from: fixtureLog, to: latencyLog, repeats: latencyRepeats, cap: nil)
        var latencyArguments = ["--source", "replay:\(latencyLog)", "--speed", "original", "--duration", "\(latencySeconds)",
                                "--journal", path("device2/journal"), "--broker", broker, "--device", "bench-02",
                                "--pki", pki, "--drain-timeout", "30"]
        if let latencySyncMs { latencyArguments += ["--sync-ms", "\(latencySyncMs)"] }
        let steady = try runDevice(latencyArguments, log: "latency-device.log", timeout: latencySeconds + 60,
                                   environment: ["DAQLINK_APPEND_TRACE": appendTrace])
        say("latency run: \(steady.records) records in \(steady.elapsed) s")

        // The same kind of drain over a rate-limited link (a cellular uplink), device bench-03.
        var cellularRun: (drain: DeviceSummary, proxy: TCPFaultProxy, wireTrace: String)?
        if let cellular {
            let proxy = try TCPFaultProxy(targetPort: port)
            proxy.limitUplink(bytesPerSecond: cellular.bytesPerSecond)
            let trace = path("wire-cellular.trace")
            let (drain, uplink) = try runDrain("bench-03", journal: cellularJournal, broker: "127.0.0.1:\(proxy.listenPort)",
                                               log: "drain-cellular.log", trace: trace)
            say("cellular drain (\(cellular.bytesPerSecond) B/s): \(uplink.rawBytes) journal bytes as \(uplink.wireBytes) wire bytes "
                + "in \(uplink.drainSeconds ?? 0) s")
            cellularRun = (drain, proxy, trace)
        }

        fleet.stop("collector")
        let committedBytes = collectorCommittedBytes(fleet.log("collector.log"), device: "bench-01")
        let latency = try LatencyFigures.measure(appends: appendTrace, commits: commitTrace, device: "bench-02",
                                                 skipSeconds: min(1, latencySeconds / 4))

        // Peers: the drain's own wire messages (the like-for-like ceiling), then the backlog
        // journal's raw bytes in messages of daqlink's mean raw batch size (no compression at all).
        let publisher = MQTTTLSFiles(caFile: "\(pki)/ca.crt", certificateFile: "\(pki)/devices/bench-01.crt",
                                     keyFile: "\(pki)/devices/bench-01.key")
        let subscriber = MQTTTLSFiles(caFile: "\(pki)/ca.crt", certificateFile: "\(pki)/collector.crt", keyFile: "\(pki)/collector.key")
        /// The bare publisher with `messages` (through `publisherPort` when given; with
        /// `subscriberProcess`, its subscriber in a process of its own).
        func measurePeer(_ messages: [[UInt8]], publisherPort: Int? = nil,
                         subscriberProcess: String? = nil) throws -> BarePublisherPeer {
            try BarePublisherPeer.measure(host: "127.0.0.1", port: port, publisherPort: publisherPort, messages: messages,
                                          window: peerWindow, publisher: publisher, subscriber: subscriber,
                                          topic: "devices/bench-01/peer", brokerPID: brokerPID,
                                          subscriberProcess: subscriberProcess)
        }
        /// The bare publisher (through `publisherPort` when given) with a drain's own wire messages
        /// (`trace`), then with `journal`'s raw bytes in messages of the drain's mean raw batch size.
        /// With `apart`, peer C too: the drain's wire messages again, to a subscriber in its own process.
        func measurePeers(trace: String, journal: String, drained uplink: DeviceSummary.Uplink,
                          publisherPort: Int? = nil, apart: Bool = false)
            throws -> (wire: BarePublisherPeer, raw: BarePublisherPeer, apart: BarePublisherPeer?) {
            func measure(_ messages: [[UInt8]], subscriberProcess: String? = nil) throws -> BarePublisherPeer {
                try measurePeer(messages, publisherPort: publisherPort, subscriberProcess: subscriberProcess)
            }
            let messages = try Self.messages(inTrace: trace, journal: journal)
            let wire = try measure(messages)
            let body = try journalBytes(journal)
            let size = max(1, Int(uplink.rawBytes / max(1, uplink.batches)))
            let raw = try measure(stride(from: 0, to: body.count, by: size).map { Array(body[$0..<min(body.count, $0 + size)]) })
            return (wire, raw, apart ? try measure(messages, subscriberProcess: daqctl) : nil)
        }
        sync()  // what the collector wrote is not written back while a peer runs
        let (wirePeer, peer, apartPeer) = try measurePeers(trace: wireTrace, journal: journal, drained: drainUplink, apart: true)
        say("peer A (drain's wire messages): \(wirePeer.messages) messages, \(wirePeer.bytes) bytes in \(wirePeer.seconds) s")
        say("peer B (raw journal bytes): \(peer.messages) messages of \(peer.bytes / max(1, peer.messages)) bytes in \(peer.seconds) s")
        say("peer C (A's messages, subscriber in its own process): \(apartPeer?.seconds ?? 0) s")

        // Over the limited link: the bare publisher goes through the same proxy.
        var cellularFigures: CellularFigures?
        if let cellular, let run = cellularRun, let backlog = cellularBacklog, let uplink = run.drain.uplink {
            let (wire, raw, _) = try measurePeers(trace: run.wireTrace, journal: cellularJournal, drained: uplink,
                                               publisherPort: run.proxy.listenPort)
            run.proxy.stop()
            say("cellular peers: wire messages in \(wire.seconds) s, raw journal bytes in \(raw.seconds) s")
            cellularFigures = CellularFigures(bytesPerSecond: cellular.bytesPerSecond, backlog: backlog, drain: run.drain,
                                              wirePeer: wire, rawPeer: raw)
        }

        // Rounds 2…: the backlog restored, a collector with an empty output directory, the drain,
        // then peer A with that drain's messages.
        var roundFigures = [DrainRound(drain: drain, committedBytes: committedBytes, peer: wirePeer)]
        for round in stride(from: 2, through: rounds, by: 1) {
            try? FileManager.default.removeItem(atPath: journal)
            try FileManager.default.copyItem(atPath: pristine, toPath: journal)
            sync()  // neither the copy's dirty pages nor anything else are written back during the drain
            let log = "collector-\(round).log"
            try fleet.start("collector", daqctl, ["collect", "--broker", broker, "--pki", pki, "--out", path("collected-\(round)")],
                            log: log)
            try waitForCollector(log: log)
            let trace = path("wire-\(round).trace")
            let (drain, _) = try runDrain("bench-01", journal: journal, broker: broker, log: "drain-\(round).log", trace: trace)
            fleet.stop("collector")
            let committed = collectorCommittedBytes(fleet.log(log), device: "bench-01")
            sync()
            let peer = try measurePeer(try Self.messages(inTrace: trace, journal: journal))
            roundFigures.append(DrainRound(drain: drain, committedBytes: committed, peer: peer))
            say(String(format: "round %d: drain %.1f MB/s, peer A %.1f MB/s, ours / peer A %.2f×", round,
                       roundFigures.last!.drainMBps, roundFigures.last!.peerMBps, roundFigures.last!.ratio))
        }
        fleet.stopAll()

        return UplinkBenchReport(backlog: backlog, backlogFrames: frames, repeats: repeats, drain: drain,
                                 drainWallSeconds: drainWall, drainCPU: drainCPU,
                                 steady: steady, latency: latency, latencySeconds: latencySeconds,
                                 latencySyncMs: latencySyncMs, peer: peer, wirePeer: wirePeer, apartPeer: apartPeer!,
                                 peerWindow: peerWindow, rounds: roundFigures,
                                 cellular: cellularFigures)
    }

    /// A backlog journal of about `megabytes`: the reference log repeated with shifted timestamps,
    /// replayed at max speed with no broker.
    private func buildBacklog(megabytes: Double, perRepeat: Int, journal: String,
                              quota: Int) throws -> (summary: DeviceSummary, repeats: Int, frames: Int) {
        let repeats = max(1, Int((megabytes * 1e6 / Double(perRepeat)).rounded(.up)))
        let backlogLog = path("backlog.log")
        let frames = try BenchLogBuilder.build(from: fixtureLog, to: backlogLog, repeats: repeats, cap: nil)
        let backlog = try runDevice(["--source", "replay:\(backlogLog)", "--speed", "max", "--journal", journal,
                                     "--quota-bytes", "\(quota)"], log: "backlog.log.txt")
        try? FileManager.default.removeItem(atPath: backlogLog)
        say("backlog \(journal): \(repeats) × the reference log (\(frames) frames) → \(backlog.journalBytes) journal bytes, "
            + "\(backlog.records) records, \(backlog.recordBytes) record payload bytes")
        return (backlog, repeats, frames)
    }

    /// Waits until the collector logging to `log` has subscribed: a drain must not share the cores
    /// with its start-up (the Swift runtime, the TLS handshake).
    private func waitForCollector(log: String) throws {
        for _ in 0..<500 {
            if fleet.log(log).contains("subscribed to") { return }
            guard fleet.pid(of: "collector") != nil else { break }
            usleep(20_000)
        }
        throw ValidationError("the collector did not subscribe; see \(path(log))")
    }

    /// Runs `daqlink run` with the reference experiment to its end and parses its summary.
    private func runDevice(_ arguments: [String], log: String, timeout: Double = 600,
                           environment: [String: String] = [:]) throws -> DeviceSummary {
        let process = try fleet.start("device", daqlink, ["run", "--experiment", experiment, "--quiet"] + arguments,
                                      log: log, environment: environment)
        let finished = fleet.wait(process, timeout: timeout)
        let text = fleet.log(log)
        guard finished, process.terminationStatus == 0 else {
            throw ValidationError("daqlink run \(arguments.joined(separator: " ")) "
                                  + (finished ? "failed (exit status \(process.terminationStatus))" : "did not finish in \(Int(timeout)) s")
                                  + ":\n\(text)")
        }
        return try DeviceSummary(parsing: text, source: path(log))
    }

    /// "collector: <device>: committed up to X (N entries, B bytes this run), …" → B.
    private func collectorCommittedBytes(_ log: String, device: String) -> UInt64 {
        for line in log.split(separator: "\n") where line.hasPrefix("collector: \(device):") {
            let words = line.split(separator: " ")
            if let index = words.firstIndex(of: "bytes"), index > 0 { return UInt64(words[index - 1]) ?? 0 }
        }
        return 0
    }

    /// The messages of a DAQLINK_WIRE_TRACE file (`WireTrace` in daqlink), byte for byte: coded
    /// parts as recorded, raw parts as their header followed by the entries it names, read back
    /// from `journal` and checked against the header (length, framing, sequence, checksum).
    private static func messages(inTrace path: String, journal: String) throws -> [[UInt8]] {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var messages: [[UInt8]] = []
        var offset = 0
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else { throw ValidationError("the wire trace \(path) is torn at byte \(offset)") }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }
        func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
            try take(MemoryLayout<T>.size).reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        var reader: (reader: JournalReader, next: UInt64)?
        while offset < bytes.count {
            let kind = try integer(UInt8.self)
            let length = Int(try integer(UInt32.self))
            var message = Array(try take(length))
            guard kind == 1 else {
                guard kind == 0 else { throw ValidationError("the wire trace \(path) has a record of kind \(kind)") }
                messages.append(message)
                continue
            }
            let first = try integer(UInt64.self), last = try integer(UInt64.self)
            if reader?.next != first { reader = (try JournalReader(directory: journal, from: first), first) }
            var ranges: [Range<Int>] = []
            while reader!.next <= last {
                guard let run = try reader!.reader.readEntries(maxEntries: Int(last - reader!.next + 1), maxBytes: Int.max,
                                                               through: last, into: &message, ranges: &ranges)
                else { throw ValidationError("entries \(reader!.next)…\(last) of the wire trace are not in \(journal)") }
                reader!.next = run.lastSequence + 1
            }
            let source = "\(path), message \(messages.count + 1)"
            let (header, headerLength) = try message.withUnsafeBytes { try UplinkBatch.decodeHeader($0, source: source) }
            _ = try message.withUnsafeBytes { try header.validate(body: UnsafeRawBufferPointer(rebasing: $0[headerLength...]), source: source) }
            messages.append(message)
        }
        guard !messages.isEmpty else { throw ValidationError("the wire trace \(path) is empty") }
        return messages
    }

    /// The journal's segment files, concatenated in name order.
    private func journalBytes(_ directory: String) throws -> [UInt8] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".jnl") }.sorted()
        var bytes: [UInt8] = []
        for name in names { bytes += try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)"))) }
        guard !bytes.isEmpty else { throw ValidationError("no journal segments in \(directory)") }
        return bytes
    }
}

/// The figures of a `daqlink run` summary (standard error at its end).
struct DeviceSummary {
    struct Uplink {
        var batches: UInt64 = 0
        var rawBytes: UInt64 = 0
        var wireBytes: UInt64 = 0
        var acknowledged: UInt64 = 0
        /// Parts per body coding (raw, zstd-1, codec-4) and first publish → last ack (s).
        var parts: [UInt64] = [0, 0, 0]
        var drainSeconds: Double?
        /// The device's CPU time over that span (s).
        var drainCPUSeconds: Double?
        var linkMBps: Double?
    }

    var elapsed = 0.0
    var journalBytes = 0
    var lastSequence: UInt64 = 0
    var records: UInt64 = 0
    /// Sample bytes of the records (without record headers), summed over the channel groups.
    var recordBytes: UInt64 = 0
    var uplink: Uplink?

    init(parsing text: String, source: String) throws {
        var sawJournal = false
        for line in text.split(separator: "\n").map(String.init) {
            let words = line.split(separator: " ").map(String.init)
            func number(before word: String) -> UInt64? {
                guard let index = words.firstIndex(of: word), index > 0 else { return nil }
                return UInt64(words[index - 1].filter(\.isNumber))
            }
            if line.hasPrefix("stopped: "), let index = words.firstIndex(of: "after"), index + 1 < words.count {
                elapsed = Double(words[index + 1]) ?? 0
            } else if line.hasPrefix("journal: ") {
                sawJournal = true
                journalBytes = Int(number(before: "bytes") ?? 0)
                if let range = words.last, words.contains("seq") {
                    lastSequence = UInt64(range.split(separator: "…").last ?? "") ?? 0
                }
            } else if line.hasPrefix("  group ") {
                records += number(before: "records,") ?? 0
                recordBytes += number(before: "bytes") ?? 0
            } else if line.hasPrefix("uplink: ") {
                var uplink = Uplink()
                uplink.batches = number(before: "batches,") ?? 0
                uplink.rawBytes = number(before: "journal") ?? 0
                uplink.wireBytes = number(before: "wire") ?? 0
                if let index = words.firstIndex(of: "to"), index + 1 < words.count { uplink.acknowledged = UInt64(words[index + 1].filter(\.isNumber)) ?? 0 }
                self.uplink = uplink
            } else if line.hasPrefix("uplink parts: ") {
                // "uplink parts: raw R, zstd-1 F, codec-4 S; first publish to last ack X s;
                //  CPU in between C s; link ≈ Y MB/s"
                let clauses = line.dropFirst("uplink parts: ".count).split(separator: ";")
                for (index, item) in clauses[0].split(separator: ",").enumerated() where index < 3 {
                    uplink?.parts[index] = UInt64(item.split(separator: " ").last ?? "") ?? 0
                }
                for clause in clauses.dropFirst() {
                    let clauseWords = clause.split(separator: " ")
                    if clause.contains("first publish to last ack"), clauseWords.count >= 2 {
                        uplink?.drainSeconds = Double(clauseWords[clauseWords.count - 2])
                    } else if clause.contains("CPU in between"), clauseWords.count >= 2 {
                        uplink?.drainCPUSeconds = Double(clauseWords[clauseWords.count - 2])
                    } else if clause.contains("link ≈"), clauseWords.count >= 2 {
                        uplink?.linkMBps = Double(clauseWords[clauseWords.count - 2])
                    }
                }
            }
        }
        guard sawJournal else { throw ValidationError("no daqlink summary in \(source):\n\(text)") }
    }
}

/// Per journal entry: collector commit time − device append time (both CLOCK_REALTIME, ns).
struct LatencyFigures {
    var entries = 0
    var p50 = 0.0, p99 = 0.0, max = 0.0  // milliseconds

    static func measure(appends: String, commits: String, device: String, skipSeconds: Double) throws -> LatencyFigures {
        func pairs(_ path: String, _ keep: ([Substring]) -> (UInt64, Int64)?) throws -> [(UInt64, Int64)] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("the latency trace \(path) is missing")
            }
            return text.split(separator: "\n").compactMap { keep($0.split(separator: " ")) }
        }
        let appended = try pairs(appends) { w in w.count == 2 ? UInt64(w[0]).flatMap { s in Int64(w[1]).map { (s, $0) } } : nil }
        let committed = try pairs(commits) { w in
            w.count == 3 && w[0] == device ? UInt64(w[1]).flatMap { s in Int64(w[2]).map { (s, $0) } } : nil
        }.sorted { $0.1 < $1.1 }
        guard let firstAppend = appended.first?.1 else { throw ValidationError("the device traced no appends") }
        // Commit times in order; the earliest commit covering each sequence number.
        var delays: [Int64] = []
        var index = 0
        var coveredUpTo: UInt64 = 0
        var coverTime: Int64 = 0
        for (sequence, time) in appended.sorted(by: { $0.0 < $1.0 }) {
            while coveredUpTo < sequence, index < committed.count {
                if committed[index].0 > coveredUpTo { coveredUpTo = committed[index].0; coverTime = committed[index].1 }
                index += 1
            }
            guard coveredUpTo >= sequence else { break }  // never committed (should not happen after a drain)
            if Double(time - firstAppend) / 1e9 >= skipSeconds { delays.append(coverTime - time) }
        }
        guard !delays.isEmpty else { throw ValidationError("no committed entries in the latency run") }
        delays.sort()
        func percentile(_ p: Double) -> Double { Double(delays[Swift.min(delays.count - 1, Int(Double(delays.count) * p))]) / 1e6 }
        return LatencyFigures(entries: delays.count, p50: percentile(0.5), p99: percentile(0.99), max: Double(delays.last!) / 1e6)
    }
}

/// The peer: a bare QoS 1 publisher and one QoS 1 subscriber (MQTTConnection), both on one poll
/// loop in this thread (peers A and B), or the subscriber in a process of its own (peer C: the
/// drain's topology, three processes on the cores).
struct BarePublisherPeer {
    var messages = 0
    var bytes = 0
    var seconds = 0.0
    /// CPU time over those `seconds`: the peer's publisher (and subscriber when in this thread),
    /// the subscriber's process when apart, and the broker (NaN without its pid).
    var cpuSeconds = Double.nan
    var subscriberProcessCPUSeconds = Double.nan
    var brokerCPUSeconds = Double.nan
    var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds / 1e6 : 0 }
    /// All the peer's CPU: its threads and processes and the broker.
    var totalCPUSeconds: Double { cpuSeconds + (subscriberProcessCPUSeconds.isNaN ? 0 : subscriberProcessCPUSeconds) + brokerCPUSeconds }

    /// The publisher connects to `publisherPort` (a proxy in front of the broker) when given. With
    /// `subscriberProcess` (daqctl's path), the subscriber is `daqctl bench peer-subscriber`.
    static func measure(host: String, port: Int, publisherPort: Int? = nil, messages payloads: [[UInt8]], window: Int,
                        publisher publisherTLS: MQTTTLSFiles, subscriber subscriberTLS: MQTTTLSFiles,
                        topic: String, brokerPID: pid_t? = nil, subscriberProcess daqctl: String? = nil) throws -> BarePublisherPeer {
        let apart = try daqctl.map {
            try SubscriberProcess(daqctl: $0, host: host, port: port, tls: subscriberTLS, topic: topic)
        }
        let subscriber = apart == nil ? try MQTTConnection(clientID: "bench-peer-sub-\(getpid())", tls: subscriberTLS) : nil
        let publisher = try MQTTConnection(clientID: "bench-peer-pub-\(getpid())", tls: publisherTLS)
        defer { subscriber?.disconnect(); publisher.disconnect(); apart?.stop() }
        try subscriber?.connectAsync(host: host, port: port)
        try publisher.connectAsync(host: host, port: publisherPort ?? port)
        let loop = PeerLoop(connections: [subscriber, publisher].compactMap { $0 }, others: apart.map { [$0.output] } ?? [])

        // The subscriber's messages so far, from its events or its process's lines.
        var received = 0, receivedBytes = 0
        var subscribed = false
        func subscriberNews() throws {
            if let apart {
                try apart.read()
                subscribed = apart.subscribed
                (received, receivedBytes) = (apart.received, apart.receivedBytes)
            } else if let subscriber {
                try PeerSubscriberEvents.handle(subscriber, topic: topic, subscribed: { subscribed = true },
                                                message: { received += 1; receivedBytes += $0 })
            }
        }

        // Both connected, the subscription granted.
        var publisherUp = false
        try loop.run(until: { subscribed && publisherUp }, timeout: 10, what: "connecting the peer clients") {
            try subscriberNews()
            for event in publisher.drainEvents() {
                if case .connected(let rc) = event {
                    guard rc == 0 else { throw ValidationError("the broker refused the peer publisher (reason \(rc))") }
                    publisherUp = true
                }
            }
        }

        let count = payloads.count
        var next = 0, inFlight = 0
        var refused: Int32?
        let start = SystemClock.monotonicNow()
        let cpuStart = (SystemClock.threadCPU(), ProcessCPU.seconds(brokerPID), ProcessCPU.seconds(apart?.pid))
        do {
            try loop.run(until: { received >= count }, timeout: 300, what: "the peer's \(count) messages") {
                for event in publisher.drainEvents() {
                    if case .published(_, let rc) = event {
                        inFlight -= 1
                        if rc != 0 { refused = rc }
                    }
                }
                if let refused { throw ValidationError("the broker answered a peer publish with reason code \(refused)") }
                try subscriberNews()
                while inFlight < window && next < count {
                    _ = try payloads[next].withUnsafeBytes { try publisher.publish(topic: topic, payload: $0) }
                    next += 1
                    inFlight += 1
                }
            }
        }
        let seconds = Double(SystemClock.monotonicNow() - start) / 1e9
        return BarePublisherPeer(messages: received, bytes: receivedBytes, seconds: seconds,
                                 cpuSeconds: Double(SystemClock.threadCPU() - cpuStart.0) / 1e9,
                                 subscriberProcessCPUSeconds: apart == nil ? .nan : ProcessCPU.seconds(apart?.pid) - cpuStart.2,
                                 brokerCPUSeconds: ProcessCPU.seconds(brokerPID) - cpuStart.1)
    }
}

/// Peer C's subscriber: `daqctl bench peer-subscriber` in a process of its own. It writes a line
/// to a pipe once subscribed, then one per message (the payload's length).
private final class SubscriberProcess {
    private let process = Process()
    private let pipe = Pipe()
    private var pending: [UInt8] = []
    private(set) var subscribed = false
    private(set) var received = 0
    private(set) var receivedBytes = 0
    /// The pipe's reading end (non-blocking).
    var output: Int32 { pipe.fileHandleForReading.fileDescriptor }
    var pid: pid_t { process.processIdentifier }

    init(daqctl: String, host: String, port: Int, tls: MQTTTLSFiles, topic: String) throws {
        process.executableURL = URL(fileURLWithPath: daqctl)
        process.arguments = ["bench", "peer-subscriber", "--host", host, "--port", "\(port)", "--ca", tls.caFile,
                             "--cert", tls.certificateFile, "--key", tls.keyFile, "--topic", topic]
        process.standardOutput = pipe
        try process.run()
        _ = fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK)
    }

    /// Takes in what the process wrote since the last call; throws once it has ended.
    func read() throws {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = Glibc.read(output, &chunk, chunk.count)
            if count > 0 {
                pending += chunk[..<count]
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { break }
            process.waitUntilExit()
            throw ValidationError("the peer's subscriber process (daqctl bench peer-subscriber) ended with status \(process.terminationStatus)")
        }
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: pending[..<newline], as: UTF8.self)
            pending.removeSubrange(...newline)
            if line == "subscribed" {
                subscribed = true
            } else if let bytes = Int(line) {
                received += 1
                receivedBytes += bytes
            }
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// `daqctl bench peer-subscriber` (hidden; `bench uplink` starts it for peer C): peer A's
/// subscriber, the same MQTTConnection on the same poll loop, in a process of its own.
struct BenchPeerSubscriberCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer-subscriber",
        abstract: "Peer C's subscriber for bench uplink: prints \"subscribed\", then each message's length.",
        shouldDisplay: false
    )

    @Option var host: String
    @Option var port: Int
    @Option var ca: String
    @Option var cert: String
    @Option var key: String
    @Option var topic: String

    func run() throws {
        let connection = try MQTTConnection(clientID: "bench-peer-sub-\(getpid())",
                                            tls: MQTTTLSFiles(caFile: ca, certificateFile: cert, keyFile: key))
        defer { connection.disconnect() }
        try connection.connectAsync(host: host, port: port)
        // One write per line, unbuffered: the bench times the last message by it.
        func say(_ line: String) {
            let bytes = Array((line + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        }
        let parent = getppid()
        try PeerLoop(connections: [connection]).run(until: { getppid() != parent }, timeout: 3600,
                                                    what: "the bench's messages") {
            try PeerSubscriberEvents.handle(connection, topic: topic, subscribed: { say("subscribed") },
                                            message: { say("\($0)") })
        }
    }
}

/// The peers' subscriber, in the bench's thread (peers A and B) or its own process (peer C):
/// subscribes to `topic` once connected (a refusal throws), then reports the subscription and
/// each message's payload length.
private enum PeerSubscriberEvents {
    static func handle(_ connection: MQTTConnection, topic: String, subscribed: () -> Void,
                       message: (Int) -> Void) throws {
        for event in connection.drainEvents() {
            switch event {
            case .connected(let rc):
                guard rc == 0 else { throw ValidationError("the broker refused the peer subscriber (reason \(rc))") }
                try connection.subscribe(topic)
            case .subscribed: subscribed()
            case .message(_, let payload): message(payload.count)
            default: break
            }
        }
    }
}

/// CPU time another process has used: the sum of its threads' run time in
/// /proc/<pid>/task/*/schedstat (ns; utime + stime, finer than /proc/<pid>/stat's clock ticks).
enum ProcessCPU {
    /// Seconds; NaN without a pid or when /proc cannot be read.
    static func seconds(_ pid: pid_t?) -> Double {
        guard let pid, let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return .nan }
        var total: UInt64 = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
                  let field = text.split(separator: " ").first, let ns = UInt64(field) else { return .nan }
            total += ns
        }
        return Double(total) / 1e9
    }

    /// The CPU seconds `pid` uses from now until it goes quiet (under 0.5 ms of CPU in 10 ms, for
    /// 1 s: the collector starts its MDF files up to 200 ms after a burst of commits ends; at most
    /// 60 s), and the seconds until its last busy moment.
    static func untilQuiet(_ pid: pid_t?) -> (cpu: Double, seconds: Double) {
        let start = SystemClock.monotonicNow()
        let first = seconds(pid)
        guard first.isFinite else { return (.nan, .nan) }
        var last = first, lastBusy = start
        while SystemClock.monotonicNow() - lastBusy < 1_000_000_000 && SystemClock.monotonicNow() - start < 60_000_000_000 {
            usleep(10_000)
            let now = seconds(pid)
            if now - last > 0.0005 { lastBusy = SystemClock.monotonicNow() }
            last = now
        }
        return (last - first, Double(lastBusy - start) / 1e9)
    }
}

/// CPU seconds each process spent on the loopback drain: the device from its first publish to
/// its last end-to-end ack (its own figure), the collector and the broker from the device's
/// start to its exit (both idle outside it).
struct DrainCPU {
    var device: Double
    var collector: Double
    var broker: Double
    var total: Double { device + collector + broker }
    /// The collector's CPU after the device exited, until it went quiet (its MDF files catching
    /// up with the journal), and how long after the device's exit its last busy moment was.
    var collectorAfter = Double.nan
    var collectorSettleSeconds = Double.nan
}

/// poll(2) over a few MQTT connections; `step` runs after every wake-up and may publish.
private struct PeerLoop {
    let connections: [MQTTConnection]
    /// Other descriptors to wake up for (peer C's pipe from its subscriber process); `step` reads them.
    var others: [Int32] = []

    func run(until done: () -> Bool, timeout: Double, what: String, step: () throws -> Void) throws {
        let deadline = SystemClock.monotonicNow() + Int64(timeout * 1e9)
        var nextMisc = SystemClock.monotonicNow() + 1_000_000_000
        try step()
        while !done() {
            let now = SystemClock.monotonicNow()
            guard now < deadline else { throw ValidationError("timed out after \(Int(timeout)) s waiting for \(what)") }
            var fds = connections.map { connection in
                pollfd(fd: connection.socket ?? -1,
                       events: Int16(POLLIN) | (connection.wantsWrite ? Int16(POLLOUT) : 0), revents: 0)
            } + others.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 100)
            for (index, connection) in connections.enumerated() {
                let ready = fds[index].revents
                var healthy = true
                if ready & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                    healthy = connection.handleReadable(hungUp: ready & Int16(POLLERR | POLLHUP) != 0)
                }
                if healthy && (ready & Int16(POLLOUT) != 0 || connection.wantsWrite) { healthy = connection.handleWritable() }
                if now >= nextMisc { healthy = healthy && connection.handlePeriodic() }
                guard healthy else { throw ValidationError("a peer connection to the broker failed while \(what)") }
            }
            if now >= nextMisc { nextMisc = now + 1_000_000_000 }
            try step()
        }
    }
}

/// The results as a table or JSON.
private struct UplinkBenchReport {
    var backlog: DeviceSummary
    var backlogFrames: Int
    var repeats: Int
    var drain: DeviceSummary
    var drainWallSeconds: Double
    var drainCPU: DrainCPU
    var steady: DeviceSummary
    var latency: LatencyFigures
    var latencySeconds: Double
    var latencySyncMs: Int?
    /// Raw journal bytes in messages of the drain's mean raw batch size.
    var peer: BarePublisherPeer
    /// The drain's own wire messages (DAQLINK_WIRE_TRACE), byte for byte.
    var wirePeer: BarePublisherPeer
    /// The same messages, the subscriber in a process of its own.
    var apartPeer: BarePublisherPeer
    var peerWindow: Int
    /// Every drain of the backlog with its peer A, the first one (everything above) included.
    var rounds: [DrainRound]
    var cellular: CellularFigures?

    private var build: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }

    /// The first round: `drain` and `wirePeer`.
    var firstRound: DrainRound { rounds[0] }
    var drainedBytes: UInt64 { firstRound.journalBytes }
    var drainSeconds: Double { firstRound.drainSeconds }
    var drainMBps: Double { firstRound.drainMBps }
    var startMBps: Double { drain.elapsed > 0 ? Double(drainedBytes) / drain.elapsed / 1e6 : 0 }
    func parts(_ summary: DeviceSummary) -> String {
        let parts = summary.uplink?.parts ?? [0, 0, 0]
        return "raw \(parts[0]), zstd-1 \(parts[1]), codec-4 \(parts[2])"
    }
    var wirePeerJournalMBps: Double { firstRound.peerMBps }
    var firstRatio: Double { firstRound.ratio }
    /// Over all rounds: the median of ours / peer A, and its range.
    var ratio: Double { DrainRound.median(rounds.map(\.ratio)) }
    var ratioRange: ClosedRange<Double> {
        let ratios = rounds.map(\.ratio)
        return ratios.min()!...ratios.max()!
    }
    var apartPeerJournalMBps: Double { apartPeer.seconds > 0 ? Double(drainedBytes) / apartPeer.seconds / 1e6 : 0 }
    /// Peer C over peer A: what moving the subscriber into a process of its own costs by itself.
    var apartOverWirePeer: Double { wirePeerJournalMBps > 0 ? apartPeerJournalMBps / wirePeerJournalMBps : 0 }
    var rawRatio: Double { peer.megabytesPerSecond > 0 ? drainMBps / peer.megabytesPerSecond : 0 }
    var recordBytes: UInt64 { backlog.recordBytes + drain.recordBytes }
    var drainWirePerRecordByte: Double { recordBytes > 0 ? Double(drain.uplink?.wireBytes ?? 0) / Double(recordBytes) : 0 }
    var steadyWirePerRecordByte: Double {
        steady.recordBytes > 0 ? Double(steady.uplink?.wireBytes ?? 0) / Double(steady.recordBytes) : 0
    }
    /// CPU for the same bytes: peer A's (its thread and the broker's) over the drain's three
    /// processes'. Where CPU is what runs out (two cores here), ours / peer A cannot exceed it.
    var peerCPU: Double { wirePeer.cpuSeconds + wirePeer.brokerCPUSeconds }
    var cpuRatio: Double { drainCPU.total > 0 ? peerCPU / drainCPU.total : .nan }
    var meanBatch: UInt64 { (drain.uplink?.rawBytes ?? 0) / Swift.max(1, drain.uplink?.batches ?? 1) }

    var table: String {
        func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
        let sync = latencySyncMs.map { "--sync-ms \($0)" } ?? "daqlink's default group commit"
        return """
            daqctl bench uplink (\(build) build): mosquitto with mTLS (TLS 1.3, client certificates) on loopback
            backlog: \(repeats) × reference log (\(backlogFrames) frames) → \(backlog.journalBytes) journal bytes, \
            \(backlog.records) records, \(backlog.recordBytes) record payload bytes

            | measurement | value | target | met |
            |---|---:|---:|---|
            | drain: daqlink → broker → collector (committed + acked), first publish → last ack, MB/s of journal bytes | \(f(drainMBps, 1)) | ≥ 50 | \(drainMBps >= 50 ? "yes" : "no") |
            | the same from the device process's start (start-up, journal open, TLS connect included), MB/s | \(f(startMBps, 1)) |  |  |
            | peer A: bare QoS 1 publisher of the drain's own \(wirePeer.messages) wire messages (window \(peerWindow)) → subscriber, MB/s of the journal bytes they carry | \(f(wirePeerJournalMBps, 1)) |  |  |
            | drain ours / peer A (same messages), this round | \(f(firstRatio, 2))× |  |  |
            | drain ours / peer A, median of \(rounds.count) rounds (min–max) | \(f(ratio, 2))× (\(f(ratioRange.lowerBound, 2))–\(f(ratioRange.upperBound, 2))) | ≥ 0.8× | \(ratio >= 0.8 ? "yes" : "no") |
            | rounds: drain MB/s / peer A MB/s | \(rounds.map { "\(f($0.drainMBps, 0)) / \(f($0.peerMBps, 0))" }.joined(separator: " · ")) |  |  |
            | CPU s for the drain: device (first publish → last ack) + collector + broker | \(f(drainCPU.device, 3)) + \(f(drainCPU.collector, 3)) + \(f(drainCPU.broker, 3)) = \(f(drainCPU.total, 3)) (\(f(drainCPU.total / Swift.max(drainSeconds, 1e-9), 1)) cores busy) |  |  |
            | CPU s of the collector after the drain (its MDF files catching up at idle priority), and when it went quiet | \(f(drainCPU.collectorAfter, 3)) (\(f(drainCPU.collectorSettleSeconds, 2)) s after the device's exit) |  |  |
            | CPU s for peer A: publisher and subscriber (one thread) + broker | \(f(wirePeer.cpuSeconds, 3)) + \(f(wirePeer.brokerCPUSeconds, 3)) = \(f(peerCPU, 3)) (\(f(peerCPU / Swift.max(wirePeer.seconds, 1e-9), 1)) cores busy) |  |  |
            | CPU of peer A / CPU of the drain (the most ours / peer A can reach where the cores are all busy, as on this \(ProcessInfo.processInfo.activeProcessorCount)-core machine) | \(f(cpuRatio, 2))× |  |  |
            | peer C: peer A's messages, its subscriber in a process of its own (the drain's topology: three processes), MB/s of the journal bytes they carry · peer C / peer A · ours / peer C | \(f(apartPeerJournalMBps, 1)) · \(f(apartOverWirePeer, 2))× · \(f(apartPeerJournalMBps > 0 ? drainMBps / apartPeerJournalMBps : 0, 2))× |  |  |
            | CPU s for peer C: publisher + subscriber process + broker | \(f(apartPeer.cpuSeconds, 3)) + \(f(apartPeer.subscriberProcessCPUSeconds, 3)) + \(f(apartPeer.brokerCPUSeconds, 3)) = \(f(apartPeer.totalCPUSeconds, 3)) |  |  |
            | peer B: bare QoS 1 publisher of the raw journal bytes (window \(peerWindow), \(meanBatch) B messages), MB/s | \(f(peer.megabytesPerSecond, 1)) |  |  |
            | drain ours / peer B | \(f(rawRatio, 2))× |  |  |
            | wire bytes / raw record bytes (drain over loopback, batches of ≤ 512 entries; parts: \(parts(drain))) | \(f(drainWirePerRecordByte, 3))× | ≤ 0.3× | \(drainWirePerRecordByte <= 0.3 ? "yes" : "no") |
            | wire bytes / raw record bytes (steady state, original speed) | \(f(steadyWirePerRecordByte, 3))× | ≤ 0.3× | \(steadyWirePerRecordByte <= 0.3 ? "yes" : "no") |
            | append → collector commit p99, ms (\(latency.entries) entries, \(f(latencySeconds, 0)) s at ×1, \(sync)) | \(f(latency.p99, 1)) | ≤ 100 | \(latency.p99 <= 100 ? "yes" : "no") |

            \(cellular?.rows ?? "")
            drain: \(drainedBytes) journal bytes in \(drain.uplink?.batches ?? 0) batches (\(drain.uplink?.wireBytes ?? 0) wire bytes) \
            in \(f(drainSeconds, 3)) s from first publish to last ack (\(f(drain.elapsed, 3)) s from device start; \
            process wall \(f(drainWallSeconds, 3)) s); parts \(parts(drain))
            peer A: \(wirePeer.messages) messages, \(wirePeer.bytes) wire bytes in \(f(wirePeer.seconds, 3)) s
            peer B: \(peer.messages) messages, \(peer.bytes) bytes in \(f(peer.seconds, 3)) s
            peer C: \(apartPeer.messages) messages, \(apartPeer.bytes) wire bytes in \(f(apartPeer.seconds, 3)) s
            latency: p50 \(f(latency.p50, 1)) ms, p99 \(f(latency.p99, 1)) ms, max \(f(latency.max, 1)) ms
            """
    }

    var json: String {
        func n(_ value: Double) -> String { value.isFinite ? String(format: "%.6g", value) : "null" }
        return """
            {"build": "\(build)", \
            "backlog": {"repeats": \(repeats), "frames": \(backlogFrames), "journalBytes": \(backlog.journalBytes), \
            "records": \(backlog.records), "recordPayloadBytes": \(backlog.recordBytes)}, \
            "drain": {"journalBytes": \(drainedBytes), "batches": \(drain.uplink?.batches ?? 0), \
            "wireBytes": \(drain.uplink?.wireBytes ?? 0), "seconds": \(n(drain.elapsed)), \
            "wallSeconds": \(n(drainWallSeconds)), "megabytesPerSecond": \(n(drainMBps)), \
            "drainSeconds": \(n(drainSeconds)), "fromStartMegabytesPerSecond": \(n(startMBps)), \
            "parts": [\((drain.uplink?.parts ?? []).map(String.init).joined(separator: ", "))], \
            "cpuSeconds": {"device": \(n(drainCPU.device)), "collector": \(n(drainCPU.collector)), \
            "broker": \(n(drainCPU.broker)), "collectorAfter": \(n(drainCPU.collectorAfter)), \
            "collectorSettleSeconds": \(n(drainCPU.collectorSettleSeconds))}}, \
            "cellular": \(cellular?.json ?? "null"), \
            "peer": {"window": \(peerWindow), "messageBytes": \(meanBatch), "messages": \(peer.messages), \
            "bytes": \(peer.bytes), "seconds": \(n(peer.seconds)), "megabytesPerSecond": \(n(peer.megabytesPerSecond))}, \
            "wirePeer": {"window": \(peerWindow), "messages": \(wirePeer.messages), "wireBytes": \(wirePeer.bytes), \
            "seconds": \(n(wirePeer.seconds)), "journalMegabytesPerSecond": \(n(wirePeerJournalMBps)), \
            "cpuSeconds": \(n(wirePeer.cpuSeconds)), "brokerCPUSeconds": \(n(wirePeer.brokerCPUSeconds))}, \
            "apartPeer": {"messages": \(apartPeer.messages), "wireBytes": \(apartPeer.bytes), "seconds": \(n(apartPeer.seconds)), \
            "journalMegabytesPerSecond": \(n(apartPeerJournalMBps)), "overWirePeer": \(n(apartOverWirePeer)), \
            "publisherCPUSeconds": \(n(apartPeer.cpuSeconds)), "subscriberCPUSeconds": \(n(apartPeer.subscriberProcessCPUSeconds)), \
            "brokerCPUSeconds": \(n(apartPeer.brokerCPUSeconds))}, \
            "ratio": \(n(ratio)), "ratioMin": \(n(ratioRange.lowerBound)), "ratioMax": \(n(ratioRange.upperBound)), \
            "rounds": [\(rounds.map(\.json).joined(separator: ", "))], \
            "rawRatio": \(n(rawRatio)), "cpuRatio": \(n(cpuRatio)), \
            "wire": {"drainWirePerRecordByte": \(n(drainWirePerRecordByte)), \
            "steadyWirePerRecordByte": \(n(steadyWirePerRecordByte))}, \
            "latency": {"seconds": \(n(latencySeconds)), "syncMs": \(latencySyncMs.map(String.init) ?? "null"), \
            "entries": \(latency.entries), "p50Ms": \(n(latency.p50)), "p99Ms": \(n(latency.p99)), "maxMs": \(n(latency.max))}}
            """
    }
}

/// One drain of the backlog and peer A with its messages, run right after it.
struct DrainRound {
    var drain: DeviceSummary
    /// Journal bytes drained: the collector's committed bytes (the device's sent bytes if missing).
    var journalBytes: UInt64
    var peer: BarePublisherPeer

    init(drain: DeviceSummary, committedBytes: UInt64, peer: BarePublisherPeer) {
        self.drain = drain
        journalBytes = committedBytes > 0 ? committedBytes : drain.uplink?.rawBytes ?? 0
        self.peer = peer
    }

    /// The drain's own span, first publish → last end-to-end ack (the peers are timed from their
    /// first publish too); the process's start-up and TLS connect are not in it.
    var drainSeconds: Double { drain.uplink?.drainSeconds ?? drain.elapsed }
    var drainMBps: Double { drainSeconds > 0 ? Double(journalBytes) / drainSeconds / 1e6 : 0 }
    /// The journal bytes the same wire messages carry, per second of the bare publisher.
    var peerMBps: Double { peer.seconds > 0 ? Double(journalBytes) / peer.seconds / 1e6 : 0 }
    /// Like for like: the same messages, with and without everything around them.
    var ratio: Double { peerMBps > 0 ? drainMBps / peerMBps : 0 }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    var json: String {
        func n(_ value: Double) -> String { value.isFinite ? String(format: "%.6g", value) : "null" }
        return """
            {"drainMegabytesPerSecond": \(n(drainMBps)), "peerJournalMegabytesPerSecond": \(n(peerMBps)), \
            "ratio": \(n(ratio)), "batches": \(drain.uplink?.batches ?? 0), \
            "parts": [\((drain.uplink?.parts ?? []).map(String.init).joined(separator: ", "))]}
            """
    }
}

/// The drain over the rate-limited link and the bare publisher over the same link.
struct CellularFigures {
    var bytesPerSecond: Int
    var backlog: DeviceSummary
    var drain: DeviceSummary
    var wirePeer: BarePublisherPeer
    var rawPeer: BarePublisherPeer

    var journalBytes: UInt64 { drain.uplink?.rawBytes ?? 0 }
    var seconds: Double { drain.uplink?.drainSeconds ?? drain.elapsed }
    var megabytesPerSecond: Double { seconds > 0 ? Double(journalBytes) / seconds / 1e6 : 0 }
    var wirePeerMBps: Double { wirePeer.seconds > 0 ? Double(journalBytes) / wirePeer.seconds / 1e6 : 0 }
    var wireRatio: Double {
        let records = backlog.recordBytes + drain.recordBytes
        return records > 0 ? Double(drain.uplink?.wireBytes ?? 0) / Double(records) : 0
    }
    var parts: [UInt64] { drain.uplink?.parts ?? [0, 0, 0] }
    var mbit: String { String(format: "%.0f Mbit/s", Double(bytesPerSecond) * 8 / 1e6) }

    var rows: String {
        func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
        let raw = rawPeer.megabytesPerSecond
        let ours = megabytesPerSecond
        return """
            | over a \(mbit) uplink (fault proxy): drain of \(journalBytes) journal bytes, MB/s (parts: raw \(parts[0]), zstd-1 \(parts[1]), codec-4 \(parts[2])) | \(f(ours, 2)) |  |  |
            | over that link: bare publisher of the raw journal bytes, MB/s · ours / it | \(f(raw, 2)) · \(f(raw > 0 ? ours / raw : 0, 2))× | ≥ 0.8× | \(raw > 0 && ours / raw >= 0.8 ? "yes" : "no") |
            | over that link: bare publisher of the drain's own wire messages, journal MB/s they carry · ours / it | \(f(wirePeerMBps, 2)) · \(f(wirePeerMBps > 0 ? ours / wirePeerMBps : 0, 2))× | ≥ 0.8× | \(wirePeerMBps > 0 && ours / wirePeerMBps >= 0.8 ? "yes" : "no") |
            | over that link: wire bytes / raw record bytes | \(f(wireRatio, 3))× | ≤ 0.3× | \(wireRatio <= 0.3 ? "yes" : "no") |
            """
    }

    var json: String {
        func n(_ value: Double) -> String { value.isFinite ? String(format: "%.6g", value) : "null" }
        return """
            {"bytesPerSecond": \(bytesPerSecond), "journalBytes": \(journalBytes), "wireBytes": \(drain.uplink?.wireBytes ?? 0), \
            "seconds": \(n(seconds)), "megabytesPerSecond": \(n(megabytesPerSecond)), \
            "parts": [\(parts.map(String.init).joined(separator: ", "))], "wirePerRecordByte": \(n(wireRatio)), \
            "rawPeerSeconds": \(n(rawPeer.seconds)), "rawPeerMegabytesPerSecond": \(n(rawPeer.megabytesPerSecond)), \
            "wirePeerSeconds": \(n(wirePeer.seconds)), "wirePeerJournalMegabytesPerSecond": \(n(wirePeerMBps))}
            """
    }
}
