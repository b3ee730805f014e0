// A real mosquitto with mutual TLS 1.3 on a free loopback port, for tests: its PKI is made with the
// built `daqctl pki`, its config with `daqctl broker-config`, and it runs as a child of the test.
//
// Cleanup: call `stop()` in a `defer` (deinit stops it too). As a last resort against a crashed
// test process, mosquitto runs under coreutils `timeout`, which ends it after `lifetimeSeconds`.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A client certificate and key issued by a test broker's PKI.
public struct MQTTClientIdentity: Sendable, Hashable {
    /// The certificate CN (device id or collector name) = the MQTT username the broker sees.
    public var name: String
    /// PEM certificate.
    public var certificate: URL
    /// PEM private key.
    public var key: URL
}

/// Errors of the broker harness, with the broker's log attached when it matters.
public struct MosquittoBrokerError: Error, CustomStringConvertible {
    public var description: String
}

/// One mosquitto process and the PKI + configuration it runs with.
/// Confinement: used from one test at a time; `lock` guards the process handle so that deinit,
/// stop() and restart() never race.
public final class MosquittoBroker: @unchecked Sendable {
    /// The temporary directory holding `pki/`, `broker/` and the logs.
    public let directory: URL
    /// The PKI directory (`daqctl pki` layout).
    public var pkiDirectory: URL { directory.appendingPathComponent("pki") }
    /// Where mosquitto.conf, acl and data/ are.
    public var configDirectory: URL { directory.appendingPathComponent("broker") }
    /// The CA certificate clients verify the broker with.
    public var caFile: URL { pkiDirectory.appendingPathComponent("ca.crt") }
    /// The collector's identity.
    public var collector: MQTTClientIdentity {
        MQTTClientIdentity(name: "collector", certificate: pkiDirectory.appendingPathComponent("collector.crt"),
                           key: pkiDirectory.appendingPathComponent("collector.key"))
    }
    /// Host name clients connect to (in the server certificate's SANs).
    public let host = "localhost"
    /// The TLS listener's port (stays the same across restarts).
    public private(set) var port: Int = 0
    /// The log of the current (or last) mosquitto run.
    public private(set) var logFile: URL
    /// Seconds after which `timeout` ends mosquitto even if nobody stops it.
    public let lifetimeSeconds: Int

    private let lock = NSLock()
    private var process: Process?
    private var runs = 0
    private let brokerConfigArguments: [String]

    /// Makes a PKI with `devices`, writes a broker config (`queueLimit` → a deliberately small
    /// queue; `brokerConfigArguments` are passed to `daqctl broker-config`), and starts mosquitto.
    public init(devices: [String] = [], queueLimit: Int? = nil, brokerConfigArguments: [String] = [],
                lifetimeSeconds: Int = 180) throws {
        directory = try PackagePaths.temporaryDirectory("mosquitto")
        logFile = directory.appendingPathComponent("mosquitto-0.log")
        self.lifetimeSeconds = lifetimeSeconds
        self.brokerConfigArguments = brokerConfigArguments + (queueLimit.map { ["--queue-limit", String($0)] } ?? [])
        try daqctl(["pki", "init", "--dir", pkiDirectory.path])
        for device in devices { _ = try issueDevice(device) }
        try start()
    }

    deinit { stop() }

    // MARK: - PKI

    /// Issues a device certificate through `daqctl pki device`.
    @discardableResult
    public func issueDevice(_ id: String) throws -> MQTTClientIdentity {
        try daqctl(["pki", "device", "--dir", pkiDirectory.path, id])
        return device(id)
    }

    /// Revokes a device through `daqctl pki revoke` (the broker sees it after `restart()`).
    public func revokeDevice(_ id: String) throws {
        try daqctl(["pki", "revoke", "--dir", pkiDirectory.path, id])
    }

    /// The identity files of device `id` (issued earlier).
    public func device(_ id: String) -> MQTTClientIdentity {
        let devices = pkiDirectory.appendingPathComponent("devices")
        return MQTTClientIdentity(name: id, certificate: devices.appendingPathComponent("\(id).crt"),
                                  key: devices.appendingPathComponent("\(id).key"))
    }

    // MARK: - Process

