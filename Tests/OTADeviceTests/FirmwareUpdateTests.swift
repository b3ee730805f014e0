// Firmware over the air, end to end with real peers: nginx (mTLS) serves a signed image, the
// device downloads it while acquiring, installs it into slot b, "reboots" through `daqlink boot`
// into a trial, and commits only after its uplink got a batch acknowledged end to end — or rolls
// back. The collector keeps the update history from devices/<id>/ota/status, and the journal
// stream stays byte-identical across every re-execution.
import FaultInjection
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct FirmwareUpdateTests {
    @Test func signedFirmwareIsInstalledTriedAndCommittedAfterTheHealthCheck() throws {
        let rig = try OTARig()
        try rig.startCollector()
        let image = try rig.firmware("daqlink-2.bin", marker: "release 2")
        try rig.publish(image, kind: .firmware, version: 2, floor: 2)
        try rig.startDevice(speed: "1")

        let committed = rig.wait(90) { rig.bootState()?.active == .b && rig.bootState()?.committedVersion == 2 }
        #expect(committed, "firmware 2 was not committed: \(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        guard committed else { return }
        let state = try #require(rig.bootState())
        #expect(state.floor == 2, "the floor rises at commit")
        #expect(state.inactive == .unbootable)
        #expect(SlotDirectory.matches(rig.slots.binaryPath(.b), try UpdateManifest.parse(
            try [UInt8](Data(contentsOf: URL(fileURLWithPath: rig.slots.releaseManifestPath(.b)))), file: "release.manifest")))
        // Every state change reached the collector's history, in order.
        #expect(rig.wait(20) { rig.historyContains("firmware", "committed", 2) }, "\(rig.history())")
        let statuses = rig.history().filter { $0.kind == "firmware" && $0.version == 2 }.map(\.status)
        #expect(statuses == ["downloading", "verified", "installed", "trial-boot", "committed"], "\(statuses)")
        // The operator's view of it.
        let table = try runProcess(OTARig.daqctl, ["ota", "history", "--collected", rig.collected.path])
        #expect(table.status == 0 && table.stdout.hasPrefix("rig-01:\n"), "\(table.stdout)\(table.stderr)")
        #expect(table.stdout.contains("\tfirmware\tcommitted\t2\tb\t"), "\(table.stdout)")
        let unknown = try runProcess(OTARig.daqctl, ["ota", "history", "--collected", rig.collected.path, "--device", "rig-99"])
        #expect(unknown.status != 0 && unknown.stderr.contains("rig-99"), "\(unknown.stderr)")

        // The device, running from slot b, replays to the end and drains; the stream survived the re-exec.
        #expect(rig.wait(60) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(rig.deviceLogs().contains("starting slot b"))
    }

    @Test func aTrialThatNeverGetsAnAcknowledgementRollsBackAndIsNotRetried() throws {
        let rig = try OTARig()
        try rig.startCollector()
        // Release 2 starts but talks to a dead broker port: it can never pass its health check.
        let script = rig.root.appendingPathComponent("daqlink-2.sh")
        try Data("#!/bin/sh\n# release 2: a broken uplink configuration\nexec \(OTARig.daqlink) \"$@\" --broker 127.0.0.1:1\n".utf8).write(to: script)
        try rig.publish(script, kind: .firmware, version: 2, floor: 2)
        try rig.startDevice(speed: "1", healthTimeout: 3)

        let rolledBack = rig.wait(90) { rig.historyContains("firmware", "rolled-back", 2) }
        #expect(rolledBack, "no rollback reported: \(rig.history())\n\(rig.deviceLogs())")
        let state = try #require(rig.bootState())
        #expect(state.active == .a && state.committedVersion == 1 && state.floor == 0, "\(state)")
        #expect(state.inactive == .unbootable && state.lastAcceptedVersion == 2, "release 2 is remembered as tried")
        let reason = rig.history().first { $0.status == "rolled-back" }?.reason ?? ""
        #expect(reason.contains("acknowledged"), "the report says why: \(reason)")
        // Back on slot a, the device keeps polling and does not take release 2 again.
        sleep(3)
        #expect(rig.history().filter { $0.status == "downloading" }.count == 1, "\(rig.history())")
        #expect(rig.device?.isRunning == true, "slot a keeps running")
        #expect(rig.wait(60) { rig.device?.isRunning == false }, "the device did not finish")
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
        rig.stopCollector()
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
}

