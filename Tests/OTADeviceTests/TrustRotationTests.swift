// A change of CA over the air, against the real peers: a signed certificate bundle brings the
// device a certificate of the new CA and the new trust anchors; the broker and nginx accept both
// CAs meanwhile (`--also-trust`); then the broker moves to the new CA alone and the device,
// started with its old provisioned CA file, still connects and drains.
import FaultInjection
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct TrustRotationTests {
    @Test func aBundleBringsTheNewCAAndTheDeviceFollowsTheBrokerToIt() throws {
        let rig = try OTARig()
        let newPKI = rig.root.appendingPathComponent("pki-new")
        try rig.ctl(["pki", "init", "--dir", newPKI.path])
        try rig.ctl(["pki", "device", "--dir", newPKI.path, rig.deviceID])

        // While devices move: the broker and nginx show the old CA's certificate and accept
        // clients of both CAs.
        try rig.broker.restart(pki: nil, configArguments: ["--also-trust", newPKI.path])
        try rig.restartNginx(configArguments: ["--also-trust", newPKI.path])
        let bundle = rig.root.appendingPathComponent("rig-01-new-ca.pem")
        let made = try rig.ctl(["pki", "bundle", "--dir", newPKI.path, rig.deviceID, "--out", bundle.path,
                                "--trust", newPKI.appendingPathComponent("ca.crt").path, "--trust", rig.pki.appendingPathComponent("ca.crt").path])
        #expect(made.stdout.contains("as its trust anchors"), "\(made.stdout)")
        try rig.publish(bundle, kind: .certificates, version: 2)
        try rig.startCollector()
        try rig.startDevice(speed: "0.4")
        #expect(rig.wait(60) { rig.historyContains("certificates", "committed", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()

        // In use: the new CA's certificate, and both CAs as trust anchors.
        let current = rig.ota.appendingPathComponent("certificates/current")
        #expect(try Data(contentsOf: current.appendingPathComponent("device.crt"))
                == Data(contentsOf: newPKI.appendingPathComponent("devices/rig-01.crt")))
        let anchors = try String(contentsOf: current.appendingPathComponent("ca.crt"), encoding: .utf8)
        #expect(anchors.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2, "\(anchors)")

        // The broker and nginx move to the new CA alone: their certificates, CRLs, collector. A
        // routine bundle of the new CA (no --trust) comes after: it keeps the anchors in use.
        try rig.broker.restart(pki: newPKI, configArguments: [])
        try rig.restartNginx(pki: newPKI, configArguments: [])
        let plain = rig.root.appendingPathComponent("rig-01-plain.pem")
        try rig.ctl(["pki", "device", "--dir", newPKI.path, rig.deviceID, "--force"])
        try rig.ctl(["pki", "bundle", "--dir", newPKI.path, rig.deviceID, "--out", plain.path])
        try rig.publish(plain, kind: .certificates, version: 3)
        try rig.startCollector(pki: newPKI)
        try rig.startDevice(speed: "0.4")  // still given the old CA file (--ca): the bundle's anchors are used
        // Fetched from the new nginx with the anchors, and committed over the new broker.
        #expect(rig.wait(60) { rig.historyContains("certificates", "committed", 3) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let second = (try? String(contentsOf: rig.root.appendingPathComponent("device-2.log"), encoding: .utf8)) ?? ""
        #expect(!second.contains("ALARM") && second.contains("0 links lost"), "\(second)")
        #expect(rig.broker.log().contains("as rig-01"), "the device connected to the new broker: \(rig.broker.log())")
        let kept = try String(contentsOf: current.appendingPathComponent("ca.crt"), encoding: .utf8)
        #expect(kept == anchors, "a bundle without CA certificates keeps the anchors in use")
        #expect(try Data(contentsOf: current.appendingPathComponent("device.crt"))
                == Data(contentsOf: newPKI.appendingPathComponent("devices/rig-01.crt")))
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

        // What the bundles were for: the old credentials no longer get in; the current ones do.
        func publish(certificate: URL, key: URL) throws -> ProcessResult {
            try rig.broker.runClient(["mosquitto_pub", "-h", "localhost", "-p", String(rig.broker.port),
                                      "--cafile", newPKI.appendingPathComponent("ca.crt").path, "--cert", certificate.path, "--key", key.path,
                                      "-V", "mqttv5", "-q", "1", "-t", "devices/rig-01/probe", "-m", "x"])
        }
        let old = try publish(certificate: rig.provisioned.appendingPathComponent("device.crt"), key: rig.provisioned.appendingPathComponent("device.key"))
        #expect(old.status != 0, "\(old.stdout)\(old.stderr)")
        let now = try publish(certificate: current.appendingPathComponent("device.crt"), key: current.appendingPathComponent("device.key"))
        #expect(now.status == 0, "\(now.stdout)\(now.stderr)")
    }

    /// A change of CA where the broker was told to accept the new CA and nginx was not: the
    /// broker takes the bundle, the update server refuses it. Before, the bundle was committed on
    /// the broker's word alone and the device never reached the update server again (every poll
    /// HTTP 400). Now the update server's word is asked before the commit: it refuses the new
    /// certificate and takes the one in use, so the bundle is rolled back, and polls go on.
    @Test func aBundleTheUpdateServerRefusesIsRolledBackThoughTheBrokerTakesIt() throws {
        let rig = try OTARig()
        let newPKI = rig.root.appendingPathComponent("pki-new")
        try rig.ctl(["pki", "init", "--dir", newPKI.path])
        try rig.ctl(["pki", "device", "--dir", newPKI.path, rig.deviceID])
        try rig.broker.restart(pki: nil, configArguments: ["--also-trust", newPKI.path])
        let bundle = rig.root.appendingPathComponent("rig-01-new-ca.pem")
        try rig.ctl(["pki", "bundle", "--dir", newPKI.path, rig.deviceID, "--out", bundle.path,
                     "--trust", newPKI.appendingPathComponent("ca.crt").path, "--trust", rig.pki.appendingPathComponent("ca.crt").path])
        try rig.publish(bundle, kind: .certificates, version: 2)
        try rig.startCollector()
        try rig.startDevice(speed: "0.4")
        #expect(rig.wait(60) { rig.historyContains("certificates", "rolled-back", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        // Polls go on with the certificate in use: an experiment published now is applied.
        try rig.publish(try rig.slowExperiment(version: 2), kind: .experiment, version: 2)
        #expect(rig.wait(60) { rig.historyContains("experiment", "installed", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let log = rig.deviceLogs()
        #expect(log.contains("the update server refuses the new certificate (") && log.contains("and takes the one in use: back to the one in use"), "\(log)")
        #expect(!rig.historyContains("certificates", "committed", 2), "\(rig.history())")
        #expect(rig.history().filter { $0.kind == "certificates" && $0.status == "installed" }.count == 1, "\(rig.history())")
        #expect(!FileManager.default.fileExists(atPath: rig.ota.appendingPathComponent("certificates/current").path))
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    /// The update server's word is waited for, not guessed: a bundle the broker takes stays
    /// pending (in use on the broker link) while the update server gives no answer (out of
    /// reach), and while it refuses the new certificate and the one in use alike (the server's
    /// fault: here it shows a certificate of a CA the device does not trust); each poll asks
    /// again, and once the server is right it is committed. Neither case rolls it back or commits
    /// it early. (The broker is out of reach while the bundle is installed, so that its first
    /// connection comes once the update server is out of reach too.)
    @Test func aBundleWaitsForAnUpdateServerThatIsDownOrAtFault() throws {
        let rig = try OTARig()
        let newPKI = rig.root.appendingPathComponent("pki-new"), otherPKI = rig.root.appendingPathComponent("pki-other")
        for pki in [newPKI, otherPKI] {
            try rig.ctl(["pki", "init", "--dir", pki.path])
            try rig.ctl(["pki", "device", "--dir", pki.path, rig.deviceID])
        }
        try rig.broker.restart(pki: nil, configArguments: ["--also-trust", newPKI.path])
        try rig.restartNginx(configArguments: ["--also-trust", newPKI.path])
        let bundle = rig.root.appendingPathComponent("rig-01-new-ca.pem")
        try rig.ctl(["pki", "bundle", "--dir", newPKI.path, rig.deviceID, "--out", bundle.path,
                     "--trust", newPKI.appendingPathComponent("ca.crt").path, "--trust", rig.pki.appendingPathComponent("ca.crt").path])
        try rig.startCollector()
        // The device reaches the broker and the update server through proxies (nginx restarts
        // elsewhere behind its proxy).
        let brokerProxy = try TCPFaultProxy(targetPort: rig.broker.port), updateProxy = try TCPFaultProxy(targetPort: rig.nginxPort)
        defer { brokerProxy.stop(); updateProxy.stop() }
        rig.brokerPort = brokerProxy.listenPort
        rig.updatePort = updateProxy.listenPort
        try rig.startDevice(speed: "0.2")  // 50 s of replay: the steps below take 4 s alone
        let log = rig.root.appendingPathComponent("device-\(rig.runs).log")
        func text() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        #expect(rig.wait(60) { text().contains("as rig-01") }, "\(text())")

        // The bundle comes while the broker is out of reach: installed, it cannot connect yet.
        brokerProxy.set(.down)
        try rig.publish(bundle, kind: .certificates, version: 2)
        #expect(rig.wait(60) { text().contains("certificates 2 downloaded and verified") }, "\(text())")
        // 1. The update server out of reach, the broker back: connected with the bundle, no
        // answer from the update server, it stays pending.
        updateProxy.set(.down)
        brokerProxy.set(.up)
        #expect(rig.wait(60) { text().contains("the update server did not answer the check of the new certificate (bundle 2") }, "\(text())")
        // 2. Back, but showing a certificate the device does not trust: both refused, still pending.
        try rig.restartNginx(pki: otherPKI, configArguments: [])
        updateProxy.retarget(port: rig.nginxPort)
        updateProxy.set(.up)
        #expect(rig.wait(60) { text().contains("the update server refuses the new certificate (bundle 2") && text().contains("and the one in use (") },
                "\(text())")
        #expect(!rig.historyContains("certificates", "committed", 2) && !rig.historyContains("certificates", "rolled-back", 2), "\(rig.history())")
        // 3. Put right: the next poll's check takes it, and it is committed.
        try rig.restartNginx(configArguments: ["--also-trust", newPKI.path])
        updateProxy.retarget(port: rig.nginxPort)
        #expect(rig.wait(60) { rig.historyContains("certificates", "committed", 2) }, "\(rig.history())\n\(text())")
        #expect(rig.wait(120) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(text())")
        rig.stopCollector()
        #expect(!rig.historyContains("certificates", "rolled-back", 2), "\(rig.history())")
        let current = rig.ota.appendingPathComponent("certificates/current")
        #expect(try Data(contentsOf: current.appendingPathComponent("device.crt"))
                == Data(contentsOf: newPKI.appendingPathComponent("devices/rig-01.crt")))
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test func pkiBundleRefusesTrustThatDoesNotVouchForTheDevice() throws {
        let root = try PackagePaths.temporaryDirectory("pki-bundle")
        let daqctl = OTARig.daqctl
        for name in ["old", "new"] {
            #expect(try runProcess(daqctl, ["pki", "init", "--dir", root.appendingPathComponent(name).path]).status == 0)
            #expect(try runProcess(daqctl, ["pki", "device", "--dir", root.appendingPathComponent(name).path, "rig-01"]).status == 0)
        }
        let out = root.appendingPathComponent("bundle.pem").path
        // The new PKI's device with only the old CA as trust: the device would refuse it.
        let wrong = try runProcess(daqctl, ["pki", "bundle", "--dir", root.appendingPathComponent("new").path, "rig-01", "--out", out,
                                            "--trust", root.appendingPathComponent("old/ca.crt").path])
        #expect(wrong.status == 1 && wrong.stderr.contains("does not verify against the 1 CA certificate(s) it carries"), "\(wrong.stderr)")
        // A device certificate given as trust.
        let leaf = try runProcess(daqctl, ["pki", "bundle", "--dir", root.appendingPathComponent("new").path, "rig-01", "--out", out,
                                           "--trust", root.appendingPathComponent("old/devices/rig-01.crt").path])
        #expect(leaf.status == 1 && leaf.stderr.contains("one device certificate (and CA certificates), not 2"), "\(leaf.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        // Without --trust: certificate and key, 0600.
        let plain = try runProcess(daqctl, ["pki", "bundle", "--dir", root.appendingPathComponent("new").path, "rig-01", "--out", out])
        #expect(plain.status == 0, "\(plain.stderr)")
        let mode = (try FileManager.default.attributesOfItem(atPath: out)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
    }
}