    /// Starts mosquitto (on a fresh free port the first time, the same port afterwards) and waits
    /// until it logs that it is running.
    public func start() throws {
        try lock.withLock {
            guard process == nil else { return }
            var attempts = 0
            while true {
                attempts += 1
                let firstRun = port == 0
                if firstRun { port = try Self.freeLoopbackPort() }
                try writeConfiguration()
                do {
                    try launch()
                    return
                } catch is MosquittoBrokerError where firstRun && attempts < 5 && log().contains("Address already in use") {
                    port = 0 // someone took the port between probing and binding: probe again
                }
            }
        }
    }

    /// Stops mosquitto (SIGTERM, so it saves its persistence database) and waits for it to exit.
    public func stop() {
        lock.withLock {
            guard let running = process else { return }
            process = nil
            if running.isRunning {
                kill(running.processIdentifier, SIGTERM) // `timeout` forwards it to mosquitto
            }
            running.waitUntilExit()
        }
    }

    /// Stops and starts mosquitto on the same port (it rereads the CRL and its database).
    public func restart() throws {
        stop()
        try start()
    }

    /// The current run's log text.
    public func log() -> String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    // MARK: - Clients

    /// Connection arguments for mosquitto_pub / mosquitto_sub: MQTT 5 over mTLS as `identity`
    /// (nil = TLS without a client certificate).
    public func clientArguments(_ identity: MQTTClientIdentity?) -> [String] {
        var arguments = ["-h", host, "-p", String(port), "--cafile", caFile.path, "-V", "mqttv5"]
        if let identity { arguments += ["--cert", identity.certificate.path, "--key", identity.key.path] }
        return arguments
    }

    /// Publishes one message with mosquitto_pub (QoS 1 by default) and returns its outcome.
    @discardableResult
    public func publish(as identity: MQTTClientIdentity?, topic: String, message: String, qos: Int = 1,
                        extraArguments: [String] = []) throws -> ProcessResult {
        try runProcess("mosquitto_pub", clientArguments(identity) + ["-t", topic, "-m", message, "-q", String(qos)] + extraArguments)
    }

    /// Runs mosquitto_sub as `identity` with `arguments` (add -C/-W so it ends).
    @discardableResult
    public func subscribe(as identity: MQTTClientIdentity?, _ arguments: [String]) throws -> ProcessResult {
        try runProcess("mosquitto_sub", clientArguments(identity) + arguments)
    }

    // MARK: - Private

    private func writeConfiguration() throws {
        try daqctl(["broker-config", "--pki", pkiDirectory.path, "--out", configDirectory.path,
                    "--port", String(port), "--user", "root"] + brokerConfigArguments)
    }

    private func launch() throws {
        runs += 1
        logFile = directory.appendingPathComponent("mosquitto-\(runs).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: logFile)
        defer { try? logHandle.close() }
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        child.arguments = ["--kill-after=5", String(lifetimeSeconds), "mosquitto", "-c",
                           configDirectory.appendingPathComponent("mosquitto.conf").path]
        child.standardOutput = logHandle
        child.standardError = logHandle
        child.standardInput = FileHandle.nullDevice
        try child.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if log().split(separator: "\n").contains(where: { $0.hasSuffix(" running") }) {
                process = child
                return
            }
            if !child.isRunning { break }
            usleep(20_000)
        }
        if child.isRunning {
            kill(child.processIdentifier, SIGTERM)
            child.waitUntilExit()
        }
        throw MosquittoBrokerError(description: "mosquitto did not start on port \(port):\n\(log())")
    }

    @discardableResult
    private func daqctl(_ arguments: [String]) throws -> ProcessResult {
        let result = try runProcess(PackagePaths.executable("daqctl").path, arguments)
        guard result.status == 0 else {
            throw MosquittoBrokerError(description: "daqctl \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.stderr)\(result.stdout)")
        }
        return result
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it for port 0).
    public static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MosquittoBrokerError(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw MosquittoBrokerError(description: "bind: \(String(cString: strerror(errno)))") }
        var actual = sockaddr_in()
        var actualLength = length
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) }
        }
        return Int(UInt16(bigEndian: actual.sin_port))
    }
}
