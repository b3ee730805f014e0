// The OTA test rig: everything real on loopback — mosquitto with mTLS (TestSupport.MosquittoBroker),
// nginx with mTLS serving the update directory (`daqctl ota nginx-config`), the collector
// (`daqctl collect`), and the device started through `daqlink boot` from slot a of its own update
// directory, replaying the reference fixture while it polls for updates.
import FaultInjection
import Foundation
import OTA
import OTADevice
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class OTARig: @unchecked Sendable {
    // Confinement: each test owns its rig and drives it from one thread.
    static let daqlink = PackagePaths.executable("daqlink").path
    static let daqctl = PackagePaths.executable("daqctl").path
    static let experiment = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path
    static let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
    static let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path
    static let hardware = "sim-hw.1"

    let deviceID = "rig-01"
    let broker: MosquittoBroker
    let root: URL
    private(set) var nginx: NginxServer?
    private(set) var nginxPort = 0
    /// The renewal listener (no client certificate; `ota nginx-config --renewal-port`).
    private(set) var renewalPort = 0
    /// When set, the device reaches nginx through this port (a TCPFaultProxy in the test).
    var updatePort: Int?
    /// When set, the device reaches the broker through this port (a TCPFaultProxy in the test).
    var brokerPort: Int?
    var collector: Process?
    var device: Process?
    private var deviceRuns = 0
    /// Device runs started so far (the last one logs to `device-<runs>.log`).
    var runs: Int { deviceRuns }

    var pki: URL { broker.pkiDirectory }
    var release: URL { root.appendingPathComponent("release") }
    var updates: URL { root.appendingPathComponent("updates") }
    var ota: URL { root.appendingPathComponent("ota") }
    var journal: URL { root.appendingPathComponent("device/journal") }
    var collected: URL { root.appendingPathComponent("collected") }
    var provisioned: URL { root.appendingPathComponent("provisioned") }
    var slots: SlotDirectory { SlotDirectory(root: ota.path) }

    init(otaRoot: URL? = nil) throws {
        broker = try MosquittoBroker(devices: ["rig-01"], lifetimeSeconds: 300)
        root = try PackagePaths.temporaryDirectory("ota-device")
        try ctl(["ota", "keygen", "--out", release.path])
        // The device's provisioned credentials, kept apart from the PKI directory (which a test
        // may reissue into for a certificate rotation).
        try FileManager.default.createDirectory(at: provisioned, withIntermediateDirectories: true)
        for suffix in ["crt", "key"] {
            try FileManager.default.copyItem(at: pki.appendingPathComponent("devices/rig-01.\(suffix)"),
                                             to: provisioned.appendingPathComponent("device.\(suffix)"))
        }
        if let otaRoot {
            try FileManager.default.createSymbolicLink(at: ota, withDestinationURL: otaRoot)
        }
        try FileManager.default.createDirectory(at: ota.appendingPathComponent("slots/a"), withIntermediateDirectories: true)
        try Self.installFactoryImage(at: slots.binaryPath(.a))
        try startNginx()
    }

    deinit {
        for process in [device, collector].compactMap({ $0 }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        nginx?.stop()
        broker.stop()
    }

    /// Copies this build's daqlink to `path` with cp(1): a write descriptor held by the test process
    /// itself could be inherited by a child another test forks at that moment, and exec of the
    /// file would then fail with ETXTBSY ("Text file busy").
    static func installFactoryImage(at path: String) throws {
        let copy = try runProcess("/bin/cp", [daqlink, path])
        guard copy.status == 0 else { throw RigError("cp \(daqlink) \(path): \(copy.stderr)") }
    }

    /// A device fresh from the factory: the update directory is emptied, slot a holds this build.
    func resetUpdateDirectory() throws {
        try? FileManager.default.removeItem(at: ota)
        try FileManager.default.createDirectory(at: ota.appendingPathComponent("slots/a"), withIntermediateDirectories: true)
        try Self.installFactoryImage(at: slots.binaryPath(.a))
    }

    @discardableResult
    func ctl(_ arguments: [String]) throws -> ProcessResult {
        let result = try runProcess(Self.daqctl, arguments)
        guard result.status == 0 else {
            throw RigError("daqctl \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        }
        return result
    }

    /// Stops nginx and starts it again (on new ports) with `configArguments` for `ota nginx-config`.
    func restartNginx(pki serverPKI: URL? = nil, configArguments: [String]) throws {
        nginx?.stop()
        nginx = nil
        try startNginx(pki: serverPKI, configArguments: configArguments)
    }

    private func startNginx(pki serverPKI: URL? = nil, configArguments: [String] = []) throws {
        let server = root.appendingPathComponent("nginx")
        for _ in 0..<3 where nginx == nil {  // the probed port may be taken before nginx binds it
            nginxPort = try MosquittoBroker.freeLoopbackPort()
            repeat { renewalPort = try MosquittoBroker.freeLoopbackPort() } while renewalPort == nginxPort
            try ctl(["ota", "nginx-config", "--pki", (serverPKI ?? pki).path, "--updates", updates.path, "--out", server.path,
                     "--port", String(nginxPort), "--renewal-port", String(renewalPort), "--user", "root"] + configArguments)
            let candidate = try NginxServer(configuration: server.appendingPathComponent("nginx.conf"), state: server)
            var up = false
            for _ in 0..<100 where candidate.isRunning {
                if let fd = LoopbackTCP.connect(port: nginxPort) { close(fd); up = true; break }
                usleep(50_000)
            }
            if up { nginx = candidate } else { candidate.stop() }
        }
        guard nginx != nil else { throw RigError("nginx did not start") }
    }

    /// Signs `file` as `kind` `version` with the release key (or `key`) and publishes it for the device.
    func publish(_ file: URL, kind: UpdateKind, version: UInt64, floor: UInt64 = 0, hardware: String = OTARig.hardware,
                 key: URL? = nil, expiresInDays: Int = 30) throws {
        try ctl(["ota", "sign", "--key", (key ?? release.appendingPathComponent("release.key")).path, "--kind", kind.rawValue,
                 "--version", String(version), "--hardware", hardware, "--floor", String(floor),
                 "--expires-in", String(expiresInDays), file.path])
        try ctl(["ota", "publish", "--dir", updates.path, "--device", deviceID, file.path])
    }

    /// A firmware image: this build's daqlink with `marker` appended (an ELF runs unchanged).
    /// Experiment `version`: one slow group (its DBC by absolute path: the file lives in the update
    /// directory), written beside the rig.
    func slowExperiment(version: UInt64) throws -> URL {
        let experiment = root.appendingPathComponent("slow-\(version).toml")
        try Data("""
            name = "slow"
            [[dbc]]
            file = "\(Self.dbc)"
            buses = ["can0", "can1"]
            [[group]]
            name = "Slow 100ms"
            raster_ms = 100
            channels = ["EngFast_00.EngFast_00_S0", "EngFast_00.EngFast_00_S1"]

            """.utf8).write(to: experiment)
        return experiment
    }

    /// Certificates `version`: a fresh certificate and key for this device, as one PEM bundle;
    /// the bundle and its certificate.
    func newCertificateBundle(version: UInt64) throws -> (bundle: URL, certificate: Data) {
        try ctl(["pki", "device", "--dir", pki.path, deviceID, "--force"])
        let bundle = root.appendingPathComponent("\(deviceID)-certs-\(version).pem")
        let certificate = try Data(contentsOf: pki.appendingPathComponent("devices/\(deviceID).crt"))
        try (certificate + Data(contentsOf: pki.appendingPathComponent("devices/\(deviceID).key"))).write(to: bundle)
        return (bundle, certificate)
    }

    func firmware(_ name: String, marker: String) throws -> URL {
        let url = root.appendingPathComponent(name)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Self.daqlink))
        bytes.append(Data("\n\(marker)\n".utf8))
        try bytes.write(to: url)
        return url
    }

    func startCollector(pki collectorPKI: URL? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.daqctl)
        process.arguments = ["collect", "--broker", "localhost:\(broker.port)", "--pki", (collectorPKI ?? pki).path, "--out", collected.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: logFile("collector"))
        try process.run()
        collector = process
    }

    func stopCollector() {
        guard let collector, collector.isRunning else { return }
        kill(collector.processIdentifier, SIGTERM)
        collector.waitUntilExit()
    }

    /// `daqlink boot` from the update directory, replaying the fixture at `speed` while polling.
    /// `wrapper`: a command that execs the device (e.g. `unshare`), `hosts`: the broker's and the
    /// update server's host names in place of 127.0.0.1 and localhost.
    func startDevice(speed: String = "0.25", healthTimeout: Double = 30, extra: [String] = [], environment: [String: String] = [:],
                     wrapper: [String] = [], hosts: (broker: String, updates: String)? = nil) throws {
        deviceRuns += 1
        let process = Process()
        var arguments = runArguments(speed: speed, healthTimeout: healthTimeout)
        if let hosts {
            arguments = arguments.map {
                $0.replacingOccurrences(of: "127.0.0.1:", with: "\(hosts.broker):").replacingOccurrences(of: "https://localhost:", with: "https://\(hosts.updates):")
            }
        }
        let command = [slots.binaryPath(.a), "boot", "--ota-dir", ota.path, "--"] + arguments + extra
        process.executableURL = URL(fileURLWithPath: wrapper.first ?? command[0])
        process.arguments = Array((wrapper + command).dropFirst())
        process.standardOutput = FileHandle.nullDevice
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardError = try FileHandle(forWritingTo: logFile("device-\(deviceRuns)"))
        try process.run()
        device = process
    }

    func runArguments(speed: String, healthTimeout: Double) -> [String] {
        ["--experiment", Self.experiment, "--source", "replay:\(Self.log)", "--speed", speed, "--journal", journal.path,
         "--quiet", "--broker", "127.0.0.1:\(brokerPort ?? broker.port)", "--device", deviceID, "--ca", pki.appendingPathComponent("ca.crt").path,
         "--cert", provisioned.appendingPathComponent("device.crt").path, "--key", provisioned.appendingPathComponent("device.key").path,
         "--ota-url", "https://localhost:\(updatePort ?? nginxPort)/ota/", "--ota-key", release.appendingPathComponent("release.pub").path,
         "--hardware", Self.hardware, "--ota-interval", "1", "--health-timeout", String(healthTimeout), "--drain-timeout", "60",
         "--log-level", "info"]
    }

    func stopDevice() -> Int32 {
        guard let device else { return -1 }
        if device.isRunning { kill(device.processIdentifier, SIGTERM) }
        device.waitUntilExit()
        return device.terminationStatus
    }

    func logFile(_ name: String) throws -> URL {
        let url = root.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        return url
    }

    /// Every device log so far (for failure messages).
    func deviceLogs() -> String {
        (1...max(1, deviceRuns)).map { (try? String(contentsOf: root.appendingPathComponent("device-\($0).log"), encoding: .utf8)) ?? "" }
            .joined(separator: "\n---\n")
    }

    func bootState() -> BootState? { (try? slots.loadBootState()) ?? nil }

    /// The collector's update history of the device: (kind, status, version) per report.
    func history() -> [(kind: String, status: String, version: UInt64, reason: String)] {
        let path = collected.appendingPathComponent("\(deviceID)/ota-history.jsonl")
        guard let text = try? String(contentsOf: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (object["kind"] as? String ?? "", object["status"] as? String ?? "", (object["version"] as? NSNumber)?.uint64Value ?? 0,
                    object["reason"] as? String ?? "")
        }
    }

    /// The device's own status outbox: (kind, status, version) per report, sent or not.
    func outboxReports() -> [(kind: String, status: String, version: UInt64)] {
        let path = ota.appendingPathComponent("status/outbox")
        guard let text = try? String(contentsOf: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (object["kind"] as? String ?? "", object["status"] as? String ?? "", (object["version"] as? NSNumber)?.uint64Value ?? 0)
        }
    }

    func historyContains(_ kind: String, _ status: String, _ version: UInt64) -> Bool {
        history().contains { $0.kind == kind && $0.status == status && $0.version == version }
    }

    /// Polls `condition` every 100 ms for up to `seconds`.
    func wait(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    /// `daqctl verify` of the device's journal against the collector's copy.
    func verify() throws -> ProcessResult {
        try runProcess(Self.daqctl, ["verify", journal.path, collected.appendingPathComponent(deviceID).path])
    }
}

struct RigError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
