// The uplink test rig: a real mosquitto with mutual TLS (TestSupport.MosquittoBroker), the TCP
// fault proxy as the device's link, the real collector and the real device agent as processes.
import DAQCore
import FaultInjection
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class UplinkRig: @unchecked Sendable {
    // Confinement: each test owns its rig and drives it from one thread.
    let broker: MosquittoBroker
    let proxy: TCPFaultProxy
    let work: URL
    let deviceID = "ecu-01"
    var collector: Process?
    var collectorWrapped = false
    var device: Process?
    var deviceRuns = 0

    static let daqlink = PackagePaths.executable("daqlink").path
    static let daqctl = PackagePaths.executable("daqctl").path
    static let experiment = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path
    static let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path

    init(queueLimit: Int? = nil) throws {
        broker = try MosquittoBroker(devices: ["ecu-01"], queueLimit: queueLimit)
        proxy = try TCPFaultProxy(targetPort: broker.port)
        work = try PackagePaths.temporaryDirectory("uplink")
    }

    deinit {
        for process in [device, collector].compactMap({ $0 }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        proxy.stop()
        broker.stop()
    }

    var journal: URL { work.appendingPathComponent("device/journal") }
    var collected: URL { work.appendingPathComponent("collected") }

    /// Starts the collector on the broker (or on `port`), and waits until it has subscribed
    /// (unless `subscribed` is false).
    /// `wrapper` runs before daqctl (it must exec daqctl with the arguments that follow it).
    func startCollector(port: Int? = nil, subscribed: Bool = true, extra: [String] = [], wrapper: [String] = []) throws {
        let process = Process()
        let arguments = ["collect", "--broker", "localhost:\(port ?? broker.port)", "--pki", broker.pkiDirectory.path,
                         "--out", collected.path] + extra
        process.executableURL = URL(fileURLWithPath: wrapper.first ?? Self.daqctl)
        process.arguments = wrapper.isEmpty ? arguments : Array(wrapper.dropFirst()) + [Self.daqctl] + arguments
        collectorWrapped = !wrapper.isEmpty
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: logFile("collector"))
        try process.run()
        collector = process
        // Wait until its subscriptions are granted: a batch published before that has no
        // subscriber and is dropped by the broker (the tests that publish by hand need this).
        let deadline = Date().addingTimeInterval(subscribed ? 15 : 0)
        while !read("collector").contains("daqctl collect: subscribed"), process.isRunning, Date() < deadline {
            usleep(20_000)
        }
    }

    func stopCollector(signal: Int32 = SIGTERM) {
        guard let collector, collector.isRunning else { return }
        // Under a wrapper (strace), the signal goes to the collector itself, the wrapper's child.
        let pid = collector.processIdentifier
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8))?
            .split(separator: " ").compactMap { pid_t($0) } ?? []
        kill(collectorWrapped ? children.first ?? pid : pid, signal)
        collector.waitUntilExit()
    }

    /// Starts the device replaying the fixture at `speed` through the proxy.
    /// `host` names the proxy (its IP by default); `wrapper` runs before daqlink (it must exec
    /// daqlink with the arguments that follow it); `environment` is added to the device's.
    /// `port`: the broker's address's port in place of the rig's proxy's.
    func startDevice(speed: String, extra: [String] = [], host: String = "127.0.0.1", port: Int? = nil, wrapper: [String] = [],
                     environment: [String: String] = [:], log: String = UplinkRig.log) throws {
        device = try launchDevice(id: deviceID, journal: journal, speed: speed, extra: extra, host: host, port: port, wrapper: wrapper,
                                  environment: environment, log: log)
    }

    /// Starts a device agent `id` with its own journal; returns its process.
    func launchDevice(id: String, journal: URL, speed: String, extra: [String] = [], host: String = "127.0.0.1", port: Int? = nil,
                      wrapper: [String] = [], environment: [String: String] = [:], log: String = UplinkRig.log) throws -> Process {
        deviceRuns += 1
        let process = Process()
        let arguments = ["run", "--experiment", Self.experiment, "--source", "replay:\(log)", "--speed", speed,
                         "--journal", journal.path, "--quiet", "--broker", "\(host):\(port ?? proxy.listenPort)",
                         "--device", id, "--pki", broker.pkiDirectory.path, "--drain-timeout", "90"] + extra
        process.executableURL = URL(fileURLWithPath: wrapper.first ?? Self.daqlink)
        process.arguments = wrapper.isEmpty ? arguments : Array(wrapper.dropFirst()) + [Self.daqlink] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: logFile("device-\(deviceRuns)"))
        try process.run()
        return process
    }

    /// Pauses `seconds` while the device runs; returns the CPU time (utime + stime, from
    /// /proc/<pid>/stat) it used meanwhile.
    func deviceCPUSeconds(pausing seconds: Double) throws -> Double {
        guard let pid = device?.processIdentifier else { throw DAQError(.io, "no device is running") }
        func cpu() throws -> Double {
            let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            // Fields after the command name (which is in parentheses and may hold spaces).
            guard let end = stat.lastIndex(of: ")") else { throw DAQError(.io, "unreadable /proc/\(pid)/stat") }
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            return (Double(fields[11]) ?? 0) / ticks + (Double(fields[12]) ?? 0) / ticks
        }
        let before = try cpu()
        Self.pause(seconds)
        return try cpu() - before
    }

    func waitForDevice() -> (status: Int32, log: String) {
        device?.waitUntilExit()
        return (device?.terminationStatus ?? -1, read("device-\(deviceRuns)"))
    }

    func killDevice() {
        guard let device, device.isRunning else { return }
        kill(device.processIdentifier, SIGKILL)
        device.waitUntilExit()
    }

    /// `daqctl verify` until the collector holds everything (or `seconds` pass).
    func verify(within seconds: Double = 60, device id: String? = nil, journal: URL? = nil, mdf: URL? = nil) throws -> ProcessResult {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let result = try runProcess(Self.daqctl, ["verify", (journal ?? self.journal).path,
                                                      collected.appendingPathComponent(id ?? deviceID).path]
                                                     + (mdf.map { ["--mdf", $0.path] } ?? []))
            if result.status == 0 || Date() >= deadline { return result }
            usleep(500_000)
        }
    }

    func read(_ name: String) -> String {
        (try? String(contentsOf: work.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    private func logFile(_ name: String) throws -> URL {
        let url = work.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        return url
    }

    /// A candump log of `copies` back-to-back copies of the fixture (each 10 s later than the one
    /// before), in the rig's work directory: a long recording from the short one.
    func repeatedLog(copies: Int) throws -> String {
        let lines = try String(contentsOfFile: Self.log, encoding: .utf8).split(separator: "\n")
        var text = ""
        for copy in 0..<copies {
            for line in lines {
                // "(1763700000.000130) can1 301#…": shift the whole seconds.
                guard let dot = line.firstIndex(of: "."), let seconds = Int(line[line.index(after: line.startIndex)..<dot]) else { continue }
                text += "(\(seconds + 10 * copy)\(line[dot...])\n"
            }
        }
        let url = work.appendingPathComponent("repeated-\(copies).log")
        try text.write(to: url, atomically: false, encoding: .utf8)
        return url.path
    }

    /// Resident memory of a running process, bytes (VmRSS), or nil once it has ended.
    static func residentBytes(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Int(line.split(separator: " ")[1]) else { return nil }
        return kilobytes * 1024
    }

    /// Sleeps on the test thread.
    static func pause(_ seconds: Double) { usleep(useconds_t(seconds * 1e6)) }

    /// Waits up to `seconds` for `condition`; returns whether it held.
    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < deadline else { return false }
            usleep(20_000)
        }
        return true
    }

    /// `daqctl verify` of the device's journal against the collector's copy passes, byte-identical.
    func expectIdentical(_ context: String) throws {
        let verify = try self.verify()
        #expect(verify.status == 0, "\(context): \(verify.stdout)\n--- collector\n\(read("collector"))")
        #expect(verify.stdout.contains("byte-identical: yes"), "\(context)")
    }

    /// The moment (CLOCK_REALTIME ns) of every journal append in a DAQLINK_APPEND_TRACE file, in order.
    static func appendTimes(_ trace: URL) throws -> [Int64] {
        try String(contentsOf: trace, encoding: .utf8).split(separator: "\n").compactMap { line -> Int64? in
            line.split(separator: " ").last.flatMap { Int64($0) }
        }
    }

    /// The longest pause between two consecutive appends, in ns.
    static func longestGap(_ appends: [Int64]) -> Int64 {
        zip(appends, appends.dropFirst()).map { $1 - $0 }.max() ?? 0
    }
}
