// A replayed log recorded across a clock step (a board without an RTC logs from 1970 until NTP
// sets the clock): the gap's raster ticks are skipped and counted, not recorded one by one.
import Foundation
import Testing
import TestSupport

@Suite struct TimeJumpTests {
    /// The first second of the reference log, then its next second stamped 53 years later.
    @Test func aJumpOfDecadesInALogIsSkippedAndNamed() throws {
        let work = try PackagePaths.temporaryDirectory("time-jump")
        let lines = try String(contentsOfFile: Agent.log, encoding: .utf8).split(separator: "\n")
        let stamp = { (line: Substring) in Double(line.dropFirst().prefix { $0 != ")" })! }
        let origin = stamp(lines[0])
        var text = ""
        for line in lines {
            let time = stamp(line) - origin
            guard time < 2 else { break }
            let shifted = time < 1 ? 10 + time : 1_700_000_000 + time
            text += String(format: "(%.6f)", shifted) + line.drop { $0 != ")" }.dropFirst() + "\n"
        }
        let log = work.appendingPathComponent("jump.log")
        try text.write(to: log, atomically: true, encoding: .utf8)
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", Agent.experiment, "--source", "replay:\(log.path)",
                                                 "--speed", "max", "--journal", work.appendingPathComponent("journal").path])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("time jumps over 60 s 1 ("), "\(run.stderr)")
        // Two seconds of 5 ms ticks, not 53 years of them.
        let group = run.stderr.split(separator: "\n").first { $0.contains("group \"Time 5ms\"") } ?? ""
        let records = Int(group.split(separator: ":").last?.split(separator: " ").first ?? "") ?? -1
        #expect((390...410).contains(records), "\(group)")
    }
}
