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

    /// The card fills before the quota does (other files on it), with the link down: no ack can
    /// free anything. The pause is the disk's: an append is tried again once a second, and once
    /// there is room (the other file deleted) acquisition resumes with the link still down.
    /// Before, such a pause ended only when acks let a segment go: with the journal down to its
    /// active segment, or the room made elsewhere, it lasted until daqlink restarted (a review).
    @Test func aDiskFullPauseEndsWhenThereIsRoomAgain() throws {
        try #require(TemporaryFilesystem.canMount, "needs root and mount (tmpfs)")
        let rig = try UplinkRig()
        let card = rig.journal.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: card, withIntermediateDirectories: true)
        #expect(try runProcess("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", card.path]).status == 0)
        defer { _ = try? runProcess("umount", ["-l", card.path]) }
        let other = card.appendingPathComponent("other-files")
        try Data(repeating: 0, count: 256 << 10).write(to: other)
        rig.proxy.set(.down)
        try rig.startCollector()
        try rig.startDevice(speed: "1", extra: ["--segment-bytes", "65536"])
        let log = rig.work.appendingPathComponent("device-\(rig.deviceRuns).log")
        func text() -> String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        let paused = "acquisition paused until there is room on the disk again"
        #expect(UplinkRig.waitUntil(8) { text().contains(paused) }, "\(text())")
        try FileManager.default.removeItem(at: other)
        #expect(UplinkRig.waitUntil(4) { text().contains("(room on the disk again): acquisition resumed;") }, "\(text())")
        rig.proxy.set(.up)
        let (status, final) = rig.waitForDevice()
        #expect(status == 0 && final.contains("stopped: end of log"), "\(final)")
        let verify = try rig.verify()
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        rig.stopCollector()
    }
}
