// A real mosquitto with mutual TLS 1.3 on a free loopback port, for tests: its PKI is made with the
// built `daqctl pki`, its config with `daqctl broker-config`, and it runs as a child of the test.
//
// Cleanup: call `stop()` in a `defer` (deinit stops it too). As a last resort against a crashed
// test process, mosquitto runs under coreutils `timeout`, which ends it after `lifetimeSeconds`.
//
// Children are started with posix_spawn and an EMPTY signal mask, not with Foundation's Process:
// tests run on libdispatch worker threads, which block SIGTERM, SIGINT, SIGALRM and more, and a
// Process child inherits that mask — mosquitto then ignores SIGTERM, `timeout` never fires and
// `mosquitto_sub -W` never times out (measured here: the suite hung).
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

    public init(name: String, certificate: URL, key: URL) {
        self.name = name
        self.certificate = certificate
        self.key = key
    }
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
    private var process: SpawnedProcess?
    private var runs = 0
    private var clientRuns = 0
    private var brokerConfigArguments: [String]
    /// The PKI `daqctl broker-config` is given (`pkiDirectory` unless a test changes CA).
    private var configurationPKI: URL?

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

    /// Stops mosquitto (SIGTERM, so it saves its persistence database) and waits for it to exit;
    /// after 5 s the whole process group gets SIGKILL.
    public func stop() {
        lock.withLock {
            guard let running = process else { return }
            process = nil
            running.terminate(graceSeconds: 5)
        }
    }

    /// Kills mosquitto with SIGKILL, as a crash or a power cut would: nothing since its last
    /// persistence snapshot survives. `start()` brings it back on the same port.
    public func crash() {
        lock.withLock {
            guard let running = process else { return }
            process = nil
            kill(-running.pid, SIGKILL)
            _ = running.waitForExit()
        }
    }

    /// Stops and starts mosquitto on the same port (it rereads the CRL and its database).
    public func restart() throws {
        stop()
        try start()
    }

    /// Restarts with a configuration for `pki` (nil: its own) and `arguments` for
    /// `daqctl broker-config` (e.g. `--also-trust DIR` during a change of CA).
    public func restart(pki: URL?, configArguments arguments: [String]) throws {
        stop()
        lock.withLock {
            configurationPKI = pki
            brokerConfigArguments = arguments
        }
        try start()
    }

    /// Sends SIGHUP: mosquitto 2.0.11 rereads its configuration, ACL and CRL without dropping
    /// its state. Waits for the "Reloading config" log line. The signal goes to mosquitto itself,
    /// not to the `timeout` that runs it: GNU timeout with --kill-after forwards any signal it gets
    /// and then arms its SIGKILL, so the broker died 5 s after every reload.
    public func reload() throws {
        let reloaded = lock.withLock { () -> Bool in
            guard let running = process,
                  let children = try? String(contentsOfFile: "/proc/\(running.pid)/task/\(running.pid)/children", encoding: .utf8),
                  let broker = children.split(separator: " ").first.flatMap({ Int32($0) }) else { return false }
            kill(broker, SIGHUP)
            return true
        }
        guard reloaded, logContains("Reloading config") else {
            throw MosquittoBrokerError(description: "mosquitto did not reload:\n\(log())")
        }
    }

    /// The current run's log text.
    public func log() -> String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// Waits up to `seconds` for the current run's log to contain `text` (mosquitto may log a
    /// refusal a moment after the client has already seen it).
    public func logContains(_ text: String, within seconds: Double = 3) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if log().contains(text) { return true }
            if Date() >= deadline { return false }
            usleep(20_000)
        }
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
        try runClient(["mosquitto_pub"] + clientArguments(identity) + ["-t", topic, "-m", message, "-q", String(qos)] + extraArguments)
    }

    /// Runs mosquitto_sub as `identity` with `arguments` to completion (add -C/-W/-E so it ends).
    @discardableResult
    public func subscribe(as identity: MQTTClientIdentity?, _ arguments: [String]) throws -> ProcessResult {
        try runClient(["mosquitto_sub"] + clientArguments(identity) + arguments)
    }

    /// Starts mosquitto_sub as `identity` in the background (a live connection while the test
    /// does other things); collect it with `BackgroundClient.finish`.
    public func startSubscriber(as identity: MQTTClientIdentity?, _ arguments: [String]) throws -> BackgroundClient {
        let (out, err) = clientOutputFiles()
        // Line-buffered stdout, so `waitForOutput` sees lines while the client still runs.
        let child = try SpawnedProcess(["stdbuf", "-oL", "mosquitto_sub"] + clientArguments(identity) + arguments,
                                       stdout: out.path, stderr: err.path)
        return BackgroundClient(process: child, stdout: out, stderr: err)
    }

    /// Runs any command (argv[0] looked up in PATH) to completion with a clean signal mask.
    public func runClient(_ argv: [String]) throws -> ProcessResult {
        let (out, err) = clientOutputFiles()
        let child = try SpawnedProcess(argv, stdout: out.path, stderr: err.path)
        let status = child.waitForExit()
        return BackgroundClient.result(status: status, stdout: out, stderr: err)
    }

    private func clientOutputFiles() -> (URL, URL) {
        let number = lock.withLock { () -> Int in clientRuns += 1; return clientRuns }
        return (directory.appendingPathComponent("client-\(number).out"), directory.appendingPathComponent("client-\(number).err"))
    }

    // MARK: - Private

    private func writeConfiguration() throws {
        try daqctl(["broker-config", "--pki", (configurationPKI ?? pkiDirectory).path, "--out", configDirectory.path,
                    "--port", String(port), "--user", "root"] + brokerConfigArguments)
    }

    private func launch() throws {
        runs += 1
        logFile = directory.appendingPathComponent("mosquitto-\(runs).log")
        let child = try SpawnedProcess(["timeout", "--kill-after=5", String(lifetimeSeconds), "mosquitto", "-c",
                                        configDirectory.appendingPathComponent("mosquitto.conf").path],
                                       stdout: logFile.path, stderr: nil)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if log().split(separator: "\n").contains(where: { $0.hasSuffix(" running") }) {
                process = child
                return
            }
            if !child.isRunning { break }
            usleep(20_000)
        }
        child.terminate(graceSeconds: 2)
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

