// daqctl replay onto a real vcan bus: what candump and daqctl listen record must be the log,
// frame for frame, with the log's pacing at original speed and much faster at max speed.
import DAQCore
import Foundation
import Testing

@Suite("daqctl replay onto vcan", .enabled(if: CANRig.isAvailable, "needs a kernel with CAN or linux.uml (user-mode-linux)"))
struct ReplayTests {
    private var expected: [String] { ReplayFixture.lines.map(\.body) }

    @Test("candump -L records the replayed log identically (ids, data, flags, order)")
    func candumpRecordsTheLog() throws {
        let run = try scenarioRun()
        #expect(run.text("replay/replay.rc").hasPrefix("0"), "replay: \(run.text("replay/replay.err"))")
        // Drop the 7FE probes sent before daqctl listen/replay started.
        let recorded = try run.frames("replay/candump.log").filter { !($0.id == 0x7FE && !$0.isExtended) }
        #expect(recorded.map(\.candumpBody) == expected)
        #expect(run.text("replay/replay.err").contains("sent=\(expected.count) "))
    }

    @Test("daqctl listen records the replayed log identically, with the log's timing (loosely)")
    func listenRecordsTheLogWithTiming() throws {
        let run = try scenarioRun()
        let recorded = try run.frames("replay/listen.log")
        #expect(recorded.map(\.candumpBody) == expected)
        try #require(recorded.count == expected.count)
        let seconds = recorded.map { Double($0.timestamp.nanoseconds - recorded[0].timestamp.nanoseconds) / 1e9 }
        let span = seconds.last!
        #expect(span >= ReplayFixture.spanSeconds * 0.9 && span <= ReplayFixture.spanSeconds * 1.5 + 0.1, "span \(span) s")
        let gap = seconds[ReplayFixture.longGapIndex] - seconds[ReplayFixture.longGapIndex - 1]
        #expect(gap >= ReplayFixture.longGapSeconds * 0.8, "long gap \(gap) s")
    }

    @Test("--speed max sends the same frames without the log's pauses")
    func maxSpeed() throws {
        let run = try scenarioRun()
        #expect(run.text("replay/replay-max.rc").hasPrefix("0"), "replay: \(run.text("replay/replay-max.err"))")
        let recorded = try run.frames("replay/listen-max.log")
        #expect(recorded.map(\.candumpBody) == expected)
        try #require(recorded.count == expected.count)
        let span = Double(recorded.last!.timestamp.nanoseconds - recorded[0].timestamp.nanoseconds) / 1e9
        #expect(span < ReplayFixture.longGapSeconds, "max-speed span \(span) s")
    }
}
