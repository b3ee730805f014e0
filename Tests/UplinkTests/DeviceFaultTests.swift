// Faults on the device's side of the uplink that last: a broker that refuses every batch, a
// journal that cannot be read back. Each used to stall the uplink or fill its log.
import Foundation
import Testing
import TestSupport

/// The broker refuses every batch (PUBACK 0x87: `--device` is not the certificate's CN, so the ACL
/// denies its topic; mosquitto then ends the session): one ALARM line for it, the refusals counted
/// in the summary. Before, each refused batch logged an ALARM line, at every reconnect.
@Suite(.serialized) struct RefusedBatchTests {
    @Test func aRefusalIsAlarmedOnceAndCounted() throws {
        let rig = try UplinkRig()
        let pki = rig.broker.pkiDirectory.path
        let device = try rig.launchDevice(id: "ecu-02", journal: rig.work.appendingPathComponent("ecu-02"), speed: "4",
                                          extra: ["--cert", "\(pki)/devices/ecu-01.crt", "--key", "\(pki)/devices/ecu-01.key",
                                                  "--drain-timeout", "1"])
        device.waitUntilExit()
        let log = rig.read("device-1")
        let refusals = log.split(separator: "\n").filter { $0.contains("ALARM: the broker refuses this device's data") }
        #expect(refusals.count == 2, "one in the log, one in the summary: \(log)")
        #expect(refusals.first?.contains("0x87 not authorized") == true, "\(log)")
        // Counted in the summary (mosquitto ends the session at a refusal: about one per session).
        let counted = try #require(log.firstMatch(of: /(\d+) batch(?:es)? refused by the broker/), "\(log)").1
        #expect(Int(counted)! >= 1, "\(log)")
    }
}

/// Reads of the backlog that fail (EIO, injected by strace into daqlink's pread64 calls on the
/// segment). A batch whose read failed stayed in flight for ever: with a whole segment unreadable
/// the window filled with such batches and the uplink stalled, live data behind it. Now a read is
/// tried again (after 2 s, then 4 s) and a range that fails three times goes as `lost`.
@Suite(.serialized) struct UnreadableBacklogTests {
    /// A backlog (the first run has no collector: the broker drops what it gets), then a second
    /// run whose reads of the segment fail as `when` says (the first two calls are the journal's
    /// scan at start).
    private func drain(failing when: String) throws -> (rig: UplinkRig, status: Int32, log: String) {
        let rig = try UplinkRig()
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "0.5"])
        #expect(rig.waitForDevice().status == 0)
        try rig.startCollector()
        let segment = rig.journal.appendingPathComponent("00000000000000000001.jnl").path
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "20"],
                            wrapper: ["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null", "-P", segment,
                                      "-e", "trace=pread64", "-e", "inject=pread64:error=EIO:when=\(when)"])
        let (status, log) = rig.waitForDevice()
        return (rig, status, log)
    }

    @Test func aReadThatFailsTwiceIsTriedAgainAndNothingIsLost() throws {
        let (rig, status, log) = try drain(failing: "3..4")
        #expect(status == 0, "\(log)")
        #expect(log.contains("ALARM: cannot read entries 1…") && log.contains("Input/output error (read again after 2 s and 4 s"), "\(log)")
        #expect(!log.contains("sent as 'lost'"), "\(log)")
        try rig.expectIdentical("after two failed reads")
    }

    @Test func aSegmentThatCannotBeReadGoesAsLostAndTheStreamGoesOn() throws {
        let (rig, status, log) = try drain(failing: "3+")
        #expect(status == 0, "\(log)")
        #expect(log.contains("could not be read from the journal 3 times") && log.contains("sent as 'lost' placeholders"), "\(log)")
        #expect(log.contains("3637 entries sent as 'lost'") && log.contains("acknowledged up to 7274"), "drained: \(log)")
        let verify = try rig.verify(within: 5)
        #expect(verify.stdout.contains("lost"), "\(verify.stdout)")
    }
}
