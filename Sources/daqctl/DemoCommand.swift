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
              1. daqctl pki: a CA, the broker's and the collector's certificates,
                 device ecu-01's
              2. daqctl broker-config + mosquitto on a free loopback port (TLS 1.3,
                 client certificates)
              3. a TCP proxy between the device and the broker (to cut the link)
              4. daqctl collect (durable session) and daqlink run replaying the
                 reference engine ECU log (Fixtures/reference) through the reference
                 experiment (5 ms, 10 ms and crank-synchronous channel groups) into
                 its journal and over MQTT
              5. the link is cut in the middle and restored; the device keeps
                 acquiring into its journal and drains the backlog when the link
                 returns
              6. daqctl verify: channel groups on both sides, SHA-256, byte identity

            Exit status 0 only when the collector's copy is byte-identical to the \
            device's journal.
            """
    )

    @Option(help: "Work directory, new or empty (default: a new temporary directory).")
    var workdir: String?

    @Option(help: "Directory holding reference.toml, engine.dbc and engine-10s.log.")
    var fixtures: String?

    @Option(help: "Replay speed of the fixture log (10 s of traffic).")
    var speed: Double = 2

    @Option(help: "Seconds after the device starts when the link is cut.")
    var cutAt: Double = 1.5

    @Option(help: "How long the link stays down, in seconds.")
    var cutFor: Double = 2

    /// Checked before anything starts: a negative or huge cut trapped with the broker, the
    /// collector and daqlink already running, and left them behind.
    func validate() throws {
        guard speed > 0, speed <= 1000 else { throw ValidationError("--speed must be above 0 and at most 1000, not \(speed)") }
        guard cutAt >= 0, cutAt <= 3600 else { throw ValidationError("--cut-at must be 0…3600 seconds, not \(cutAt)") }
        guard cutFor >= 0, cutFor <= 3600 else { throw ValidationError("--cut-for must be 0…3600 seconds, not \(cutFor)") }
    }

    func run() throws {
        let demo = try DemoRig(workdir: workdir, fixtures: fixtures)
        defer { demo.stopAll() }
        try demo.run(speed: speed, cutAt: cutAt, cutFor: cutFor)
    }
}

/// The processes and files of one demo run (on a `LocalFleet`).
final class DemoRig {
    let fleet: LocalFleet
    let fixtures: URL
    private var proxy: TCPFaultProxy?
    private let started = Date()

    var work: URL { fleet.work }

    init(workdir: String?, fixtures: String?) throws {
        let work: URL
        if let workdir {
            work = URL(fileURLWithPath: workdir)
        } else {
            work = FileManager.default.temporaryDirectory.appendingPathComponent("daqlink-demo-\(getpid())")
        }
        fleet = try LocalFleet(work: work)
        self.fixtures = try LocalFleet.fixtureDirectory(fixtures)
    }

    func say(_ text: String) {
        let elapsed = String(format: "%6.2f", Date().timeIntervalSince(started))
        FileHandle.standardOutput.write(Data("[\(elapsed) s] \(text)\n".utf8))
    }

    func run(speed: Double, cutAt: Double, cutFor: Double) throws {
        say("work directory \(work.path)")
        let pki = try fleet.makePKI(devices: ["ecu-01"])
        say("PKI: CA (EC P-256), broker, collector and device ecu-01 certificates")

        let brokerPort = try fleet.startBroker(pki: pki)
        say("mosquitto on 127.0.0.1:\(brokerPort): TLS 1.3 only, client certificates required, CN = username, per-device ACL")

        let proxy = try TCPFaultProxy(targetPort: brokerPort)
        self.proxy = proxy
        say("link: device → 127.0.0.1:\(proxy.listenPort) (a TCP proxy standing in for the 4G link) → broker")

        let collected = work.appendingPathComponent("collected").path
        try fleet.start("collector", fleet.tools.appendingPathComponent("daqctl").path,
                        ["collect", "--broker", "127.0.0.1:\(brokerPort)", "--pki", pki, "--out", collected], log: "collector.log")
        say("collector: durable session, subscribed to devices/+/data, output \(collected)")

        let journal = work.appendingPathComponent("device/journal").path
        let deviceMDF = work.appendingPathComponent("device/mdf").path
        try? FileManager.default.removeItem(atPath: journal)
        try? FileManager.default.removeItem(atPath: deviceMDF)
        let device = try fleet.start("device", fleet.tools.appendingPathComponent("daqlink").path, [
            "run", "--experiment", fixtures.appendingPathComponent("reference.toml").path,
            "--source", "replay:" + fixtures.appendingPathComponent("engine-10s.log").path,
            "--speed", "\(speed)", "--journal", journal, "--quiet", "--mdf", deviceMDF,
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
        say("device finished (exit status \(device.terminationStatus)); its log:")
        show(indent(try String(contentsOfFile: work.appendingPathComponent("device.log").path, encoding: .utf8)))
        usleep(300_000)
        fleet.stop("collector")
        say("collector stopped; its log:")
        show(indent(try String(contentsOfFile: work.appendingPathComponent("collector.log").path, encoding: .utf8)))
        say("device journal vs collector copy: cycles and bytes per channel group (the IASE paper's Fig. 4), SHA-256, MDF files:")
        let verify = try fleet.tool("daqctl", ["verify", journal, "\(collected)/ecu-01", "--mdf", deviceMDF], allowFailure: true)
        show(verify.output, terminator: "")
        stopAll()
        if verify.status != 0 { throw ExitCode(1) }
    }

    func stopAll() {
        fleet.stopAll()
        proxy?.stop()
        proxy = nil
    }

    /// Written at once, like `say`: Swift's buffered print would put a piped log out of order.
    private func show(_ text: String, terminator: String = "\n") {
        FileHandle.standardOutput.write(Data((text + terminator).utf8))
    }

    private func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n")
    }
}
