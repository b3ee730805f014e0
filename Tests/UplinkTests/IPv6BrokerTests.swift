// A broker on IPv6 (a cellular APN that hands out IPv6 only): daqlink and the collector take
// `[::1]:PORT`, connect over mutual TLS to a mosquitto listening on ::1 alone, check its
// certificate against its IPv6 address, and the copy is byte-identical.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct IPv6BrokerTests {
    @Test func aDeviceAndTheCollectorReachABrokerOnIPv6() throws {
        let broker = try MosquittoBroker(devices: ["ecu-06"], brokerConfigArguments: ["--bind", "::1"])
        defer { broker.stop() }
        // The broker's certificate names ::1 too (the device checks the address it connects to).
        let server = try runProcess(UplinkRig.daqctl, ["pki", "server", "--dir", broker.pkiDirectory.path, "--server-name", "localhost",
                                                       "--server-ip", "127.0.0.1", "--server-ip", "::1"])
        #expect(server.status == 0 && server.stdout.contains("IP:::1"), "\(server.stdout)\(server.stderr)")
        try broker.restart()
        let address = "[::1]:\(broker.port)"

        let work = try PackagePaths.temporaryDirectory("ipv6")
        let collected = work.appendingPathComponent("collected")
        let collectorLog = work.appendingPathComponent("collector.log")
        FileManager.default.createFile(atPath: collectorLog.path, contents: nil)
        let collector = Process()
        collector.executableURL = URL(fileURLWithPath: UplinkRig.daqctl)
        collector.arguments = ["collect", "--broker", address, "--pki", broker.pkiDirectory.path, "--out", collected.path]
        collector.standardError = try FileHandle(forWritingTo: collectorLog)
        collector.standardOutput = FileHandle.nullDevice
        try collector.run()
        defer { if collector.isRunning { kill(collector.processIdentifier, SIGKILL) } }
        let log = { (try? String(contentsOf: collectorLog, encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(15)
        while !log().contains("subscribed"), collector.isRunning, Date() < deadline { usleep(50_000) }
        #expect(log().contains("daqctl collect: subscribed to devices/+/data on \(address)"), "\(log())")

        let journal = work.appendingPathComponent("journal")
        let device = try runProcess(UplinkRig.daqlink, ["run", "--experiment", UplinkRig.experiment, "--source", "replay:\(UplinkRig.log)",
                                                        "--speed", "max", "--journal", journal.path, "--broker", address,
                                                        "--device", "ecu-06", "--pki", broker.pkiDirectory.path, "--drain-timeout", "30"])
        #expect(device.status == 0 && device.stderr.contains("connected to \(address) as ecu-06")
                && device.stderr.contains("acknowledged up to 3637,"), "\(device.stderr)")
        kill(collector.processIdentifier, SIGTERM)
        collector.waitUntilExit()
        let verify = try runProcess(UplinkRig.daqctl, ["verify", journal.path, collected.appendingPathComponent("ecu-06").path])
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)\(verify.stderr)")
    }
}
