// A power cut after every durable step of a firmware update (DAQLINK_OTA_CRASH_AT=N kills the
// device right after its N-th persisted OTA step, across the re-executions): the next boot always
// starts a slot whose image verifies, and the update then resumes or rolls forward to a commit.
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct PowerCutTests {
    /// The durable steps of one firmware update: the factory boot state, accepted, staging
    /// cleared, manifest staged, verified, slot manifest written, image renamed in, trial armed,
    /// trial boot counted, committed.
    static let steps = 10

    @Test func aCrashAfterEveryPersistedStepStillBootsAVerifiedSlotAndFinishesTheUpdate() throws {
        let rig = try OTARig()
        try rig.startCollector()
        let image = try rig.firmware("daqlink-2.bin", marker: "release 2")
        try rig.publish(image, kind: .firmware, version: 2, floor: 2)
        let manifest = try UpdateManifest.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: image.path + ".manifest"))), file: "manifest")

        for crashAt in 1...Self.steps {
            try rig.resetUpdateDirectory()
            try rig.startDevice(speed: "1", environment: ["DAQLINK_OTA_CRASH_AT": String(crashAt)])
            #expect(rig.wait(40) { rig.device?.isRunning == false }, "step \(crashAt): no crash")
            let crashed = rig.stopDevice()
            #expect(crashed == 99, "step \(crashAt): exit \(crashed)\n\(rig.deviceLogs())")
            let afterCrash = rig.bootState()

            // Power back on: boot normally and let the update finish.
            try rig.startDevice(speed: "1")
            let committed = rig.wait(40) { rig.bootState()?.committedVersion == 2 && rig.bootState()?.active == .b }
            #expect(committed, "step \(crashAt): after the crash (state \(String(describing: afterCrash))) the update did not finish: \(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
            _ = rig.stopDevice()

            // Every slot started since the crash verified, and the committed slot holds exactly release 2.
            let log = (try? String(contentsOf: rig.root.appendingPathComponent("device-\(2 * crashAt).log"), encoding: .utf8)) ?? ""
            #expect(!log.contains("does not verify") && log.contains("daqlink boot: starting slot"), "step \(crashAt): \(log)")
            #expect(rig.slots.verifySlot(.b) == nil && SlotDirectory.matches(rig.slots.binaryPath(.b), manifest), "step \(crashAt)")
            #expect(rig.bootState()?.floor == 2)

            // Every state change of the update is in the device's outbox once, the one whose
            // report the crash came before as well (it was lost when the cut fell between the
            // boot state and the report: "committed" was never reported after a cut at step 10).
            let reports = rig.outboxReports().filter { $0.kind == "firmware" && $0.version == 2 }.map(\.status)
            for status in ["downloading", "verified", "installed", "committed"] {
                #expect(reports.filter { $0 == status }.count == 1, "step \(crashAt): '\(status)' in \(reports)")
            }
            #expect(reports.contains("trial-boot"), "step \(crashAt): \(reports)")
        }
    }

    /// A cut right after a release's acceptance is recorded (boot state `downloading`), before
    /// staging is cleared, on a device that installed an earlier release: that release's manifest
    /// is still staged (installing renames only the artifact out of staging). Before, the start
    /// found a staged manifest (not this release's), so it neither resumed the download nor
    /// accepted the release again (a replay of the one accepted): it stayed `downloading` until a
    /// newer release came (a review). Now the download resumes and the release commits.
    @Test func aCutRightAfterAcceptingAReleaseThatFollowsAnInstalledOneResumesIt() throws {
        let rig = try OTARig()
        try rig.startCollector()
        try rig.publish(try rig.firmware("daqlink-2.bin", marker: "release 2"), kind: .firmware, version: 2, floor: 2)
        try rig.startDevice(speed: "1")
        #expect(rig.wait(60) { rig.bootState()?.committedVersion == 2 }, "\(rig.deviceLogs())")
        _ = rig.stopDevice()
        #expect(rig.slots.stagedManifest(.firmware)?.version == 2, "release 2's manifest stays staged")

        try rig.publish(try rig.firmware("daqlink-3.bin", marker: "release 3"), kind: .firmware, version: 3, floor: 2)
        try rig.startDevice(speed: "1", environment: ["DAQLINK_OTA_CRASH_AT": "1"])
        #expect(rig.wait(40) { rig.device?.isRunning == false }, "no crash")
        #expect(rig.stopDevice() == 99, "\(rig.deviceLogs())")
        guard case .downloading(3, _)? = rig.bootState()?.inactive else {
            Issue.record("the cut came elsewhere: \(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
            return
        }
        try rig.startDevice(speed: "1")
        #expect(rig.wait(60) { rig.bootState()?.committedVersion == 3 }, "\(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        _ = rig.stopDevice()
    }

    /// The same for an experiment and a certificate bundle, which change no slot: a cut after each
    /// of their durable steps, then a start that finishes both updates. Every step's report is in
    /// the outbox once: a cut between a step and its report lost it (the experiment's "installed",
    /// the certificates' "committed" were never reported).
    @Test func aCrashAfterEveryStepOfAnExperimentAndACertificateUpdateLosesNoReport() throws {
        let rig = try OTARig()
        try rig.startCollector()
        try rig.publish(try rig.slowExperiment(version: 2), kind: .experiment, version: 2)
        let bundle = try rig.newCertificateBundle(version: 2).bundle
        try rig.publish(bundle, kind: .certificates, version: 2)
        let finished = {
            (try? rig.slots.versions(of: .experiment).installed) == 2 && (try? rig.slots.versions(of: .certificates).installed) == 2
        }

        var crashAt = 1
        while crashAt < 40 {
            try rig.resetUpdateDirectory()
            try rig.startDevice(speed: "1", environment: ["DAQLINK_OTA_CRASH_AT": String(crashAt)])
            _ = rig.wait(40) { rig.device?.isRunning == false || finished() }
            let crashed = rig.stopDevice()
            // Both updates done without reaching step `crashAt`: every step was cut once.
            if crashed != 99 {
                #expect(finished() && crashAt > 8, "step \(crashAt): exit \(crashed)\n\(rig.deviceLogs())")
                break
            }
            try rig.startDevice(speed: "1")
            #expect(rig.wait(60) { finished() }, "step \(crashAt): the updates did not finish\n\(rig.deviceLogs())")
            _ = rig.stopDevice()
            let reports = rig.outboxReports().filter { $0.version == 2 }
            for (kind, status) in [("experiment", "downloading"), ("experiment", "installed"), ("certificates", "downloading"),
                                   ("certificates", "installed"), ("certificates", "committed")] {
                #expect(reports.filter { $0.kind == kind && $0.status == status }.count == 1,
                        "step \(crashAt): \(kind) '\(status)' in \(reports)")
            }
            crashAt += 1
        }
    }
}
