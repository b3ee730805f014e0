// What the device refuses, through the real path (nginx → libcurl → checks): each bad offer is
// reported once with its reason code, and the inactive slot is never armed.
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct RefusalTests {
    @Test func badOffersAreRefusedWithTheirReasonAndTheSlotIsNeverArmed() throws {
        let rig = try OTARig()
        try rig.startCollector()
        let folder = rig.updates.appendingPathComponent("devices/\(rig.deviceID)")
        let manifestURL = folder.appendingPathComponent("firmware.manifest"), signatureURL = folder.appendingPathComponent("firmware.sig")
        try rig.startDevice(speed: "0.25")

        /// Replaces the published files by hand (as an attacker or a broken release pipeline would).
        func offer(_ manifest: Data, _ signature: Data?) throws {
            try manifest.write(to: manifestURL)
            if let signature { try signature.write(to: signatureURL) } else { try? FileManager.default.removeItem(at: signatureURL) }
        }
        func expectReport(_ status: String, _ code: String, version: UInt64, _ comment: String) {
            let seen = rig.wait(20) { rig.history().contains { $0.kind == "firmware" && $0.status == status && $0.version == version && $0.reason.hasPrefix(code) } }
            #expect(seen, "\(comment): no \(status) \(code) for \(version): \(rig.history())")
        }

        // A correctly signed release, kept to derive the bad offers from.
        let image = try rig.firmware("daqlink-2.bin", marker: "release 2")
        let otherKey = rig.root.appendingPathComponent("other-key")
        try rig.ctl(["ota", "keygen", "--out", otherKey.path])

        // Signed by a key the device does not trust.
        try rig.publish(image, kind: .firmware, version: 2, key: otherKey.appendingPathComponent("release.key"))
        expectReport("refused", "unknown-key", version: 2, "foreign key")
        // Signed by the release key but for other hardware. (Expiry: `daqctl ota sign` cannot make an
        // expired manifest; AcceptanceTests covers that rule with the device clock as input.)
        try rig.publish(image, kind: .firmware, version: 2, hardware: "other-hw")
        expectReport("refused", "wrong-hardware", version: 2, "hardware")
        // A valid manifest, then tampered (version raised) or stripped of its signature.
        try rig.publish(image, kind: .firmware, version: 2)
        let good = try Data(contentsOf: manifestURL), goodSignature = try Data(contentsOf: signatureURL)
        let tampered = Data(String(decoding: good, as: UTF8.self).replacingOccurrences(of: "version 2\n", with: "version 9\n").utf8)
        try offer(tampered, goodSignature)
        expectReport("refused", "bad-signature", version: 9, "tampered manifest")
        try offer(Data(String(decoding: good, as: UTF8.self).replacingOccurrences(of: "version 2\n", with: "version 8\n").utf8), nil)
        expectReport("refused", "unsigned", version: 8, "unsigned manifest")
        // A name that walks out of the update directory does not even parse.
        try offer(Data(String(decoding: good, as: UTF8.self).replacingOccurrences(of: "artifact daqlink-2.bin", with: "artifact ../../slots/a/daqlink").utf8), goodSignature)
        #expect(rig.wait(20) { rig.history().contains { $0.status == "refused" && $0.reason.hasPrefix("malformed-manifest") && $0.reason.contains("artifact") } },
                "path traversal: \(rig.history())")
        #expect(rig.history().allSatisfy { $0.status == "refused" }, "nothing was downloaded so far: \(rig.history())")

        // The real manifest, but the image on the server was swapped after signing (same length).
        var swapped = try Data(contentsOf: image)
        swapped[swapped.count / 2] ^= 0xFF
        try swapped.write(to: folder.appendingPathComponent("daqlink-2.bin"))
        try offer(good, goodSignature)
        expectReport("download-failed", "hash-mismatch", version: 2, "tampered image")
        // Release 3 whose served file is longer than the signed length.
        let image3 = try rig.firmware("daqlink-3.bin", marker: "release 3")
        try rig.publish(image3, kind: .firmware, version: 3)
        try (Data(contentsOf: image3) + Data(repeating: 0x90, count: 100_000)).write(to: folder.appendingPathComponent("daqlink-3.bin"))
        expectReport("download-failed", "oversize", version: 3, "oversize")
        // Release 2 again, correct this time: an older manifest than one already tried is a replay.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("daqlink-2.bin"))
        try rig.publish(image, kind: .firmware, version: 2)
        expectReport("refused", "replayed", version: 2, "replay")

        let state = try #require(rig.bootState())
        #expect(state.active == .a && state.committedVersion == 1 && state.inactive == .unbootable, "\(state)")
        #expect(!FileManager.default.fileExists(atPath: rig.slots.binaryPath(.b)), "slot b never received an image")
        // Each refusal was reported once, not once per poll.
        let refusals = rig.history().filter { $0.status == "refused" }
        #expect(refusals.count == 6, "\(refusals)")
        _ = rig.stopDevice()
    }

    @Test(.enabled(if: TemporaryFilesystem.canMount, "needs root to mount a tmpfs"))
    func aDownloadThatWouldFillTheDiskIsRefusedBeforeTheFirstByte() throws {
        // The update directory on a 30 MB file system that holds slot a (≈ 18 MB debug binary).
        let mountPoint = try PackagePaths.temporaryDirectory("ota-tmpfs")
        #expect(try runProcess("mount", ["-t", "tmpfs", "-o", "size=30m", "tmpfs", mountPoint.path]).status == 0)
        defer {
            _ = try? runProcess("umount", ["-l", mountPoint.path])
            try? FileManager.default.removeItem(at: mountPoint)
        }
        let rig = try OTARig(otaRoot: mountPoint)
        try rig.startCollector()
        try rig.publish(try rig.firmware("daqlink-2.bin", marker: "release 2"), kind: .firmware, version: 2)
        try rig.startDevice(speed: "0.5")
        let failed = rig.wait(30) { rig.history().contains { $0.status == "download-failed" && $0.reason.hasPrefix("disk-full") } }
        #expect(failed, "\(rig.history())\n\(rig.deviceLogs())")
        #expect(!FileManager.default.fileExists(atPath: rig.slots.stagedArtifactPath(.firmware)), "nothing was written")
        #expect(rig.bootState()?.inactive == .unbootable)
        #expect(rig.device?.isRunning == true, "acquisition goes on")
        _ = rig.stopDevice()
    }
}