@Suite(.serialized) struct InterruptedDownloadTests {
    @Test func aDownloadCutByTheLinkAndByKill9ResumesWhereItStoppedAndCommits() throws {
        let rig = try OTARig()
        let proxy = try TCPFaultProxy(targetPort: rig.nginxPort)
        defer { proxy.stop() }
        rig.updatePort = proxy.listenPort
        try rig.startCollector()
        let image = try rig.firmware("daqlink-2.bin", marker: "release 2")
        try rig.publish(image, kind: .firmware, version: 2)
        let staged = rig.slots.stagedArtifactPath(.firmware)
        func stagedBytes() -> UInt64 { (try? FileManager.default.attributesOfItem(atPath: staged)[.size] as? UInt64) ?? 0 }
        // 3 MB/s: the 18 MB image takes several seconds, long enough to be cut twice. The replay
        // runs at 0.25 (40 s), so a device slowed by a loaded machine still runs when its next
        // poll resumes (at 0.5 a CI run once saw the replay end, and the device exit, first).
        let slow = ["--ota-max-rate", "3000000"]
        try rig.startDevice(speed: "0.25", extra: slow)

        // 1. The link resets mid-body: the same process resumes at its next poll.
        #expect(rig.wait(30) { stagedBytes() > 2_000_000 }, "\(rig.deviceLogs())")
        proxy.resetConnections()
        #expect(rig.wait(30) { rig.deviceLogs().contains("resuming firmware 2 at byte") }, "\(rig.deviceLogs())")
        // 2. kill -9 mid-download: the next boot resumes from the partial file on disk.
        let before = stagedBytes()
        #expect(rig.wait(30) { stagedBytes() > before + 2_000_000 })
        if let device = rig.device { kill(device.processIdentifier, SIGKILL) }
        _ = rig.stopDevice()
        let kept = stagedBytes()
        let imageLength = UInt64(try Data(contentsOf: image).count)
        #expect(kept > 0 && kept < imageLength, "a partial file is kept: \(kept)")
        try rig.startDevice(speed: "0.25", extra: slow)
        #expect(rig.wait(30) { ((try? String(contentsOf: rig.root.appendingPathComponent("device-2.log"), encoding: .utf8)) ?? "")
            .contains("resuming firmware 2 at byte") }, "\(rig.deviceLogs())")

        let committed = rig.wait(90) { rig.bootState()?.active == .b && rig.bootState()?.committedVersion == 2 }
        #expect(committed, "\(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        let manifest = try UpdateManifest.parse([UInt8](Data(contentsOf: URL(fileURLWithPath: image.path + ".manifest"))), file: "manifest")
        #expect(SlotDirectory.matches(rig.slots.binaryPath(.b), manifest))
        // Only one download was ever started; the rest were resumes.
        #expect(rig.history().filter { $0.status == "downloading" }.count == 1, "\(rig.history())")
        _ = rig.stopDevice()
    }
}

@Suite(.serialized) struct SupersededDownloadTests {
    /// A download the server can no longer serve (its file removed mid-download) does not block
    /// the release published after it: the device asks for the manifest at every poll, and a
    /// newer one supersedes the unfinished download. Before, it resumed the old one for ever.
    @Test func aNewerReleaseSupersedesADownloadTheServerNoLongerServes() throws {
        let rig = try OTARig()
        let proxy = try TCPFaultProxy(targetPort: rig.nginxPort)
        defer { proxy.stop() }
        rig.updatePort = proxy.listenPort
        try rig.startCollector()
        try rig.publish(try rig.firmware("daqlink-2.bin", marker: "release 2"), kind: .firmware, version: 2)
        let staged = rig.slots.stagedArtifactPath(.firmware)
        func stagedBytes() -> UInt64 { (try? FileManager.default.attributesOfItem(atPath: staged)[.size] as? UInt64) ?? 0 }
        // 100 s of replay: under a loaded CI machine the first MB took 33 s and the 40 s run
        // (speed 0.25) ended before release 3's download did (the device then exits).
        try rig.startDevice(speed: "0.1", extra: ["--ota-max-rate", "2000000"])
        #expect(rig.wait(60) { stagedBytes() > 1_000_000 }, "\(rig.deviceLogs())")
        // Release 2 withdrawn mid-download (its file gone), release 3 published.
        let published = try FileManager.default.subpathsOfDirectory(atPath: rig.updates.path).filter { $0.hasSuffix("daqlink-2.bin") }
        #expect(!published.isEmpty)
        for path in published { try FileManager.default.removeItem(atPath: rig.updates.appendingPathComponent(path).path) }
        proxy.resetConnections()  // nginx would serve the rest from the file it has open
        try rig.publish(try rig.firmware("daqlink-3.bin", marker: "release 3"), kind: .firmware, version: 3)
        let committed = rig.wait(120) { rig.bootState()?.committedVersion == 3 }
        #expect(committed, "\(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        #expect(rig.deviceLogs().contains("the server offers firmware 3, newer than the unfinished download of 2"), "\(rig.deviceLogs())")
        let order = rig.history().filter { $0.kind == "firmware" }.map { "\($0.status) \($0.version)" }
        #expect(order.first == "downloading 2" && order.contains("downloading 3") && !order.contains("verified 2"), "\(order)")
        _ = rig.stopDevice()
    }
}

