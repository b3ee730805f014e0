// A local fleet in one work directory, shared by `daqctl demo` and `daqctl bench uplink`: our own
// tools run to completion, child processes (mosquitto, collector, device) started with a log file
// each and stopped at the end, a fresh PKI, and a mosquitto broker with mutual TLS 1.3.
import ArgumentParser
import FaultInjection
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The processes and files of one local run.
final class LocalFleet {
    let work: URL
    /// The directory holding this executable and its siblings (daqctl, daqlink).
    let tools: URL
    private(set) var children: [(name: String, process: Process)] = []

    /// `work` must be new or empty: a fleet left there by an earlier run (its PKI, its journals,
    /// its collector's copies) would be mixed into this one's.
    init(work: URL) throws {
        self.work = work
        if let left = try? FileManager.default.contentsOfDirectory(atPath: work.path), !left.isEmpty {
            throw ValidationError("""
                work directory \(work.path) is not empty (\(left.count) entries, left by an earlier run?): \
                give a new or empty directory, or remove this one
                """)
        }
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        // A child inherits the starting thread's signal mask. Started from a libdispatch worker
        // (a test), that mask blocks SIGTERM, and mosquitto would then never stop: unblock first.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        tools = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .deletingLastPathComponent()
    }

    /// `--fixtures DIR`, else Fixtures/reference under the current directory, else next to the sources.
    static func fixtureDirectory(_ given: String?) throws -> URL {
        let candidates = [given.map { URL(fileURLWithPath: $0) },
                          URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Fixtures/reference"),
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                              .deletingLastPathComponent().appendingPathComponent("Fixtures/reference")].compactMap { $0 }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("reference.toml").path) }) else {
            throw ValidationError("cannot find Fixtures/reference (give --fixtures DIR)")
        }
        return found
    }

    // MARK: PKI and broker

    /// `daqctl pki init` in `<work>/pki` and one device certificate per id; returns the PKI directory.
    func makePKI(devices: [String]) throws -> String {
        let pki = work.appendingPathComponent("pki").path
        try tool("daqctl", ["pki", "init", "--dir", pki, "--force"])
        for device in devices { try tool("daqctl", ["pki", "device", "--dir", pki, device]) }
        return pki
    }

    /// Writes the broker configuration for `pki` (TLS 1.3, client certificates, per-device ACL) in
    /// `<work>/broker`, starts mosquitto on a free loopback port and waits until it listens.
    func startBroker(pki: String) throws -> Int {
        let brokerPort = try LoopbackTCP.freePort()
        let brokerDir = work.appendingPathComponent("broker").path
        var configArguments = ["broker-config", "--pki", pki, "--out", brokerDir, "--port", "\(brokerPort)"]
        // mosquitto started as root drops to user mosquitto and then cannot read root's 0600 keys.
        if getuid() == 0 { configArguments += ["--user", "root"] }
        try tool("daqctl", configArguments)
        guard let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("mosquitto is not installed (apt-get install mosquitto, or ./vcan-setup.sh --install)")
        }
        try start("mosquitto", mosquitto, ["-c", "\(brokerDir)/mosquitto.conf"], log: "broker.log")
        try waitForPort(brokerPort)
        return brokerPort
    }

    // MARK: processes

    /// Runs one of our tools (or any executable next to daqctl) to completion.
    @discardableResult
    func tool(_ name: String, _ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = tools.appendingPathComponent(name)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 && !allowFailure {
            throw ValidationError("\(name) \(arguments.joined(separator: " ")) failed:\n\(output)")
        }
        return (process.terminationStatus, output)
    }

    /// Starts a child with its standard output and error in `<work>/<log>`; `stopAll` ends it.
    @discardableResult
    func start(_ name: String, _ path: String, _ arguments: [String], log: String,
               environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let logURL = work.appendingPathComponent(log)
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        children.append((name, process))
        LocalFleetCleanup.register(process.processIdentifier)
        return process
    }

    /// Waits for a child to exit; after `timeout` seconds it is terminated and false is returned.
    func wait(_ process: Process, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        let finished = !process.isRunning
        if finished {
            process.waitUntilExit()
            LocalFleetCleanup.forget(process.processIdentifier)
        } else {
            end(process)
        }
        return finished
    }

    /// The pid of the running child started as `name`.
    func pid(of name: String) -> pid_t? {
        children.first { $0.name == name && $0.process.isRunning }?.process.processIdentifier
    }

    func stop(_ name: String) {
        for child in children where child.name == name && child.process.isRunning { end(child.process) }
    }

    func stopAll() {
        for child in children.reversed() where child.process.isRunning { end(child.process) }
    }

    /// SIGTERM, then SIGKILL when the child has not exited within 5 s.
    private func end(_ process: Process) {
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        LocalFleetCleanup.forget(process.processIdentifier)
    }

    /// The contents of a child's log file ("" when missing).
    func log(_ name: String) -> String {
        (try? String(contentsOfFile: work.appendingPathComponent(name).path, encoding: .utf8)) ?? ""
    }

    /// Waits until something listens on TCP `port`, read from /proc/net/tcp: a probe connection
    /// would be a client that closes mid-handshake, which mosquitto logs as a TLS error.
    func waitForPort(_ port: Int) throws {
        let local = ":" + String(format: "%04X", port)
        for _ in 0..<100 {
            let table = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
            let listening = table.split(separator: "\n").contains { line in
                let fields = line.split(separator: " ")
                return fields.count > 3 && fields[1].hasSuffix(local) && fields[3] == "0A"  // TCP_LISTEN
            }
            if listening { return }
            usleep(50_000)
        }
        throw ValidationError("mosquitto did not start listening on \(port); see \(work.path)/broker.log")
    }
}

/// Children are also ended when daqctl itself is interrupted (SIGINT/SIGTERM) once a command asks
/// for it with `installSignalHandlers()`; otherwise `stopAll` (in a defer) ends them.
enum LocalFleetCleanup {
    // Written on the main thread before each child starts; read by the signal handler.
    nonisolated(unsafe) private static var pids: [pid_t] = []

    static func register(_ pid: Int32) { pids.append(pid) }

    /// A child that has exited (its pid may be reused by the system).
    static func forget(_ pid: Int32) { pids.removeAll { $0 == pid } }

    static func installSignalHandlers() {
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number) { received in
                for pid in LocalFleetCleanup.pids { kill(pid, SIGTERM) }
                _exit(128 + received)
            }
        }
    }
}
