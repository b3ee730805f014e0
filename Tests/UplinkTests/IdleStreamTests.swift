// The collector closes the copy of a stream that has been quiet for --close-idle-streams-after
// seconds and opens it again when the stream sends. Every copy used to stay open until the
// collector stopped (its journal's segment, its directory and lock): a fleet's journals started
// afresh over months each left one, which a per-device limit of new streams stood in for.
import Foundation
import Testing
import TestSupport

@Suite struct IdleStreamTests {
    /// The collector's open files under `directory`.
    private func openFiles(of pid: pid_t, under directory: String) -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
            .filter { $0.hasPrefix(directory) }
    }

    @Test func anIdleStreamsCopyIsClosedAndOpenedAgainWhenItSends() throws {
        let rig = try UplinkRig()
        try rig.startCollector(extra: ["--close-idle-streams-after", "1"])
        let collector = try #require(rig.collector?.processIdentifier)
        let mdf = rig.work.appendingPathComponent("device-mdf")
        try rig.startDevice(speed: "max", extra: ["--mdf", mdf.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && !log.contains("not drained"), "\(log)")
        let copy = rig.collected.appendingPathComponent("ecu-01/journal").path
        let entries = try #require(log.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last.map(String.init))

        // Quiet for a second: the copy's files are closed.
        let deadline = Date().addingTimeInterval(10)
        while !openFiles(of: collector, under: copy).isEmpty && Date() < deadline { usleep(50_000) }
        #expect(openFiles(of: collector, under: copy).isEmpty, "\(openFiles(of: collector, under: copy))")

        // The device sends again (its first frame once more): the copy is opened and takes it.
        let oneFrame = rig.work.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: oneFrame, atomically: true, encoding: .utf8)
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--mdf", mdf.path])
        let (again, log2) = rig.waitForDevice()
        #expect(again == 0 && !log2.contains("not drained") && !log2.contains("ALARM"), "\(log2)")
        rig.stopCollector()
        // The MDF files went on following the copy across its closing: both measurements' files are
        // the device's, byte for byte.
        let verify = try rig.verify(within: 0, mdf: mdf)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        // The run's report counts both openings of the copy.
        let last = try #require(log2.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last.map(String.init))
        let report = rig.read("collector").split(separator: "\n").first { $0.contains("collector: ecu-01: committed up to") }
        #expect(report?.contains("committed up to \(last) (\(last) entries,") == true, "\(entries) then \(last): \(String(describing: report))")
    }
}
