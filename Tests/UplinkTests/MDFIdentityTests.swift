// Device and collector MDF files stay byte-identical with every MDF option on — files split by
// measurement time, ##DZ blocks, the raw bus-logging group — through a link outage and a
// collector kill -9: the options travel in the journal's layout entry, and the split points and
// blocks depend only on the records (docs/mdf.md). Their journals have small segments, each
// opening with a layout repeat.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct MDFIdentityTests {
    @Test func splitDeflatedBusLoggingFilesAreIdenticalAfterAnOutage() throws {
        let rig = try UplinkRig()
        let deviceMDF = rig.work.appendingPathComponent("device/mdf")
        try rig.startCollector()
        // Small segments: each opens with a layout repeat, which starts no new file on either side.
        try rig.startDevice(speed: "2", extra: ["--mdf", deviceMDF.path, "--mdf-split-seconds", "2", "--mdf-deflate",
                                                "--mdf-bus-logging", "--segment-bytes", "131072"])
        UplinkRig.pause(1.5)
        rig.proxy.set(.blackhole)             // a dead spot: nothing flows
        UplinkRig.pause(2)
        rig.proxy.set(.up)
        UplinkRig.pause(0.7)
        rig.stopCollector(signal: SIGKILL)    // the collector rebuilds its files from its journal
        try rig.startCollector()
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        rig.stopCollector()                   // a clean stop finalizes the collector's last file
        let verify = try rig.verify(within: 10, mdf: deviceMDF)
        #expect(verify.status == 0, "\(verify.stdout)\n--- collector\n\(rig.read("collector"))")
        let identical = verify.stdout.split(separator: "\n").filter { $0.hasPrefix("MDF measurement-1") && $0.hasSuffix(", identical") }
        #expect(identical.count == 5, "10 s of log in 2 s files: \(verify.stdout)")
        // Progress for long work, on request (and on a terminal): both sides, each to 100 %.
        let progress = try runProcess(UplinkRig.daqctl, ["verify", rig.journal.path, rig.collected.appendingPathComponent(rig.deviceID).path,
                                                         "--progress"])
        #expect(progress.status == 0 && progress.stderr.contains("verify: the collector's copy: ")
                && progress.stderr.contains("verify: the device's journal: ") && progress.stderr.contains("(100% of "), "\(progress.stderr)")
        // A file only the collector has is a difference (it was passed over: "byte-identical: yes").
        let collectorMDF = rig.collected.appendingPathComponent("\(rig.deviceID)/mdf")
        try FileManager.default.copyItem(at: collectorMDF.appendingPathComponent("measurement-1.mf4"),
                                         to: collectorMDF.appendingPathComponent("measurement-999.mf4"))
        let extra = try rig.verify(within: 0, mdf: deviceMDF)
        #expect(extra.status == 1 && extra.stdout.contains("MDF measurement-999.mf4: only at the collector, DIFFERENT")
                && extra.stdout.contains("byte-identical: no"), "\(extra.stdout)")
    }
}

extension MDFIdentityTests {
    @Test func theDevicesInterruptedFilesAreRebuiltIdenticallyAfterKillMinus9() throws {
        let rig = try UplinkRig()
        let deviceMDF = rig.work.appendingPathComponent("device/mdf")
        // Small segments: the rebuild reads past the layout repeat that opens each one.
        let flags = ["--mdf", deviceMDF.path, "--mdf-split-seconds", "3", "--mdf-deflate", "--segment-bytes", "65536"]
        try rig.startCollector()
        try rig.startDevice(speed: "2", extra: flags)
        UplinkRig.pause(2)
        rig.killDevice()                      // measurement 1's files stay unfinalized
        try rig.startDevice(speed: "max", extra: flags)
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        #expect(log.contains("was left unfinalized; rebuilt from the journal"), "\(log)")
        rig.stopCollector()
        let verify = try rig.verify(within: 10, mdf: deviceMDF)
        #expect(verify.status == 0, "\(verify.stdout)\n--- collector\n\(rig.read("collector"))")
        let lines = verify.stdout.split(separator: "\n").filter { $0.hasPrefix("MDF measurement-") }
        #expect(lines.allSatisfy { $0.hasSuffix(", identical") })
        #expect(lines.contains { $0.hasPrefix("MDF measurement-1.mf4") } && lines.count >= 5, "\(verify.stdout)")
    }
}
