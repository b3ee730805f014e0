// Certificate renewal against the real peers: a device whose certificate has expired is refused
// by mosquitto and by the mTLS nginx; it fetches its renewal (`daqctl pki renew --publish`) from
// nginx's renewal listener without a client certificate, connects with it and drains. One near its
// end renews ahead; a renewal the broker refuses is rolled back once and not tried again.
import Foundation
import OTA
import OTADevice
@testable import PKI
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CertificateRenewalTests {
    /// The device's provisioned certificate replaced by one for the same key, valid `period`.
    private func provision(_ rig: OTARig, period: (Int, Int)) throws {
        let authority = try CertificateAuthority(opening: PKILayout(directory: rig.pki.path))
        let issued = try authority.renewDevice(rig.deviceID, validityDays: 1, period: period)
        let target = rig.provisioned.appendingPathComponent("device.crt")
        try FileManager.default.removeItem(at: target)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: issued.certificatePath), to: target)
    }

    /// The name the device's renewal is published under (its public key's SHA-256).
    private func renewalName(_ rig: OTARig) throws -> String {
        try DeviceCredentialBundle.renewalName(certificatePath: rig.provisioned.appendingPathComponent("device.crt").path)
    }

    private func renewalArguments(_ rig: OTARig) -> [String] {
        ["--ota-renewal-url", "https://localhost:\(rig.renewalPort)/renewal/"]
    }

    private var now: Int { Int(Date().timeIntervalSince1970) }

    @Test func aDeviceWhoseCertificateExpiredFetchesItsRenewalConnectsAndDrains() throws {
        let rig = try OTARig()
        try provision(rig, period: (now - 30 * 86_400, now - 86_400))
        try rig.startCollector()
        try rig.startDevice(speed: "0.4", extra: renewalArguments(rig))

        // Refused by the broker, and nothing published yet: said once, and no mTLS polls.
        let name = try renewalName(rig)
        #expect(rig.wait(30) { rig.deviceLogs().contains("no renewed certificate is published at https://localhost:\(rig.renewalPort)/renewal/\(name).crt yet") },
                "\(rig.deviceLogs())")
        var log = rig.deviceLogs()
        #expect(log.contains("ALARM: the device certificate") && log.contains("expired on"), "\(log)")
        #expect(log.contains("the certificate in use has expired: updates are not asked for until it is renewed"), "\(log)")
        #expect(!log.contains("poll firmware"), "no mTLS poll nginx would refuse: \(log)")

        // The operator renews it; the device takes it at its next poll.
        try rig.ctl(["pki", "renew", "--dir", rig.pki.path, rig.deviceID, "--publish", rig.updates.path])
        let published = try Data(contentsOf: rig.updates.appendingPathComponent("renewals/\(name).crt"))
        #expect(rig.wait(60) { rig.historyContains("certificates", "renewed", 0) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()

        let shown = try rig.ctl(["ota", "history", "--collected", rig.collected.path, "--device", rig.deviceID]).stdout
        #expect(shown.contains("\tcertificates\trenewed\t-\t-\tconnected with the renewed certificate, serial "), "\(shown)")
        log = rig.deviceLogs()
        #expect(log.contains("renewed certificate serial ") && log.contains("connected with the renewed certificate"), "\(log)")
        let reports = rig.history().filter { $0.kind == "certificates" }.map(\.status)
        #expect(reports == ["renewal-installed", "renewed"], "\(rig.history())")
        // In use: the published certificate, with the key the device always had.
        let current = rig.ota.appendingPathComponent("certificates/current")
        #expect(try Data(contentsOf: current.appendingPathComponent("device.crt")) == published)
        #expect(try Data(contentsOf: current.appendingPathComponent("device.key"))
                == Data(contentsOf: rig.provisioned.appendingPathComponent("device.key")))
        #expect(try String(contentsOfFile: current.path + "/device.key", encoding: .utf8).contains("PRIVATE KEY"))
        #expect(try fileMode(current.appendingPathComponent("device.key").path) == 0o600)
        // The bundle versions are untouched: a renewal is no release.
        #expect(try rig.slots.versions(of: .certificates) == ArtifactVersions(installed: 0, floor: 0, accepted: 0))
        // Everything acquired while it was refused reached the collector, byte for byte.
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

        // The next start uses the renewal, and says nothing about the expired provisioned file.
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: renewalArguments(rig))
        #expect(rig.wait(60) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0)
        rig.stopCollector()
        let second = (try? String(contentsOf: rig.root.appendingPathComponent("device-2.log"), encoding: .utf8)) ?? ""
        #expect(!second.contains("ALARM") && !second.contains("renewed certificate serial"), "\(second)")
        #expect(try rig.verify().status == 0)
    }

    @Test func aCertificateNearItsEndIsRenewedAheadWhileConnected() throws {
        let rig = try OTARig()
        try provision(rig, period: (now - 300, now + 5 * 86_400))
        // 20 days: still within the window once in use, so every later poll fetches it again.
        try rig.ctl(["pki", "renew", "--dir", rig.pki.path, rig.deviceID, "--days", "20", "--publish", rig.updates.path])
        try rig.startCollector()
        try rig.startDevice(speed: "0.4", extra: renewalArguments(rig))
        #expect(rig.wait(60) { rig.historyContains("certificates", "renewed", 0) }, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let log = rig.deviceLogs()
        // Within 30 days: warned, renewed over the working link (daqlink's own reconnect).
        #expect(log.contains("expires on") && log.contains("reconnecting to use new credentials") && log.contains("0 links lost"), "\(log)")
        // Installed once: each later poll finds the one in use and says nothing.
        #expect(rig.history().filter { $0.status == "renewal-installed" }.count == 1, "\(rig.history())")
        let access = (try? String(contentsOf: rig.root.appendingPathComponent("nginx/access.log"), encoding: .utf8)) ?? ""
        let name = try renewalName(rig)
        #expect(access.components(separatedBy: "GET /renewal/\(name).crt").count - 1 >= 3, "fetched at every poll: \(access)")
        #expect(try Data(contentsOf: rig.ota.appendingPathComponent("certificates/current/device.crt"))
                == Data(contentsOf: rig.updates.appendingPathComponent("renewals/\(name).crt")))
        #expect(try rig.verify().status == 0)
    }

    /// A power cut after each durable step of a renewal (the boot state made, the renewal armed,
    /// promoted): every step's report is in the outbox once. A cut between a step and its report
    /// lost it (bundles' reports were put back at start, renewals' were not).
    @Test func aCrashAfterEachStepOfARenewalLosesNoReport() throws {
        let rig = try OTARig()
        try provision(rig, period: (now - 300, now + 5 * 86_400))
        try rig.ctl(["pki", "renew", "--dir", rig.pki.path, rig.deviceID, "--publish", rig.updates.path])
        try rig.startCollector()
        let statuses = { rig.outboxReports().filter { $0.kind == "certificates" }.map(\.status) }
        var crashAt = 1
        while crashAt < 10 {
            try rig.resetUpdateDirectory()
            try rig.startDevice(speed: "1", extra: renewalArguments(rig), environment: ["DAQLINK_OTA_CRASH_AT": String(crashAt)])
            _ = rig.wait(40) { rig.device?.isRunning == false || statuses().contains("renewed") }
            let crashed = rig.stopDevice()
            // The renewal done without reaching step `crashAt`: every step was cut once.
            if crashed != 99 {
                #expect(statuses() == ["renewal-installed", "renewed"] && crashAt > 3, "step \(crashAt): exit \(crashed)\n\(rig.deviceLogs())")
                break
            }
            try rig.startDevice(speed: "1", extra: renewalArguments(rig))
            #expect(rig.wait(60) { statuses().contains("renewed") }, "step \(crashAt): not renewed\n\(rig.deviceLogs())")
            _ = rig.stopDevice()
            #expect(statuses() == ["renewal-installed", "renewed"], "step \(crashAt): \(statuses())\n\(rig.deviceLogs())")
            crashAt += 1
        }
        rig.stopCollector()
    }

    /// Publishes the device's renewal and puts it alone on the CRL; returns its serial.
    /// (`pki revoke --serial` revokes every certificate of its key, the provisioned one too; an
    /// index from before keys were fingerprinted could not.)
    private func publishARevokedRenewal(_ rig: OTARig) throws -> String {
        let renew = try rig.ctl(["pki", "renew", "--dir", rig.pki.path, rig.deviceID, "--publish", rig.updates.path])
        let serial = try #require(renew.stdout.split(separator: " ").firstIndex(of: "serial").map { renew.stdout.split(separator: " ")[$0 + 1] }
            .map { String($0.prefix { $0 != "," }) })
        let layout = PKILayout(directory: rig.pki.path)
        var index = try CertificateIndex.decode(Array(try Data(contentsOf: URL(fileURLWithPath: layout.index))), file: layout.index)
        let position = try #require(index.certificates.firstIndex { $0.serial == serial })
        index.certificates[position].revokedAt = Date()
        try Data(try index.encoded()).write(to: URL(fileURLWithPath: layout.index))
        try CertificateAuthority(opening: layout).publishRevocationList()
        try rig.broker.reload()
        return serial
    }

    /// A renewal that fails while the certificate in use has expired is set aside for an hour
    /// (the failures may be the broker's, so it is tried again then). A power cut after each
    /// durable step loses no report, and the restart does not try it again before its hour.
    /// Before, the hour was kept in memory and the rollback was not recorded: the cut after the
    /// rollback took its report, and the next start installed the renewal again at once.
    @Test func aRenewalThatFailsWhileExpiredIsSetAsideAcrossAPowerCut() throws {
        let rig = try OTARig()
        try provision(rig, period: (now - 30 * 86_400, now - 86_400))
        let serial = try publishARevokedRenewal(rig)
        try rig.startCollector()
        let statuses = { rig.outboxReports().filter { $0.kind == "certificates" }.map(\.status) }
        var crashAt = 1
        while crashAt < 10 {
            try rig.resetUpdateDirectory()
            try rig.startDevice(speed: "0.4", extra: renewalArguments(rig), environment: ["DAQLINK_OTA_CRASH_AT": String(crashAt)])
            _ = rig.wait(60) { rig.device?.isRunning == false || statuses().contains("renewal-rolled-back") }
            let crashed = rig.stopDevice()
            if crashed != 99 {
                // Steps: the boot state, the renewal armed, set aside.
                #expect(statuses() == ["renewal-installed", "renewal-rolled-back"] && crashAt > 3, "step \(crashAt): exit \(crashed)\n\(rig.deviceLogs())")
                break
            }
            try rig.startDevice(speed: "0.4", extra: renewalArguments(rig))
            #expect(rig.wait(60) { statuses().contains("renewal-rolled-back") }, "step \(crashAt): not rolled back\n\(rig.deviceLogs())")
            usleep(3_000_000)  // two or three more polls: not installed again within its hour
            _ = rig.stopDevice()
            #expect(statuses() == ["renewal-installed", "renewal-rolled-back"], "step \(crashAt): \(statuses())\n\(rig.deviceLogs())")
            let setAside = (try? String(contentsOf: rig.ota.appendingPathComponent("certificates/renewal-set-aside"), encoding: .utf8)) ?? ""
            #expect(setAside.hasPrefix("\(serial) "), "step \(crashAt): \(setAside)")
            crashAt += 1
        }
        // A plain restart within the hour: the renewal is fetched three times and left alone.
        let name = try renewalName(rig)
        let fetches = { ((try? String(contentsOf: rig.root.appendingPathComponent("nginx/access.log"), encoding: .utf8)) ?? "")
            .components(separatedBy: "GET /renewal/\(name).crt").count - 1 }
        let before = fetches()
        try rig.startDevice(speed: "0.4", extra: renewalArguments(rig))
        #expect(rig.wait(30) { fetches() >= before + 3 }, "fetched \(fetches() - before) times\n\(rig.deviceLogs())")
        _ = rig.stopDevice()
        #expect(statuses() == ["renewal-installed", "renewal-rolled-back"], "after a restart: \(statuses())\n\(rig.deviceLogs())")
        rig.stopCollector()
    }

    @Test func aRenewalTheBrokerRefusesIsRolledBackOnceAndNotTriedAgain() throws {
        let rig = try OTARig()
        try provision(rig, period: (now - 300, now + 5 * 86_400))
        let serial = try publishARevokedRenewal(rig)
        try rig.startCollector()
        try rig.startDevice(speed: "0.4", extra: renewalArguments(rig))
        #expect(rig.wait(60) { rig.historyContains("certificates", "renewal-rolled-back", 0) }, "\(rig.history())\n\(rig.deviceLogs())")
        usleep(8_000_000)  // eight more polls: the same renewal is not installed again
        #expect(rig.history().filter { $0.status == "renewal-installed" }.count == 1, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(rig.wait(90) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        // Rolled back only once the certificate in use showed the broker up and taking the device.
        #expect(rig.deviceLogs().contains("no connection with the renewed certificate (serial \(serial)) in 3 attempts over ")
                && rig.deviceLogs().contains(" s: trying the certificate in use, to tell a refused certificate from a broker that is down"), "\(rig.deviceLogs())")
        #expect(rig.deviceLogs().contains("the broker accepts the certificate in use: one more attempt with the new one"), "\(rig.deviceLogs())")
        #expect(rig.deviceLogs().contains("no connection with the renewed certificate (serial \(serial)) while the one in use connected: back to the one before, and this renewal is not tried again"), "\(rig.deviceLogs())")
        // The last attempt came at once: the old certificate's session, closed by daqlink for it,
        // is no failure (it waited out the backoff of the failures before, the link down meanwhile).
        let verdict = try #require(logTime(rig.deviceLogs(), of: "while the one in use connected: back to the one before"))
        let accepted = try #require(logTime(rig.deviceLogs(), of: "the broker accepts the certificate in use", before: "while the one in use connected: back to"))
        #expect(verdict - accepted <= 3, "\(rig.deviceLogs())")
        #expect(rig.deviceLogs().contains("is one the broker refused before: not tried again"), "\(rig.deviceLogs())")
        // Back on the old certificate at once, not after the backoff the refused one ran up.
        #expect(rig.deviceLogs().contains("connecting now with the changed credentials"), "\(rig.deviceLogs())")
        // The old certificate is the one in use, and the stream is whole.
        #expect(!FileManager.default.fileExists(atPath: rig.ota.appendingPathComponent("certificates/current").path))
        #expect(!FileManager.default.fileExists(atPath: rig.ota.appendingPathComponent("certificates/pending").path))
        #expect(try rig.verify().status == 0)
    }
}

/// The time (seconds, from the line's ISO 8601 stamp) of the first log line containing `text`;
/// with `before`, of the last one before the first line containing that (a check made twice).
private func logTime(_ log: String, of text: String, before: String? = nil) -> Int? {
    var lines = log.split(separator: "\n")
    if let before, let end = lines.firstIndex(where: { $0.contains(before) }) { lines = Array(lines[..<end].reversed()) }
    guard let line = lines.first(where: { $0.contains(text) }) else { return nil }
    let stamp = line.prefix(24)
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssZ"
    return formatter.date(from: String(stamp)).map { Int($0.timeIntervalSince1970) }
}

private func fileMode(_ path: String) throws -> Int {
    ((try FileManager.default.attributesOfItem(atPath: path))[.posixPermissions] as? NSNumber)?.intValue ?? -1
}
