// `daqctl demo`: the whole data path on embedded defaults — a PKI, a real mosquitto with mutual
// TLS 1.3, a collector, a device replaying the reference ECU traffic, a link cut in the middle,
// and the device/collector comparison ending in "byte-identical: yes".
import ArgumentParser
import FaultInjection
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole data path locally: PKI, mosquitto (mTLS), collector, device, link cut, verify.",
        discussion: """
            Everything runs on this machine, in a work directory (a new temporary one unless \
            --workdir is given) and is stopped at the end:
              1. daqctl pki: a CA, the broker's and the collector's certificates, device ecu-01's
              2. daqctl broker-config + mosquitto on a free loopback port (TLS 1.3, client certs)
              3. a TCP proxy between the device and the broker (to cut the link)
              4. daqctl collect (durable session) and daqlink run replaying the reference engine
                 ECU log (Fixtures/reference) through the reference experiment (5 ms, 10 ms and
                 crank-synchronous channel groups) into its journal and over MQTT
              5. the link is cut in the middle and restored; the device keeps acquiring into its
                 journal and drains the backlog when the link returns
              6. daqctl verify: channel groups on both sides, SHA-256, byte identity
            Exit status 0 only when the collector's copy is byte-identical to the device's journal.
            """
    )

    @Option(help: "Work directory (default: a new temporary directory).")
    var workdir: String?

    @Option(help: "Directory holding reference.toml, engine.dbc and engine-10s.log.")
    var fixtures: String?

    @Option(help: "Replay speed of the fixture log (10 s of traffic).")
    var speed: Double = 2

    @Option(help: "Seconds after the device starts when the link is cut.")
    var cutAt: Double = 1.5

    @Option(help: "How long the link stays down, in seconds.")
    var cutFor: Double = 2

    func run() throws {
        let demo = try DemoRig(workdir: workdir, fixtures: fixtures)
        defer { demo.stopAll() }
        try demo.run(speed: speed, cutAt: cutAt, cutFor: cutFor)
    }
}

/// The processes and files of one demo run.
final class DemoRig {
    let work: URL
    let fixtures: URL
    let tools: URL
    private var children: [(name: String, process: Process)] = []
    private var proxy: TCPFaultProxy?
    private let started = Date()

    init(workdir: String?, fixtures: String?) throws {
        if let workdir {
            work = URL(fileURLWithPath: workdir)
        } else {
            work = FileManager.default.temporaryDirectory.appendingPathComponent("daqlink-demo-\(getpid())")
        }
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let candidates = [fixtures.map { URL(fileURLWithPath: $0) },
                          URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Fixtures/reference"),
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                              .deletingLastPathComponent().appendingPathComponent("Fixtures/reference")].compactMap { $0 }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("reference.toml").path) }) else {
            throw ValidationError("cannot find Fixtures/reference (give --fixtures DIR)")
        }
        self.fixtures = found
        tools = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .deletingLastPathComponent()
    }

    func say(_ text: String) {
        let elapsed = String(format: "%6.2f", Date().timeIntervalSince(started))
        FileHandle.standardOutput.write(Data("[\(elapsed) s] \(text)\n".utf8))
    }

    func run(speed: Double, cutAt: Double, cutFor: Double) throws {
        say("work directory \(work.path)")
        let pki = work.appendingPathComponent("pki").path
        try tool("daqctl", ["pki", "init", "--dir", pki, "--force"])
        try tool("daqctl", ["pki", "device", "--dir", pki, "ecu-01"])
        say("PKI: CA (EC P-256), broker, collector and device ecu-01 certificates")

        let brokerPort = try freePort()
        let brokerDir = work.appendingPathComponent("broker").path
        var configArguments = ["broker-config", "--pki", pki, "--out", brokerDir, "--port", "\(brokerPort)"]
        if getuid() == 0 { configArguments += ["--user", "root"] }
        try tool("daqctl", configArguments)
        guard let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("mosquitto is not installed (apt-get install mosquitto, or ./vcan-setup.sh --install)")
        }
        try start("mosquitto", mosquitto, ["-c", "\(brokerDir)/mosquitto.conf"], log: "broker.log")
        try waitForPort(brokerPort)
        say("mosquitto on 127.0.0.1:\(brokerPort): TLS 1.3 only, client certificates required, CN = username, per-device ACL")

        let proxy = try TCPFaultProxy(targetPort: brokerPort)
        self.proxy = proxy
        say("link: device → 127.0.0.1:\(proxy.listenPort) (a TCP proxy standing in for the 4G link) → broker")

        let collected = work.appendingPathComponent("collected").path
        try start("collector", tools.appendingPathComponent("daqctl").path,
                  ["collect", "--broker", "127.0.0.1:\(brokerPort)", "--pki", pki, "--out", collected], log: "collector.log")
        say("collector: durable session, subscribed to devices/+/data, output \(collected)")

        let journal = work.appendingPathComponent("device/journal").path
        try? FileManager.default.removeItem(atPath: journal)
        let device = try start("device", tools.appendingPathComponent("daqlink").path, [
            "run", "--experiment", fixtures.appendingPathComponent("reference.toml").path,
            "--source", "replay:" + fixtures.appendingPathComponent("engine-10s.log").path,
            "--speed", "\(speed)", "--journal", journal, "--quiet",
            "--broker", "127.0.0.1:\(proxy.listenPort)", "--device", "ecu-01", "--pki", pki, "--drain-timeout", "60",
        ], log: "device.log")
        say("device ecu-01: replaying 10 s of engine ECU traffic (103,272 frames, 2 buses) at ×\(speed) into \(journal)")

        usleep(useconds_t(cutAt * 1e6))
        proxy.set(.down)
        say("LINK CUT: connections reset, new ones refused; the device keeps acquiring into its journal")
        usleep(useconds_t(cutFor * 1e6))
        proxy.set(.up)
        say("link restored: the device reconnects and drains its backlog from the acknowledged cursor")

        device.waitUntilExit()
        say("device finished (exit status \(device.terminationStatus)):")
        print(indent(try String(contentsOfFile: work.appendingPathComponent("device.log").path, encoding: .utf8)))
        usleep(300_000)
        stop("collector")
        print(indent(try String(contentsOfFile: work.appendingPathComponent("collector.log").path, encoding: .utf8)))
        say("device journal vs collector copy (seed 000, Fig. 4):")
        let verify = try tool("daqctl", ["verify", journal, "\(collected)/ecu-01"], allowFailure: true)
        print(verify.output, terminator: "")
        stopAll()
        if verify.status != 0 { throw ExitCode(1) }
    }

    // MARK: processes

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

    @discardableResult
    func start(_ name: String, _ path: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let logURL = work.appendingPathComponent(log)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        children.append((name, process))
        return process
    }

    func stop(_ name: String) {
        for child in children where child.name == name && child.process.isRunning {
            child.process.terminate()
            child.process.waitUntilExit()
        }
    }

    func stopAll() {
        for child in children.reversed() where child.process.isRunning {
            child.process.terminate()
            child.process.waitUntilExit()
        }
        proxy?.stop()
        proxy = nil
    }

    private func freePort() throws -> Int {
        let proxy = try TCPFaultProxy(targetPort: 9)
        let port = proxy.listenPort
        proxy.stop()
        usleep(100_000)
        return port
    }

    private func waitForPort(_ port: Int) throws {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if result == 0 { return }
            usleep(50_000)
        }
        throw ValidationError("mosquitto did not start listening on \(port); see \(work.path)/broker.log")
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n")
    }
}
