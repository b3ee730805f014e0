// A link down long enough to fill the device's journal quota: acquisition pauses, and goes on by
// itself once the collector's acks let the journal retire older segments.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct JournalFullTests {
    /// It used to stop for good ("JOURNAL FULL: acquisition stopped"): the device then only waited
    /// for the drain and exited, and nothing was acquired after the outage until someone restarted
    /// it. Now the records of the full time are counted and not kept, the rest of the run is
    /// acquired, and everything kept reaches the collector byte-identical.
    @Test func aFullJournalPausesAcquisitionUntilTheCollectorFreesIt() throws {
        let rig = try UplinkRig()
        let quota = 327_680
        rig.proxy.set(.down)
        try rig.startCollector()
        // The 10 s fixture writes ~2 MB: the 320 KiB quota is full after 2 s. At ×1 (it was ×2)
        // the run goes on 8 s after the link is back: on a loaded machine ×2 left too little of
        // the run after the slow first drain to tell "went on" from "stopped" by a wide margin.
        try rig.startDevice(speed: "1", extra: ["--segment-bytes", "65536", "--quota-bytes", "\(quota)"])
        UplinkRig.pause(3)
        rig.proxy.set(.up)
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && log.contains("stopped: end of log"), "\(log)")
        #expect(log.contains("acquisition paused until the collector acknowledges the oldest segment whole"), "\(log)")
        #expect(log.contains("acquisition resumed;"), "\(log)")
        let summary = log.split(separator: "\n").first { $0.hasPrefix("journal full: acquisition paused ") }
        #expect(summary?.contains(" records not kept") == true, "\(log)")
        // A pause ends when the collector's acks let a segment go, never before (no record slips
        // into the room left, to pause again at the next): none ends while nothing is acknowledged.
        let firstAck = log.range(of: "backlog: ")?.lowerBound ?? log.endIndex
        #expect(log.range(of: "acquisition resumed;").map { $0.lowerBound > firstAck } == true, "\(log)")
        let verify = try rig.verify()
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        rig.stopCollector()
        // Well more than the quota reached the collector: acquisition went on after the pause (the
        // old code stopped at the quota's worth).
        let committed = rig.read("collector").split(separator: "\n").first { $0.hasPrefix("collector: ecu-01: committed up to") }
        let bytes = committed.flatMap { line in line.split(separator: "(").last?.split(separator: " ").dropFirst(2).first }
            .flatMap { Int($0) } ?? 0
        #expect(bytes > quota + quota / 2, "\(committed ?? "no summary")")
    }
}
