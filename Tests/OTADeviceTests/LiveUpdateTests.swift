// Experiments and certificates over the air, without a reboot: a new experiment is applied at a
// clean record boundary (a new layout entry starts a new measurement in the same journal stream);
// a new device certificate is used for the next connection and promoted only once it connected.
import FaultInjection
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct LiveUpdateTests {
    @Test func anExperimentAndACertificateBundleAreAppliedWithoutAReboot() throws {
        let rig = try OTARig()
        try rig.startCollector()
        try rig.publish(try rig.slowExperiment(version: 2), kind: .experiment, version: 2)
        let (bundle, newCertificate) = try rig.newCertificateBundle(version: 2)
        try rig.publish(bundle, kind: .certificates, version: 2)
        try rig.startDevice(speed: "1")

        let done = rig.wait(60) {
            rig.historyContains("experiment", "installed", 2) && rig.historyContains("certificates", "committed", 2)
        }
        #expect(done, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(60) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()

        // No reboot happened; the new experiment's group is in the same run's summary.
        let log = rig.deviceLogs()
        #expect(!log.contains("starting slot b") && log.components(separatedBy: "daqlink boot: starting slot").count == 2, "\(log)")
        #expect(log.contains("applied experiment") && log.contains("group \"Slow 100ms\""), "\(log)")
        // The reconnect to use the new certificate is daqlink's own doing: no link lost.
        #expect(log.contains("reconnecting to use new credentials") && !log.contains("lost: reconnecting with new credentials")
                && log.contains("0 links lost"), "\(log)")
        // The credentials in use are the new ones; the old files are untouched.
        let current = rig.ota.appendingPathComponent("certificates/current/device.crt")
        #expect(try Data(contentsOf: current) == newCertificate)
        #expect(FileManager.default.fileExists(atPath: rig.provisioned.appendingPathComponent("device.crt").path))
        #expect(try rig.slots.versions(of: .experiment) == ArtifactVersions(installed: 2, floor: 0, accepted: 2))
        #expect(try rig.slots.versions(of: .certificates) == ArtifactVersions(installed: 2, floor: 0, accepted: 2))
        // The stream, with both measurements, reached the collector byte for byte.
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("Slow 100ms") && verify.stdout.contains("Time 5ms"), "\(verify.stdout)")

        // The provisioned files no longer work (here: another device's; in the field: expired) but
        // are no longer in use: no alarm at start (it checked them, not the installed bundle).
        try rig.ctl(["pki", "device", "--dir", rig.pki.path, "rig-99"])
        for suffix in ["crt", "key"] {
            let target = rig.provisioned.appendingPathComponent("device.\(suffix)")
            try FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(at: rig.pki.appendingPathComponent("devices/rig-99.\(suffix)"), to: target)
        }
        // After a restart the installed experiment is the one that runs.
        try rig.startCollector()
        try rig.startDevice(speed: "max")
        #expect(rig.wait(60) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0)
        let second = (try? String(contentsOf: rig.root.appendingPathComponent("device-2.log"), encoding: .utf8)) ?? ""
        #expect(second.contains("group \"Slow 100ms\"") && !second.contains("group \"Time 5ms\""), "\(second)")
        #expect(!second.contains("ALARM: uplink credentials"), "\(second)")
    }

    @Test func aBundleForAnotherDeviceOrAnInvalidExperimentIsRefusedAndNothingChanges() throws {
        let rig = try OTARig()
        try rig.startCollector()
        let broken = rig.root.appendingPathComponent("broken-2.toml")
        try Data("name = \"broken\"\n[[dbc]]\nfile = \"\(OTARig.dbc)\"\n[[group]]\nname = \"x\"\nraster_ms = \"fast\"\nchannels = []\n".utf8).write(to: broken)
        try rig.publish(broken, kind: .experiment, version: 2)
        try rig.ctl(["pki", "device", "--dir", rig.pki.path, "rig-99"])
        let bundle = rig.root.appendingPathComponent("rig-99.pem")
        try (Data(contentsOf: rig.pki.appendingPathComponent("devices/rig-99.crt"))
             + Data(contentsOf: rig.pki.appendingPathComponent("devices/rig-99.key"))).write(to: bundle)
        try rig.publish(bundle, kind: .certificates, version: 2)
        try rig.startDevice(speed: "1")

        let refused = rig.wait(60) {
            rig.historyContains("experiment", "download-failed", 2) && rig.historyContains("certificates", "download-failed", 2)
        }
        #expect(refused, "\(rig.history())\n\(rig.deviceLogs())")
        let reasons = rig.history().map(\.reason).joined(separator: "\n")
        #expect(reasons.contains("invalid-experiment") && reasons.contains("raster_ms"), "names the field: \(reasons)")
        #expect(reasons.contains("invalid-certificate") && reasons.contains("rig-99"), "\(reasons)")
        #expect(rig.wait(60) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        // Tried once each, although the device polled every second for ten.
        #expect(rig.history().filter { $0.status == "downloading" }.count == 2, "\(rig.history())")
        #expect(try rig.slots.versions(of: .experiment).installed == 0)
        #expect(try rig.slots.installedExperiment() == nil)
        #expect(!FileManager.default.fileExists(atPath: rig.ota.appendingPathComponent("certificates/current").path))
        #expect(!FileManager.default.fileExists(atPath: rig.ota.appendingPathComponent("certificates/pending").path))
        #expect(try rig.verify().status == 0)
    }

    /// A bundle the device accepts (its id, its CA) but the broker refuses (revoked): rolled back
    /// after its attempts, once. Before, the next poll took the accepted version for an unfinished
    /// download, found it complete and installed it again, cutting the working link every few
    /// seconds for as long as the device ran. With the broker given by name too (its connect runs
    /// off the loop, and a refusal during the connect call was not counted there).
    @Test(arguments: ["127.0.0.1", "localhost"])
    func aBundleTheBrokerRefusesIsRolledBackOnceAndNotInstalledAgain(broker: String) throws {
        let rig = try OTARig()
        try rig.startCollector()
        try rig.ctl(["pki", "device", "--dir", rig.pki.path, rig.deviceID, "--force"])
        let bundle = rig.root.appendingPathComponent("rig-01-revoked.pem")
        try (Data(contentsOf: rig.pki.appendingPathComponent("devices/rig-01.crt"))
             + Data(contentsOf: rig.pki.appendingPathComponent("devices/rig-01.key"))).write(to: bundle)
        // Revoke every rig-01 certificate so far (the provisioned one and the bundle's), then
        // provision the device with a fresh one the broker accepts.
        try rig.ctl(["pki", "revoke", "--dir", rig.pki.path, rig.deviceID])
        try rig.ctl(["pki", "device", "--dir", rig.pki.path, rig.deviceID])
        for suffix in ["crt", "key"] {
            let target = rig.provisioned.appendingPathComponent("device.\(suffix)")
            try FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(at: rig.pki.appendingPathComponent("devices/rig-01.\(suffix)"), to: target)
        }
        try rig.broker.reload()
        try rig.publish(bundle, kind: .certificates, version: 2)
        try rig.startDevice(speed: "0.4", hosts: (broker: broker, updates: "localhost"))

        #expect(rig.wait(60) { rig.historyContains("certificates", "rolled-back", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        usleep(12_000_000)  // a dozen polls
        let installs = rig.history().filter { $0.kind == "certificates" && $0.status == "installed" }
        #expect(installs.count == 1, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(try rig.slots.failedVersion(.certificates) == 2)
        #expect(rig.wait(60) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        #expect(try rig.verify().status == 0)
    }

    /// A broker that refuses every connection for a few seconds (a restart, as `pki revoke`
    /// advises), or for half a minute, while a new bundle waits for its first connection: not
    /// rolled back. Three quick failures rolled it back, and marked its version failed, for good;
    /// then (5 s passed, 25 s failed) three spread over 10 s did, whatever the broker did to the
    /// certificate in use.
    @Test(arguments: [5, 25])
    func aBrokerDownDoesNotRollAPendingBundleBack(seconds: Int) throws {
        let rig = try OTARig()
        let proxy = try TCPFaultProxy(targetPort: rig.broker.port)
        defer { proxy.stop() }
        rig.brokerPort = proxy.listenPort
        try rig.startCollector()
        let (bundle, newCertificate) = try rig.newCertificateBundle(version: 2)
        try rig.publish(bundle, kind: .certificates, version: 2)
        proxy.set(.down)  // every connection closed at once, after its TCP connect
        try rig.startDevice(speed: "0.4")
        #expect(rig.wait(30) { rig.deviceLogs().contains("certificates 2 downloaded and verified") }, "\(rig.deviceLogs())")
        usleep(UInt32(seconds) * 1_000_000)
        proxy.set(.up)
        #expect(rig.wait(90) { rig.historyContains("certificates", "committed", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        #expect(!rig.history().contains { $0.status == "rolled-back" }, "\(rig.history())")
        #expect(try Data(contentsOf: rig.ota.appendingPathComponent("certificates/current/device.crt")) == newCertificate)
        #expect(try rig.verify().status == 0)
        if seconds > 20 {
            // The failures ran up to a check, and the certificate in use, refused too, told the broker's fault.
            let log = rig.deviceLogs()
            #expect(log.contains("trying the certificate in use") && log.contains("the broker refused the certificate in use too"), "\(log)")
        }
    }

    /// A certificate bundle installed while the uplink's attempt is still looking up the broker's
    /// name is used by the next attempt. The attempt under way was made with the credentials
    /// before: it connected with them when its lookup came back, and the bundle waited for the
    /// next lost link (`reconnect()` did nothing during a lookup). The device runs in its own mount
    /// namespace (`privateResolver`) whose nameserver holds the first lookup until the bundle is
    /// installed (at most 4 s: within the 5 s connect timeout), then answers at once; the update
    /// server is given by address, so only the broker's name is looked up.
    @Test func aBundleInstalledDuringTheBrokersNameLookupIsUsedByTheNextAttempt() throws {
        let rig = try OTARig()
        try rig.startCollector()
        let (bundle, newCertificate) = try rig.newCertificateBundle(version: 2)
        try rig.publish(bundle, kind: .certificates, version: 2)

        let installed = rig.root.appendingPathComponent("installed")
        let nameserver = Process()
        nameserver.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // The first lookup is held until the bundle is installed, 20 s at most: within the
        // resolver's timeout (25 s) and the device's connect timeout (30 s), so the lookup under
        // way when the bundle comes is the first (a 4 s hold, within the default 5 s connect
        // timeout, needed the install within 4 s).
        nameserver.arguments = ["python3", "-u", "-c", Self.holdingNameserver, "127.0.0.10", "20", installed.path]
        let ready = Pipe()
        nameserver.standardOutput = ready
        try nameserver.run()
        // SIGKILL: python does not handle SIGTERM, and the test process's ignored SIGTERM is inherited.
        defer { kill(nameserver.processIdentifier, SIGKILL); nameserver.waitUntilExit() }
        let line = String(decoding: ready.fileHandleForReading.availableData, as: UTF8.self)
        try #require(line.hasPrefix("ready"), "the nameserver did not start (binding 127.0.0.10:53 needs root, and nothing else may hold it): \(line)")

        let resolver = try privateResolver(in: rig.root, nameserver: "127.0.0.10", timeout: 25)
        try rig.startDevice(speed: "0.4", extra: ["--connect-timeout", "30"], wrapper: resolver.wrapper,
                            hosts: (broker: "localhost", updates: "127.0.0.1"))
        // The report is appended before the uplink is told (in the same turn of its loop).
        #expect(rig.wait(30) { rig.outboxReports().contains { $0.kind == "certificates" && $0.status == "installed" }
                               || rig.deviceLogs().contains("connected to localhost") }, "\(rig.deviceLogs())")
        FileManager.default.createFile(atPath: installed.path, contents: nil)
        #expect(rig.wait(60) { rig.historyContains("certificates", "committed", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let log = rig.deviceLogs()
        #expect(log.contains("connecting with the changed credentials once the name lookup under way is back"), "\(log)")
        // The bundle's attempt was the first to connect: none with the old credentials before it.
        #expect(log.components(separatedBy: "connected to localhost").count == 2, "\(log)")
        #expect(try Data(contentsOf: rig.ota.appendingPathComponent("certificates/current/device.crt")) == newCertificate)
    }

    /// A nameserver on ADDRESS:53 that answers every A query with 127.0.0.1, and every other
    /// query with no record. A query that comes before the file SIGNAL exists is held until it
    /// does, HOLD seconds at most (each in a thread of its own: the resolver asks for A and AAAA
    /// at once). Prints "ready" once bound.
    static let holdingNameserver = """
    import os, socket, struct, sys, threading, time
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((sys.argv[1], 53))
    hold, signal = float(sys.argv[2]), sys.argv[3]
    def answer(query, client):
        until = time.time() + hold
        while not os.path.exists(signal) and time.time() < until:
            time.sleep(0.02)
        end = 12
        while query[end] != 0:
            end += query[end] + 1
        kind = struct.unpack(">H", query[end + 1:end + 3])[0]
        question = query[12:end + 5]
        record = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1") if kind == 1 else b""
        header = query[:2] + b"\\x81\\x80" + struct.pack(">HHHH", 1, 1 if record else 0, 0, 0)
        server.sendto(header + question + record, client)
    print("ready", flush=True)
    while True:
        query, client = server.recvfrom(512)
        threading.Thread(target=answer, args=(query, client), daemon=True).start()
    """
}
