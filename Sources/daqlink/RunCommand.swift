// `daqlink run`: acquisition from a log replay or live SocketCAN into the crash-safe journal.
import Agent
import ArgumentParser
import DAQCore
import Delivery
import Foundation
import Logging
import OTA
import OTADevice
import PKI
import Uplink

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Acquire channel groups from CAN into the journal.",
        discussion: """
            Decodes frames with the experiment's DBC files, samples its channel groups (time \
            rasters such as 5 ms and 10 ms, message events, signal changes) and appends every \
            record to the journal in DIR: append-only segments, CRC32C per entry, a sequence number \
            that continues across restarts, fsync in groups (--sync-bytes / --sync-ms). A journal \
            left by a crash is recovered first (a torn tail is cut).

            Sources:
              replay:LOG           candump -l, Vector ASC or PCAN TRC (pace: --speed)
              socketcan:can0,can1  live SocketCAN interfaces (kernel timestamps)

            Replays are deterministic: the same log and experiment give byte-identical \
            journals at any speed. SIGINT/SIGTERM flush, fsync and close the journal. When the \
            journal quota is full of unacknowledged data, nothing is dropped or overwritten: with \
            --broker acquisition pauses (an alarm; the records meanwhile are counted, not kept) \
            until the collector acknowledges the oldest segment; without it, it stops with an \
            alarm (exit status 3). --mdf also streams each \
            measurement into MDF4 files (split by --mdf-split-bytes / --mdf-split-seconds, \
            ##DZ blocks with --mdf-deflate, raw frames with --mdf-bus-logging, CAN FD frames up to 64 \
            bytes with --mdf-bus-logging-fd; the options go \
            into the journal's layout entry, so the collector writes the same files). --broker sends the journal over MQTT with mutual \
            TLS to `daqctl collect`; records leave only once synced, and the device trims only \
            on the collector's end-to-end ack.

            Examples:
              daqlink run --experiment Fixtures/reference/reference.toml \\
                --source replay:Fixtures/reference/engine-10s.log \\
                --speed max --journal /tmp/j
              daqlink run --experiment exp.toml --source socketcan:can0,can1 \\
                --journal /data/journal --mdf /data/mdf
              daqlink run --experiment exp.toml --source socketcan:can0 \\
                --journal /data/journal --broker 10.0.0.5:8883 \\
                --device rig-01 --pki /etc/daqlink/pki
            """
    )

    @Option(help: "The experiment file (TOML): DBC files and channel groups.")
    var experiment: String

    @Option(help: "replay:LOG or socketcan:IFACE[,IFACE…].")
    var source: String

    @Option(help: "Replay speed: original, a factor such as 2 or 0.5, or max.")
    var speed: String = "original"

    @Option(help: "The journal directory (created if missing).")
    var journal: String

    @Option(help: "Stop after this many seconds of source time (log time for replays).")
    var duration: Double?

    @Option(help: "fsync after this many unsynced bytes.")
    var syncBytes: Int = 256 << 10

    @Option(help: "fsync at most this many milliseconds after the first unsynced record (only synced records are sent).")
    var syncMs: Int = 50

    @Option(help: "Journal segment size limit in bytes. Each segment after the first opens with the measurement's layout (a few kB to tens of kB: it keeps the rest decodable when retention deletes the oldest segments), so keep segments far larger than that.")
    var segmentBytes: Int = 8 << 20

    @Option(help: "Journal disk quota in bytes (only acknowledged segments are ever deleted; full of unacknowledged ones, acquisition pauses until the collector acknowledges, or stops without --broker).")
    var quotaBytes: Int = 512 << 20

    @Option(help: ArgumentHelp(
        "The stream epoch of a new journal (default: a fresh one, the Unix time in seconds and six random digits).",
        discussion: "An existing journal keeps the epoch it was created with. A journal started afresh (a new card, a "
            + "wiped directory) needs a new epoch, so the collector keeps its stream beside the old one instead of "
            + "refusing it; give one only to make replays byte-reproducible.",
        valueName: "N"))
    var epoch: UInt64?

    @Option(help: "Also write each measurement as an MDF4 file (streamed, finalized on clean exit) into this directory.")
    var mdf: String?

    @Option(help: "MDF: start a new file before one would exceed this many bytes (overrides the experiment's [mdf] split_bytes).")
    var mdfSplitBytes: Int?

    @Option(help: "MDF: start a new file every this many seconds of measurement time (overrides [mdf] split_seconds).")
    var mdfSplitSeconds: Double?

    @Flag(help: "MDF: store records in ##DZ (deflate) blocks; a cut file keeps every complete 64 KiB block.")
    var mdfDeflate = false

    @Flag(help: "Also record every frame of the DBC entries' buses raw, as an MDF bus-logging group (CAN_DataFrame).")
    var mdfBusLogging = false

    @Flag(help: "Like --mdf-bus-logging with CAN FD records (64 data bytes: FD frames of any length); also makes the experiment's own bus-logging groups FD.")
    var mdfBusLoggingFd = false

    @Option(help: "Send the journal to this MQTT broker (HOST:PORT, mutual TLS 1.3). HOST is an IP address or a name in the broker certificate; a name is resolved off the acquisition loop, so a DNS outage never stops sampling.")
    var broker: String?

    @Option(help: "This device's id (its certificate's CN; topics devices/<id>/…).")
    var device: String?

    @Option(help: "A PKI directory made by `daqctl pki`: ca.crt and devices/<id>.crt/.key are used.")
    var pki: String?

    @Option(help: "CA certificate (instead of --pki).")
    var ca: String?

    @Option(help: "Device certificate (instead of --pki).")
    var cert: String?

    @Option(help: "Device private key (instead of --pki).")
    var key: String?

    @Option(help: "At the end, wait up to this many seconds for the collector to acknowledge everything; what it has not acknowledged by then stays in the journal for the next connection (the summary names the entries).")
    var drainTimeout: Double = 30

    @Option(help: "Seconds one connect attempt may take, name lookup, TLS handshake and MQTT CONNACK together, before it is given up and tried again with backoff (a slow 4G cell may need more than the default).")
    var connectTimeout: Double = 5

    @Option(help: "Most journal bytes in one MQTT message; larger batches go as several messages.")
    var maxBatchBytes: Int = 256 << 10

    @Option(help: "Most journal entries in one batch (a partial batch waits 20 ms for more, unless it ends a backlog).")
    var batchEntries: Int = UplinkPolicy().maxBatchEntries

    @Flag(help: "Send batch bodies uncompressed (by default a backlog goes raw only when the link outruns the compressor).")
    var noCompression = false

    @Option(help: ArgumentHelp("The OTA update directory (slots, boot state); set by `daqlink boot`.", visibility: .hidden))
    var otaDir: String?

    @Option(help: ArgumentHelp("The slot `daqlink boot` started (a or b); set by `daqlink boot`.", visibility: .hidden))
    var bootedSlot: String?

    @Option(help: ArgumentHelp("Boot attempts of a trial slot; set by `daqlink boot`.", visibility: .hidden))
    var trialAttempts: UInt8 = 3

    @Option(help: "Poll this HTTPS URL for updates (mutual TLS with the device certificate), e.g. https://updates:8443/ota/.")
    var otaURL: String?

    @Option(help: ArgumentHelp("Fetch this device's renewed certificate from URL<key>.crt (key: the SHA-256 of its public key, hex), without a client certificate, once the one in use ends within 30 days or has ended (nginx-config --renewal-port), e.g. https://updates:8444/renewal/.", valueName: "URL"))
    var otaRenewalURL: String?

    @Option(help: "A trusted release public key (repeat for several, e.g. during a key rotation).")
    var otaKey: [String] = []

    @Option(help: "This device's hardware id (update manifests must name it).")
    var hardware: String = "daqlink-sbc"

    @Option(help: "Seconds between update polls (±20 % jitter).")
    var otaInterval: Double = 300

    @Option(help: "Cap OTA downloads at this many bytes per second (keeps the 4G link free for measurement data).")
    var otaMaxRate: Int?

    @Option(help: "Seconds a trial firmware has to connect and get a batch acknowledged end to end before it is rolled back.")
    var healthTimeout: Double = 120

    @Flag(help: "Skip malformed log lines (counted) instead of stopping.")
    var lenient = false

    @Flag(help: "No progress line.")
    var quiet = false

    @Option(help: "Log level on standard error: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "notice"

    /// The options read and checked before anything runs (so a bad one is refused with this
    /// command's usage, not the top level's).
    private struct Checked {
        var level: Logger.Level
        var source: FrameSourceSpec
        var broker: (host: String, port: Int, device: String, tls: MQTTTLSFiles)?
        var ota: (slot: Slot, device: String, caFile: String)?
    }

    private func checked() throws -> Checked {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if epoch == 0 { throw ValidationError("--epoch must be at least 1 (0 stands for an unknown epoch)") }
        if let mdfSplitBytes, mdfSplitBytes < 4096 { throw ValidationError("--mdf-split-bytes must be at least 4096") }
        if let mdfSplitSeconds, !(mdfSplitSeconds >= 0.001 && mdfSplitSeconds <= 1e9) {
            throw ValidationError("--mdf-split-seconds must be 0.001…1e9 (31 years), not \(mdfSplitSeconds)")
        }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a number of seconds above 0, not \(duration)") }
        if syncBytes < 1 { throw ValidationError("--sync-bytes must be at least 1, not \(syncBytes)") }
        if syncMs < 0 || syncMs > 3_600_000 { throw ValidationError("--sync-ms must be 0…3600000 (an hour), not \(syncMs)") }
        if !(drainTimeout >= 0) { throw ValidationError("--drain-timeout must not be negative, not \(drainTimeout)") }
        if !(connectTimeout >= 0.1 && connectTimeout <= 3600) {
            throw ValidationError("--connect-timeout must be 0.1…3600 seconds, not \(connectTimeout)")
        }
        if maxBatchBytes < 1 || maxBatchBytes > UplinkBatch.maxBatchBytes {
            throw ValidationError("--max-batch-bytes must be 1…\(UplinkBatch.maxBatchBytes) (the collector refuses larger batches), not \(maxBatchBytes)")
        }
        if batchEntries < 1 { throw ValidationError("--batch-entries must be at least 1, not \(batchEntries)") }
        if !(otaInterval > 0) { throw ValidationError("--ota-interval must be a number of seconds above 0, not \(otaInterval)") }
        if let otaMaxRate, otaMaxRate < 1 { throw ValidationError("--ota-max-rate must be at least 1 byte per second, not \(otaMaxRate)") }
        if !(healthTimeout > 0) { throw ValidationError("--health-timeout must be a number of seconds above 0, not \(healthTimeout)") }
        if segmentBytes < Self.smallestSegment {
            throw ValidationError("--segment-bytes must be at least \(Self.smallestSegment), not \(segmentBytes)")
        }
        if quotaBytes < 2 * segmentBytes {
            throw ValidationError("--quota-bytes must hold at least two segments (2 × --segment-bytes = \(2 * segmentBytes)), not \(quotaBytes)")
        }
        guard let speed = ReplaySpeed(argument: speed) else {
            throw ValidationError("--speed must be original, max or a positive factor such as 2, not \(speed)")
        }
        guard let source = FrameSourceSpec(argument: source, speed: speed) else {
            throw ValidationError("--source must be replay:LOG or socketcan:IFACE[,IFACE…], not \(source)")
        }
        var uplink: (String, Int, String, MQTTTLSFiles)?
        if let broker {
            guard let address = BrokerAddress(broker) else {
                throw ValidationError("--broker must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not \(broker)")
            }
            guard let device, !device.isEmpty else { throw ValidationError("--broker needs --device ID too") }
            // It is the certificate's CN, a topic level and a file name under --pki: 'rig/#' was
            // taken, raised an alarm and never connected; '../ca' picked up the CA's own key.
            do { try CommonName.validateClientName(device, field: "--device") } catch let error as DAQError { throw ValidationError(error.message) }
            guard let caFile = ca ?? pki.map({ "\($0)/ca.crt" }), let certFile = cert ?? pki.map({ "\($0)/devices/\(device).crt" }),
                  let keyFile = key ?? pki.map({ "\($0)/devices/\(device).key" }) else {
                throw ValidationError("the uplink needs --pki DIR, or --ca, --cert and --key")
            }
            uplink = (address.host, address.port, device, MQTTTLSFiles(caFile: caFile, certificateFile: certFile, keyFile: keyFile))
        }
        if otaDir == nil && (otaURL != nil || !otaKey.isEmpty) {
            throw ValidationError("over-the-air updates need the A/B slot directory: start through `daqlink boot --ota-dir DIR -- …`")
        }
        if otaURL != nil && otaKey.isEmpty { throw ValidationError("--ota-url needs at least one trusted --ota-key") }
        if let otaRenewalURL {
            guard otaURL != nil else { throw ValidationError("--ota-renewal-url is asked at each update poll: give --ota-url too") }
            guard otaRenewalURL.hasPrefix("https://") else { throw ValidationError("--ota-renewal-url must be an https:// URL, not '\(otaRenewalURL)'") }
        }
        var ota: (Slot, String, String)?
        if otaDir != nil {
            guard let bootedSlot, let slot = Slot(rawValue: bootedSlot) else {
                throw ValidationError("--ota-dir needs the slot this binary was started from: start it through `daqlink boot`")
            }
            guard let device, !device.isEmpty, let caFile = ca ?? pki.map({ "\($0)/ca.crt" }) else {
                throw ValidationError("OTA needs --device and --pki (or --ca) for its mutual-TLS downloads and status reports")
            }
            ota = (slot, device, caFile)
        }
        return Checked(level: level, source: source, broker: uplink, ota: ota)
    }

    /// The uplink's files checked before the loop starts: a missing file, a key of another
    /// certificate, a certificate for another device or CA would otherwise only show as a link that
    /// never comes up. Acquisition goes on regardless (the journal keeps everything for a link
    /// that is mended later), so this is an alarm, not a refusal.
    private static func checkCredentials(device: String, tls: MQTTTLSFiles) {
        do {
            let bundle = try AtomicFile.read(tls.certificateFile) + [UInt8(ascii: "\n")] + AtomicFile.read(tls.keyFile)
            _ = try DeviceCredentialBundle.validate(bundle, deviceID: device, caFile: tls.caFile, file: tls.certificateFile)
        } catch where (try? CredentialLifetime.certificateValidity(path: tls.certificateFile)).map({ $0.start > CredentialLifetime.now() }) == true {
            // "Not yet valid": the clock is behind (a board without an RTC before NTP), not the
            // certificate at fault; the uplink says so (`UplinkTask.checkCertificateLifetime`).
        } catch {
            Logger(label: "daqlink.uplink").error(
                "ALARM: uplink credentials for --device \(device) are unusable: \(error); acquisition goes on into the journal, but nothing can be sent until they are mended (daqctl pki device --dir DIR \(device))")
        }
    }

    /// Below this a segment holds hardly a record (a header, then entries of tens to hundreds of bytes).
    static let smallestSegment = 4096

    func validate() throws { _ = try checked() }

    func run() throws {
        let checked = try checked()
        let level = checked.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let source = checked.source
        var options = AcquisitionOptions(source: source, journalDirectory: journal)
        options.duration = duration
        options.epoch = epoch
        options.commit = .init(maxPendingBytes: syncBytes, maxDelayNanoseconds: Int64(syncMs) * 1_000_000)
        options.segmentSizeLimit = segmentBytes
        options.quotaBytes = quotaBytes
        options.progress = !quiet
        options.lenient = lenient
        options.mdfDirectory = mdf
        let otaDirectory = otaDir.map { SlotDirectory(root: $0) }
        if let (host, port, device, tls) = checked.broker {
            var uplink = UplinkOptions(deviceID: device, host: host, port: port, tls: tls)
            uplink.compress = !noCompression
            uplink.maxBatchBytes = maxBatchBytes
            uplink.connectTimeout = Int64(connectTimeout * 1e9)
            uplink.policy.maxBatchEntries = batchEntries
            options.uplink = uplink
            options.drainTimeout = drainTimeout
            let provisioned = CredentialFiles(certificateFile: tls.certificateFile, keyFile: tls.keyFile)
            options.provisionedCredentials = provisioned
            // With OTA, the credentials in use may be a bundle installed since: check those (the
            // provisioned ones raised a false alarm once they expired, the link working).
            var inUse = tls
            if let otaDirectory {
                let current = CredentialStore(directory: otaDirectory, provisioned: provisioned).current
                (inUse.certificateFile, inUse.keyFile) = (current.certificateFile, current.keyFile)
                if let authorities = current.caFile { inUse.caFile = authorities }
            }
            Self.checkCredentials(device: device, tls: inUse)
        }
        var experimentPath = experiment
        if let directory = otaDirectory, let (slot, device, caFile) = checked.ota {
            if let installed = try? directory.installedExperiment() {
                // An experiment installed over the air replaces the provisioned one, across restarts.
                experimentPath = installed
            }
            var ota = UpdateOptions(baseURL: otaURL ?? "", deviceID: device, hardwareID: hardware, directory: directory,
                                    runningSlot: slot, trustedKeyFiles: otaKey, caFile: caFile)
            ota.pollInterval = otaURL == nil ? .infinity : otaInterval
            ota.healthTimeout = healthTimeout
            ota.maxDownloadRate = otaMaxRate
            ota.renewalURL = otaRenewalURL
            ota.trialAttempts = trialAttempts
            options.ota = ota
        }
        let summary: AcquisitionSummary
        // Like mkdir -p: the journal's parent directories may not exist yet. (Not NSString's
        // deletingLastPathComponent: it traps on a one-character name such as `--journal j`.)
        try? FileManager.default.createDirectory(at: URL(fileURLWithPath: journal).deletingLastPathComponent(),
                                                 withIntermediateDirectories: true)
        do {
            let binding = try ExperimentLoader.load(path: experimentPath) { (file) throws(DAQError) in
                if mdfBusLogging || mdfBusLoggingFd { try file.addBusLogging(file: experimentPath, fd: mdfBusLoggingFd) }
                if let mdfSplitBytes { file.files.splitBytes = mdfSplitBytes }
                if let mdfSplitSeconds { file.files.splitNanoseconds = Int64((mdfSplitSeconds * 1e9).rounded()) }
                if mdfDeflate { file.files.deflate = true }
            }
            summary = try AcquisitionRun(binding: binding, options: options).run()
        } catch {
            FileHandle.standardError.write(Data("daqlink: \(error)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardError.write(Data((summary.text + "\n").utf8))
        if summary.stopReason == .journalFull { throw ExitCode(3) }
        if summary.stopReason == .reboot, let otaDir {
            try BootCommand.reexecute(otaDirectory: otaDir, trialAttempts: trialAttempts)
        }
    }
}