@Suite(.serialized) struct CrashingTrialTests {
    @Test func aTrialThatCrashesAtEveryBootIsRolledBackWhenItsAttemptsAreUsedUp() throws {
        let rig = try OTARig()
        try rig.startCollector()
        // Release 2 dies at once, every time (a broken build).
        let script = rig.root.appendingPathComponent("daqlink-2.sh")
        try Data("#!/bin/sh\necho 'release 2: segmentation fault' >&2\nexit 139\n".utf8).write(to: script)
        try rig.publish(script, kind: .firmware, version: 2)
        try rig.startDevice(speed: "1")
        // Slot a downloads, installs and re-executes into the trial, which crashes.
        #expect(rig.wait(40) { rig.device?.isRunning == false }, "\(rig.deviceLogs())")
        #expect(rig.stopDevice() == 139)
        // The supervisor (systemd's Restart=always) boots again: two more attempts crash …
        for attempt in 2...3 {
            try rig.startDevice(speed: "1")
            #expect(rig.wait(20) { rig.device?.isRunning == false })
            #expect(rig.stopDevice() == 139, "attempt \(attempt): \(rig.deviceLogs())")
        }
        #expect(rig.bootState()?.inactive == .trial(version: 2, floor: 0, attemptsLeft: 0))
        // … and the next boot rolls back and starts the committed slot, which runs and reports.
        try rig.startDevice(speed: "1")
        #expect(rig.wait(20) { rig.historyContains("firmware", "rolled-back", 2) }, "\(rig.history())\n\(rig.deviceLogs())")
        let state = try #require(rig.bootState())
        #expect(state.active == .a && state.committedVersion == 1 && state.inactive == .unbootable, "\(state)")
        #expect(rig.history().first { $0.status == "rolled-back" }?.reason == "boot attempts exhausted")
        #expect(rig.history().filter { $0.status == "trial-boot" }.count == 3, "\(rig.history())")
        #expect(rig.wait(40) { rig.device?.isRunning == false })
        #expect(rig.stopDevice() == 0, "\(rig.deviceLogs())")
    }
}

@Suite(.serialized) struct ConsecutiveUpdateTests {
    @Test func aReleasePublishedDuringATrialWaitsForTheCommitThenFollows() throws {
        let rig = try OTARig()
        // No collector yet: the trial of release 2 cannot pass its health check until it starts.
        try rig.publish(try rig.firmware("daqlink-2.bin", marker: "release 2"), kind: .firmware, version: 2, floor: 2)
        try rig.startDevice(speed: "0.5", healthTimeout: 60)
        let inTrial = rig.wait(40) { if case .trial(2, _, _) = rig.bootState()?.inactive { true } else { false } }
        #expect(inTrial, "\(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        #expect(rig.wait(20) { rig.deviceLogs().contains("running trial firmware 2") })

        try rig.publish(try rig.firmware("daqlink-3.bin", marker: "release 3"), kind: .firmware, version: 3, floor: 3)
        // An experiment too: installed during the trial, it would stay after a rollback, under
        // a firmware that may not read it.
        let experiment = rig.root.appendingPathComponent("same-5.toml")
        let reference = try String(contentsOfFile: OTARig.experiment, encoding: .utf8)
        try reference.replacingOccurrences(of: "file = \"engine.dbc\"", with: "file = \"\(OTARig.dbc)\"")
            .write(to: experiment, atomically: true, encoding: .utf8)
        try rig.publish(experiment, kind: .experiment, version: 5)
        #expect(rig.wait(20) { rig.deviceLogs().contains("firmware 3 waits") }, "\(rig.deviceLogs())")
        #expect(rig.deviceLogs().contains("experiment and certificate updates wait until the trial firmware commits"), "\(rig.deviceLogs())")
        let outbox = { (try? String(contentsOf: rig.ota.appendingPathComponent("status/outbox"), encoding: .utf8)) ?? "" }
        #expect(!outbox().contains("\"version\":3") && !outbox().contains("\"kind\":\"experiment\""),
                "nothing of release 3 or experiment 5 happens during the trial: \(outbox())")

        // The collector comes up: release 2 commits, then release 3 goes through its own trial.
        try rig.startCollector()
        let done = rig.wait(90) { rig.bootState()?.committedVersion == 3 }
        #expect(done, "\(String(describing: rig.bootState()))\n\(rig.deviceLogs())")
        let state = try #require(rig.bootState())
        #expect(state.active == .a && state.floor == 3, "release 3 went to the slot release 2 left: \(state)")
        #expect(rig.wait(20) { rig.historyContains("firmware", "committed", 3) })
        let order = rig.history().filter { $0.kind == "firmware" }.map { "\($0.status) \($0.version)" }
        #expect(order == ["downloading 2", "verified 2", "installed 2", "trial-boot 2", "committed 2",
                          "downloading 3", "verified 3", "installed 3", "trial-boot 3", "committed 3"], "\(order)")
        // The experiment followed release 2's commit.
        #expect(rig.wait(30) { rig.historyContains("experiment", "installed", 5) }, "\(rig.history())")
        _ = rig.stopDevice()
    }
}
