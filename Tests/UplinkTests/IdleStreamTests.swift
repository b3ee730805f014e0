// The collector closes the copy of a stream its device no longer sends on (its journal was started
// afresh: a card swapped) once it has been quiet for --close-idle-streams-after seconds, and opens
// it again if that stream sends. Every copy used to stay open until the collector stopped (its
// journal's segment, its directory and lock): a fleet's journals started afresh over months each
// left one, which a per-device limit of new streams stood in for.
import Foundation
import JournalStore
import Testing
import TestSupport

@Suite struct IdleStreamTests {
    /// The collector's open files under `directory`.
    private func openFiles(of pid: pid_t, under directory: String) -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
            .filter { $0.hasPrefix(directory + "/") }
    }

    /// The last sequence number a daqlink run's output names ("journal: … seq 1…N").
    private func lastSequence(_ log: String) -> String? {
        log.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last.map(String.init)
    }

    @Test func theCopyOfAStreamItsDeviceLeftIsClosedAndOpenedAgainIfItSends() throws {
        let rig = try UplinkRig()
        // Set in the config file (`--close-idle-streams-after` overrides it).
        let config = rig.work.appendingPathComponent("collector.toml")
        try Data("close_idle_streams_after_s = 1\n".utf8).write(to: config)
        try rig.startCollector(extra: ["--config", config.path])
        let collector = try #require(rig.collector?.processIdentifier)
        let firstMDF = rig.work.appendingPathComponent("card-1-mdf")
        try rig.startDevice(speed: "max", extra: ["--mdf", firstMDF.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && !log.contains("not drained"), "\(log)")
        let copy = rig.collected.appendingPathComponent("ecu-01/journal").path

        // The device's current stream stays open however quiet.
        Thread.sleep(forTimeInterval: 2)
        #expect(!openFiles(of: collector, under: copy).isEmpty, "the current stream's copy stays open")

        // A new card (a fresh epoch) sends: the first card's copy, quiet, is closed.
        let firstCard = rig.work.appendingPathComponent("card-1")
        try FileManager.default.moveItem(at: rig.journal, to: firstCard)
        try rig.startDevice(speed: "max")
        let (second, log2) = rig.waitForDevice()
        #expect(second == 0 && !log2.contains("not drained"), "\(log2)")
        let deadline = Date().addingTimeInterval(10)
        while !openFiles(of: collector, under: copy).isEmpty && Date() < deadline { usleep(50_000) }
        #expect(openFiles(of: collector, under: copy).isEmpty, "\(openFiles(of: collector, under: copy))")

        // The first card put back, its first frame replayed once more: its copy is opened again
        // where it was, and takes it.
        try FileManager.default.moveItem(at: rig.journal, to: rig.work.appendingPathComponent("card-2"))
        try FileManager.default.moveItem(at: firstCard, to: rig.journal)
        let oneFrame = rig.work.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: oneFrame, atomically: true, encoding: .utf8)
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--mdf", firstMDF.path])
        let (again, log3) = rig.waitForDevice()
        #expect(again == 0 && !log3.contains("not drained") && !log3.contains("ALARM"), "\(log3)")
        rig.stopCollector()
        // The MDF files went on following the copy across its closing: both measurements' files are
        // the device's, byte for byte.
        let verify = try rig.verify(within: 0, mdf: firstMDF)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        #expect(!rig.read("collector").contains("a new stream, epoch \(try #require(JournalVerifier.verify(directory: rig.journal.path).epoch))"),
                "the first card's copy was not taken for a new stream")
        // The run's report counts both openings of the first card's copy.
        let last = try #require(lastSequence(log3))
        let report = rig.read("collector").split(separator: "\n").first { $0.hasPrefix("collector: ecu-01: committed up to") }
        #expect(report?.contains("committed up to \(last) (\(last) entries,") == true, "\(String(describing: report))")
    }
}
