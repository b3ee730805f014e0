// Replay pacing: log time → deadlines, for each speed.
import Testing
import DAQCore

@Suite struct ReplayPacerTests {
    private func deadlines(_ speed: ReplaySpeed, _ times: [Int64], start: Int64 = 1_000) -> [Int64?] {
        var pacer = ReplayPacer(speed: speed)
        return times.map { pacer.deadline(for: Timestamp(nanoseconds: $0), now: start) }
    }

    @Test func originalTimingKeepsOffsets() {
        #expect(deadlines(.original, [5_000, 6_000, 9_000]) == [1_000, 2_000, 5_000])
    }

    @Test func factorDividesOffsets() {
        #expect(deadlines(.factor(2), [0, 1_000, 4_000]) == [1_000, 1_500, 3_000])
        #expect(deadlines(.factor(0.5), [0, 1_000]) == [1_000, 3_000])
    }

    /// A tiny factor or a gap of decades puts a frame past Int64's nanoseconds (it trapped
    /// converting, or wrapped to "due now"): it is due at the end of time.
    @Test func aDeadlinePastTheEndOfTimeIsTheEndOfTime() {
        #expect(deadlines(.factor(1e-10), [0, 1_000_000_000_000]) == [1_000, .max])
        #expect(deadlines(.factor(0.5), [0, .max / 2 + 1]) == [1_000, .max])
        #expect(deadlines(.original, [0, .max - 10]) == [1_000, .max])
    }

    @Test func maxSpeedNeverWaits() {
        #expect(deadlines(.asFastAsPossible, [0, 1_000_000]) == [nil, nil])
    }

    @Test func backwardsTimestampsDoNotMoveDeadlinesBack() {
        #expect(deadlines(.original, [10_000, 12_000, 11_000, 15_000]) == [1_000, 3_000, 3_000, 6_000])
    }

    @Test(arguments: [("max", ReplaySpeed.asFastAsPossible), ("1", .original), ("x4", .factor(4)),
                      ("2.5", .factor(2.5)), ("original", .original)])
    func parsesSpeedArgument(text: String, expected: ReplaySpeed) {
        #expect(ReplaySpeed(argument: text) == expected)
    }

    @Test(arguments: ["0", "-1", "fast-ish", "nan", ""])
    func rejectsBadSpeed(text: String) {
        #expect(ReplaySpeed(argument: text) == nil)
    }
}
