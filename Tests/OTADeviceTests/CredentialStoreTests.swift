// The pending certificate bundle is the accepted release's own: a bundle of an older release,
// superseded by one accepted since, is neither tried nor reported as installed.
import Foundation
import HTTPFetch
import OTA
@testable import OTADevice
import PKI
import Runtime
import Testing
import TestSupport

@Suite struct CredentialStoreTests {
    @Test func aPendingBundleOfASupersededReleaseIsNotPending() throws {
        let root = try PackagePaths.temporaryDirectory("credential-store")
        defer { try? FileManager.default.removeItem(at: root) }
        let slots = SlotDirectory(root: root.path)
        try slots.prepare()
        let base = root.appendingPathComponent("certificates")
        try FileManager.default.createDirectory(at: base.appendingPathComponent("bundle-1"), withIntermediateDirectories: true)
        for name in ["device.crt", "device.key"] { try Data("x".utf8).write(to: base.appendingPathComponent("bundle-1/\(name)")) }
        try FileManager.default.createSymbolicLink(atPath: base.appendingPathComponent("pending").path, withDestinationPath: "bundle-1")
        let store = CredentialStore(directory: slots, provisioned: CredentialFiles(certificateFile: "/p.crt", keyFile: "/p.key"))

        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 1), of: .certificates)
        #expect(store.pending?.version == 1)
        // Release 2 accepted while bundle 1 waited for its first connection.
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 2), of: .certificates)
        #expect(store.pending == nil, "bundle 1 was taken for release 2")
        #expect(ProvenReport(kind: .certificates, versions: ArtifactVersions(installed: 0, floor: 0, accepted: 2), failed: nil,
                             pendingInstalled: store.pending != nil)?.statuses == ["downloading"])
    }

    /// A connection's outcome is matched to the directory it was made with: a bundle installed
    /// while a renewal's connection was under way is not promoted (or failed) by that outcome.
    /// Before, both were `pending/device.crt`, and the renewal's CONNACK promoted the bundle.
    /// A renewal refused before and armed again (UpdateTask does so once the certificate in use
    /// has expired) is taken off the refused list: `pendingRenewal` ignored it, so it was never
    /// tried, and each poll rewrote it and cut the link.
    @Test func aRefusedRenewalArmedAgainIsPending() throws {
        let root = try PackagePaths.temporaryDirectory("credential-refused")
        defer { try? FileManager.default.removeItem(at: root) }
        let (_, store) = try plainStore(in: root)
        let plain = Self.plain
        try store.installRenewal(plain, serial: "AB12")
        try store.installRenewal(plain, serial: "CD34")
        try store.discardRenewal(serial: "CD34", retryAfter: nil)
        try store.installRenewal(plain, serial: "AB12")
        try store.discardRenewal(serial: "AB12", retryAfter: nil)
        #expect(store.refusedRenewals == ["AB12", "CD34"] && store.pendingRenewal == nil)
        try store.installRenewal(plain, serial: "AB12")
        #expect(store.pendingRenewal?.serial == "AB12")
        #expect(store.refusedRenewals == ["CD34"])
    }

    /// A renewal that failed while the certificate in use had expired is set aside on disk, with
    /// the time it may be tried again: a restart keeps that time (it was in memory: every start
    /// tried it at once, writing the key and cutting the link three times), a power cut that
    /// leaves its link keeps it from being taken as pending, and the start can tell it was
    /// rolled back (its report was lost with the cut).
    @Test func aRenewalSetAsideWhileExpiredIsRecordedWithItsRetryTime() throws {
        let root = try PackagePaths.temporaryDirectory("credential-set-aside")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store) = try plainStore(in: root)
        try store.installRenewal(Self.plain, serial: "AB12")
        try store.discardRenewal(serial: "AB12", retryAfter: 1_800_003_600)
        #expect(store.pendingRenewal == nil && store.refusedRenewals.isEmpty)
        #expect(store.setAsideRenewals == ["AB12": 1_800_003_600])
        // The same store on the next start.
        let again = CredentialStore(directory: slots, provisioned: CredentialFiles(certificateFile: "/p.crt", keyFile: "/p.key"))
        #expect(again.setAsideRenewals == ["AB12": 1_800_003_600])
        // A cut after the record, before the link went: not pending.
        try FileManager.default.createSymbolicLink(atPath: slots.kindPath(.certificates) + "/pending", withDestinationPath: "renewal-AB12")
        #expect(again.pendingRenewal == nil)
        // Armed again when its time comes: off the list, pending. Entries long past are pruned.
        try again.installRenewal(Self.plain, serial: "AB12")
        #expect(again.pendingRenewal?.serial == "AB12" && again.setAsideRenewals.isEmpty)
        try again.discardRenewal(serial: "AB12", retryAfter: 1_800_003_600)
        try again.installRenewal(Self.plain, serial: "CD34")
        try again.discardRenewal(serial: "CD34", retryAfter: 1_800_003_600 + 3 * 86_400)
        #expect(again.setAsideRenewals == ["CD34": 1_800_003_600 + 3 * 86_400])
        // One set by a clock that ran days ahead is dropped with the next one.
        try again.installRenewal(Self.plain, serial: "EF56")
        try again.discardRenewal(serial: "EF56", retryAfter: 1_800_003_600 + 2 * 86_400)
        #expect(again.setAsideRenewals == ["EF56": 1_800_003_600 + 2 * 86_400])
    }

    /// A renewal takes a pending bundle's place while the certificate in use has expired; once
    /// it is set aside, refused or connected, the bundle is pending again. Before, neither was:
    /// the bundle's version was accepted, so it was never fetched again, and a change of CA it
    /// brought was lost. A power cut before the link moved back is mended at the start; a failed
    /// bundle or one a newer release superseded is not armed again.
    @Test func theBundleARenewalTookThePlaceOfIsPendingAgainAfterIt() throws {
        let root = try PackagePaths.temporaryDirectory("credential-replaced")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store) = try plainStore(in: root)
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 3), of: .certificates)
        try store.installPending(Self.plain, version: 3)
        #expect(store.pending?.version == 3)

        // Set aside (the certificate in use expired): the bundle is pending again.
        try store.installRenewal(Self.plain, serial: "AB12")
        #expect(store.pending == nil && store.pendingRenewal?.serial == "AB12")
        try store.discardRenewal(serial: "AB12", retryAfter: 1_800_003_600)
        #expect(store.pending?.version == 3 && store.pendingRenewal == nil)
        // Refused: the same.
        try store.installRenewal(Self.plain, serial: "CD34")
        try store.discardRenewal(serial: "CD34", retryAfter: nil)
        #expect(store.pending?.version == 3)

        // A power cut after the record, before the link moved: the start arms the bundle.
        let link = slots.kindPath(.certificates) + "/pending"
        try store.installRenewal(Self.plain, serial: "EF56")
        try FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "renewal-CD34")
        #expect(store.pending == nil && store.pendingRenewal == nil)
        #expect(try store.rearmReplacedBundle() == 3 && store.pending?.version == 3)
        #expect(try store.rearmReplacedBundle() == nil, "a pending bundle is left as it is")

        // Connected: the renewal is the one in use, and the bundle is tried after it.
        try store.installRenewal(Self.plain, serial: "EF56")
        #expect(try store.rearmReplacedBundle() == nil, "a renewal still pending keeps its place")
        try store.promoteRenewal()
        #expect(store.currentRenewal == "EF56" && store.pending == nil)
        #expect(try store.rearmReplacedBundle() == 3 && store.pending?.version == 3)

        // A failed bundle, or one of a release superseded since, is not armed again.
        try store.installRenewal(Self.plain, serial: "AA11")
        try slots.markFailed(.certificates, version: 3)
        try store.discardRenewal(serial: "AA11", retryAfter: nil)
        #expect(store.pending == nil && (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == nil)
        try slots.clearStaging(.certificates)  // a new offer clears the failed mark
        #expect(try store.rearmReplacedBundle() == nil, "the record went with the failed bundle")
        try store.installRenewal(Self.plain, serial: "BB22")
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 4), of: .certificates)
        try store.discardRenewal(serial: "BB22", retryAfter: nil)
        #expect(store.pending == nil && (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == nil)

        // Never displaced, never armed again: a bundle rolled back (its failed mark cleared by a
        // later offer before that offer's version was recorded), or one whose directory a power
        // cut left written before its link was.
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 5), of: .certificates)
        try store.installPending(Self.plain, version: 5)
        try slots.markFailed(.certificates, version: 5)
        store.discardPending()
        try slots.clearStaging(.certificates)
        #expect(try store.rearmReplacedBundle() == nil && store.pending == nil)
        let halfWritten = slots.kindPath(.certificates) + "/bundle-6"
        try FileManager.default.createDirectory(atPath: halfWritten, withIntermediateDirectories: true)
        for name in ["device.crt", "device.key"] { try Data("x".utf8).write(to: URL(fileURLWithPath: halfWritten + "/" + name)) }
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 6), of: .certificates)
        #expect(try store.rearmReplacedBundle() == nil && store.pending == nil)
    }

    /// A set-aside renewal is tried again once its hour has passed, or at once when its time lies
    /// more than an hour ahead (set by a clock that ran ahead, put right since: waited out, it
    /// kept an expired device from its renewal for days).
    @Test func aSetAsideRenewalIsDueAfterItsHourOrWhenItsTimeCannotBeRight() {
        let now: Int64 = 1_800_000_000
        #expect(!UpdateTask.setAsideIsOver(until: now + 3600, now: now))
        #expect(!UpdateTask.setAsideIsOver(until: now + 1, now: now))
        #expect(UpdateTask.setAsideIsOver(until: now, now: now))
        #expect(UpdateTask.setAsideIsOver(until: now - 10, now: now))
        #expect(UpdateTask.setAsideIsOver(until: now + 3 * 86_400, now: now))
    }

    /// What the update server's answer says of a client certificate: HTTP 400 (nginx refusing
    /// it) or a failed handshake refuses it, any other answer takes it, no answer says nothing.
    @Test func theUpdateServersAnswerToACertificate() {
        func failed(_ reason: HTTPFailureReason) -> HTTPOutcome<[UInt8]> {
            .failed(HTTPFetchFailure(reason: reason, url: "https://u/firmware.manifest", file: nil, keptBytes: 0, message: "m"))
        }
        #expect(UpdateTask.ServerAnswer(.complete([1])) == .accepted)
        #expect(UpdateTask.ServerAnswer(failed(.httpStatus(404))) == .accepted)
        guard case .refused = UpdateTask.ServerAnswer(failed(.httpStatus(400))) else { Issue.record("400"); return }
        guard case .refused = UpdateTask.ServerAnswer(failed(.tls)) else { Issue.record("tls"); return }
        for reason in [HTTPFailureReason.unreachable, .timeout, .interrupted, .transport(curlCode: 7)] {
            guard case .none = UpdateTask.ServerAnswer(failed(reason)) else { Issue.record("\(reason)"); continue }
        }
    }

    @Test func aConnectionWithARenewalIsNeverTakenForABundleInstalledSince() throws {
        let root = try PackagePaths.temporaryDirectory("credential-store")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store) = try plainStore(in: root)
        let plain = Self.plain

        try store.installRenewal(plain, serial: "AB12")
        let renewal = try #require(store.pendingRenewal)
        #expect(renewal.serial == "AB12" && renewal.files.certificateFile.hasSuffix("certificates/renewal-AB12/device.crt"))
        #expect(renewal.files.caFile == nil)

        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 2), of: .certificates)
        var anchored = plain
        anchored.authoritiesPEM = Array("ca".utf8)
        try store.installPending(anchored, version: 2)
        let bundle = try #require(store.pending)
        #expect(store.pendingRenewal == nil)
        #expect(!bundle.files.wereUsed(in: renewal.files), "the renewal's connection is not the bundle's")
        #expect(bundle.files.caFile?.hasSuffix("certificates/bundle-2/ca.crt") == true)

        // Promoted: the bundle's anchors are the ones in use; a renewal then keeps them only if
        // given them (UpdateTask passes the current ones on).
        try store.promotePending(version: 2, floor: 0)
        #expect(store.current.caFile?.hasSuffix("certificates/current/ca.crt") == true)

        // A refused renewal is not pending, even with its link left by a power cut.
        try store.installRenewal(plain, serial: "CD34")
        #expect(store.pendingRenewal?.serial == "CD34")
        try store.discardRenewal(serial: "CD34", retryAfter: nil)
        #expect(store.refusedRenewals == ["CD34"])
        // The cut came after the serial was recorded, before the link went.
        try FileManager.default.createSymbolicLink(atPath: slots.kindPath(.certificates) + "/pending", withDestinationPath: "renewal-CD34")
        #expect(store.pendingRenewal == nil)
    }

    /// Pending credentials are rolled back after three failed connections only when the
    /// failures spread over 10 s (a broker restarting refuses every connection for a second or
    /// two: three quick refusals rolled back, for good, every update waiting for its first
    /// connection), and a failure more than 20 s after the one before starts a new count; then
    /// only once the credentials in use show the broker up (a broker down refuses them too).
    @Test func pendingCredentialsRollBackOnlyAfterFailuresSpreadOverTheSpan() throws {
        let root = try PackagePaths.temporaryDirectory("credential-rollback")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store, clock, task, used) = try pendingBundle(in: root)
        func fail(after seconds: Double) {
            clock.advance(to: clock.now() + Int64(seconds * 1e9))
            task.connectionFailed(with: used)
        }
        fail(after: 0.3)
        fail(after: 25)  // long after: a new count
        fail(after: 0.3)
        #expect(store.pending != nil, "one failure 25 s before is not part of this run of them")
        fail(after: 0.3)  // three within a second: a broker restarting
        #expect(store.pending != nil, "three failures within a second")
        fail(after: 4)
        fail(after: 4)
        #expect(store.pending != nil, "8.6 s")
        fail(after: 4)  // 12.6 s of failures: now the credentials in use are tried
        #expect(store.pending != nil, "not rolled back before the credentials in use are tried")
        #expect(task.credentialsForNextConnection() == store.provisioned)
        task.connectionFailed(with: store.provisioned)  // the broker refuses them too: it is down
        #expect(store.pending != nil, "the failures were the broker's")
        #expect(task.credentialsForNextConnection() == used)
        for _ in 0..<3 { fail(after: 5) }
        #expect(task.credentialsForNextConnection() == store.provisioned)
        task.connectionSucceeded(with: store.provisioned)  // the broker takes the ones in use
        #expect(store.pending != nil)
        #expect(task.credentialsForNextConnection() == used, "one more attempt with the new ones")
        fail(after: 0.3)  // refused right after the ones in use connected: refused for real
        #expect(store.pending == nil)
        #expect(slots.failedVersion(.certificates) == 2)
        #expect(task.credentialsForNextConnection() == store.provisioned)
    }

    /// A broker back between the pending credentials' failures and the check: the one more
    /// attempt connects, and they are promoted.
    @Test func pendingCredentialsThatConnectAfterTheCheckArePromoted() throws {
        let root = try PackagePaths.temporaryDirectory("credential-check")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store, clock, task, used) = try pendingBundle(in: root)
        for _ in 0..<3 {
            clock.advance(to: clock.now() + 6_000_000_000)
            task.connectionFailed(with: used)
        }
        #expect(task.credentialsForNextConnection() == store.provisioned)
        task.connectionSucceeded(with: store.provisioned)
        #expect(task.credentialsForNextConnection() == used)
        task.connectionSucceeded(with: used)
        #expect(store.pending == nil)
        #expect(try slots.versions(of: .certificates).installed == 2)
        #expect(task.credentialsForNextConnection().certificateFile.hasSuffix("/current/device.crt"))
        #expect(slots.failedVersion(.certificates) == nil)
    }

    /// Each step of the check is one attempt: one that ends without an answer (a timeout, which
    /// is not reported) says nothing, and the new credentials are counted afresh; a refusal long
    /// after the credentials in use connected is no verdict. (Left pending, the check waited for
    /// an answer for ever, and a broker restart an hour later rolled good credentials back.)
    @Test func aCheckStepWithoutAnAnswerSaysNothing() throws {
        let root = try PackagePaths.temporaryDirectory("credential-check-timeout")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store, clock, task, used) = try pendingBundle(in: root)
        func failThreeTimes() {
            for _ in 0..<3 {
                clock.advance(to: clock.now() + 6_000_000_000)
                task.connectionFailed(with: used)
            }
        }
        failThreeTimes()
        #expect(task.credentialsForNextConnection() == store.provisioned)
        // That attempt timed out (no outcome): the next one goes with the new credentials.
        #expect(task.credentialsForNextConnection() == used)
        task.connectionFailed(with: used)
        #expect(store.pending != nil, "one failure after an unanswered check is a new count, not a verdict")
        for _ in 0..<2 {  // with the one before, three over 12 s: a check again
            clock.advance(to: clock.now() + 6_000_000_000)
            task.connectionFailed(with: used)
        }
        #expect(task.nextCredentials == store.provisioned, "a look takes no step")
        #expect(task.credentialsForNextConnection() == store.provisioned)
        task.connectionSucceeded(with: store.provisioned)
        #expect(task.credentialsForNextConnection() == used)
        // The last attempt timed out too: the attempt after it is counted afresh.
        #expect(task.credentialsForNextConnection() == used)
        task.connectionFailed(with: used)
        #expect(store.pending != nil)
        #expect(slots.failedVersion(.certificates) == nil)
    }

    /// With the certificate in use expired there is nothing to check against and nothing to go
    /// back to: a pending bundle that keeps failing stays pending, neither rolled back to a
    /// certificate that can never connect again nor marked failed (a bundle with a new key rolled
    /// back there left the device with no way out); a renewal may take its place meanwhile.
    @Test func anExpiredCertificateInUseIsNoCheck() throws {
        let root = try PackagePaths.temporaryDirectory("credential-check-expired")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store, clock, task, used) = try pendingBundle(in: root, provisionedCertificate: true)
        task.wallClock = { Int64(Date().timeIntervalSince1970) + 10 * 86_400 }  // the 1-day certificate has ended
        for _ in 0..<3 {
            clock.advance(to: clock.now() + 6_000_000_000)
            task.connectionFailed(with: used)
        }
        #expect(store.pending != nil, "nothing to go back to")
        #expect(slots.failedVersion(.certificates) == nil)
        #expect(task.credentialsForNextConnection() == used)
        #expect(task.credentialsForNextConnection() == used, "no check: no step with the expired certificate")
    }

    /// The update task's side of `theBundleARenewalTookThePlaceOfIsPendingAgainAfterIt`: with the
    /// certificate in use expired, a renewal that fails its attempts is set aside and the next
    /// connection tries the bundle again; a renewal that connects is promoted and the bundle is
    /// tried next. Before, both left the task with nothing pending.
    @Test func anExpiredDeviceTriesTheBundleARenewalTookThePlaceOf() throws {
        let root = try PackagePaths.temporaryDirectory("credential-renewal-replaced")
        defer { try? FileManager.default.removeItem(at: root) }
        let (slots, store, clock, task, bundle) = try pendingBundle(in: root, provisionedCertificate: true)
        task.wallClock = { Int64(Date().timeIntervalSince1970) + 10 * 86_400 }  // the 1-day certificate has ended

        try store.installRenewal(Self.plain, serial: "AB12")
        let renewal = try #require(store.pendingRenewal).files
        #expect(task.credentialsForNextConnection() == renewal)
        for _ in 0..<3 {
            clock.advance(to: clock.now() + 6_000_000_000)
            task.connectionFailed(with: renewal)
        }
        #expect(store.setAsideRenewals["AB12"] != nil)
        #expect(task.credentialsForNextConnection() == bundle, "the bundle is tried again")

        try store.installRenewal(Self.plain, serial: "CD34")
        let second = try #require(store.pendingRenewal).files
        #expect(task.credentialsForNextConnection() == second)
        task.connectionSucceeded(with: second)
        #expect(store.currentRenewal == "CD34")
        #expect(task.credentialsForNextConnection() == bundle, "tried after the renewal rescued the link")
        #expect(slots.failedVersion(.certificates) == nil)
    }

    /// An update task on a virtual clock, with bundle 2 pending (the provisioned credentials in use).
    /// `provisionedCertificate`: the provisioned files are a real certificate (valid for a day)
    /// and key, made by openssl; else paths to nothing.
    private func pendingBundle(in root: URL, provisionedCertificate: Bool = false)
        throws -> (SlotDirectory, CredentialStore, VirtualClock, UpdateTask, CredentialFiles) {
        let keys = root.appendingPathComponent("release")
        #expect(try runProcess(OTARig.daqctl, ["ota", "keygen", "--out", keys.path]).status == 0)
        let slots = SlotDirectory(root: root.appendingPathComponent("ota").path)
        try slots.prepare()
        try slots.persist(BootState.factory(version: 1))
        var provisioned = CredentialFiles(certificateFile: "/p.crt", keyFile: "/p.key")
        if provisionedCertificate {
            provisioned = CredentialFiles(certificateFile: root.appendingPathComponent("p.crt").path, keyFile: root.appendingPathComponent("p.key").path)
            let made = try runProcess("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                                                  "-subj", "/CN=rig-01", "-keyout", provisioned.keyFile, "-out", provisioned.certificateFile])
            #expect(made.status == 0, "\(made.stderr)")
        }
        let store = CredentialStore(directory: slots, provisioned: provisioned)
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 2), of: .certificates)
        try store.installPending(DeviceCredentials(certificatePEM: Array("crt".utf8), keyPEM: Array("key".utf8)), version: 2)
        let clock = VirtualClock(start: 1_000_000_000)
        var options = UpdateOptions(baseURL: "https://localhost:1/ota/", deviceID: "rig-01", hardwareID: "hw", directory: slots,
                                    runningSlot: .a, trustedKeyFiles: [keys.appendingPathComponent("release.pub").path], caFile: "/ca.crt")
        // The broker's side alone: no update server here (its word is tested against nginx in
        // TrustRotationTests and every live bundle test).
        options.askUpdateServerBeforeCommit = false
        let task = try UpdateTask(options: options, loop: EventLoop(clock: clock, sleeps: false), credentials: store, seed: 1)
        return (slots, store, clock, task, try #require(store.pending).files)
    }

    /// Credentials made of placeholder bytes (the store only writes and links them).
    static let plain = DeviceCredentials(certificatePEM: Array("crt".utf8), keyPEM: Array("key".utf8))

    /// A credential store in `root`, the provisioned files paths to nothing.
    private func plainStore(in root: URL) throws -> (SlotDirectory, CredentialStore) {
        let slots = SlotDirectory(root: root.path)
        try slots.prepare()
        return (slots, CredentialStore(directory: slots, provisioned: CredentialFiles(certificateFile: "/p.crt", keyFile: "/p.key")))
    }
}