/// A client process running in the background (see `MosquittoBroker.startSubscriber`).
public final class BackgroundClient: @unchecked Sendable {
    // Confinement: SpawnedProcess serialises its own state with a lock.
    private let process: SpawnedProcess
    private let stdout: URL
    private let stderr: URL

    init(process: SpawnedProcess, stdout: URL, stderr: URL) {
        self.process = process
        self.stdout = stdout
        self.stderr = stderr
    }

    deinit { process.terminate(graceSeconds: 1) }

    /// Waits up to `seconds` for the client's stdout so far to contain `text` (e.g. "Subscribed"
    /// with `-d`, to know the subscription is in place before publishing to it).
    public func waitForOutput(containing text: String, within seconds: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let data = try? Data(contentsOf: stdout), String(decoding: data, as: UTF8.self).contains(text) { return true }
            if Date() >= deadline || !process.isRunning { return false }
            usleep(20_000)
        }
    }

    /// Waits up to `timeoutSeconds` for the client to exit on its own (then SIGTERM) and returns its outcome.
    public func finish(timeoutSeconds: Double = 10) -> ProcessResult {
        let status = process.waitForExit(timeoutSeconds: timeoutSeconds) ?? process.terminate(graceSeconds: 1)
        return Self.result(status: status, stdout: stdout, stderr: stderr)
    }

    static func result(status: Int32, stdout: URL, stderr: URL) -> ProcessResult {
        let out = (try? Data(contentsOf: stdout)) ?? Data()
        let err = (try? Data(contentsOf: stderr)) ?? Data()
        return ProcessResult(status: status, stdout: String(decoding: out, as: UTF8.self),
                             stderr: String(decoding: err, as: UTF8.self), stdoutData: out)
    }
}

/// A child started with posix_spawn, an empty signal mask and default signal dispositions, in
/// its own process group; stdin is /dev/null, stdout/stderr go to files.
public final class SpawnedProcess: @unchecked Sendable {
    // Confinement: `lock` guards `exitStatus`, so the child is reaped exactly once.
    public let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?

    public init(_ argv: [String], stdout: String, stderr: String?) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }

        let arguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawnp(&child, argv[0], &actions, &attributes, arguments, environ)
        guard result == 0 else {
            throw MosquittoBrokerError(description: "posix_spawnp \(argv[0]): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    /// True until the child has exited (reaps it when it has).
    public var isRunning: Bool { poll() == nil }

    /// Waits for the child; nil if it is still running after `timeoutSeconds`.
    public func waitForExit(timeoutSeconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            if let status = poll() { return status }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// Waits for the child however long it takes.
    public func waitForExit() -> Int32 {
        while true {
            if let status = poll() { return status }
            usleep(5_000)
        }
    }

    /// SIGTERM to the child, then SIGKILL to its whole process group after `graceSeconds`.
    @discardableResult
    public func terminate(graceSeconds: Double) -> Int32 {
        if let status = poll() { return status }
        kill(pid, SIGTERM)
        if let status = waitForExit(timeoutSeconds: graceSeconds) { return status }
        kill(-pid, SIGKILL)
        return waitForExit()
    }

    private func poll() -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == -1 && errno == ECHILD {
                exitStatus = -1 // already reaped elsewhere: it is gone either way
                return exitStatus
            }
            guard reaped == pid else { return nil }
            // Exit code when it exited, 128 + signal when a signal ended it (as a shell reports it).
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            exitStatus = code
            return code
        }
    }
}
