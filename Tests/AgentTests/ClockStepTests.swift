// The system clock stepped while daqlink records from a bus (NTP on a board without an RTC, which
// boots at 1970): the measurement keeps its time base. Before, a step forward made the sampler fill
// every raster period of the step with held values (an hour: 720,000 records per 5 ms group, in
// RAM before the first write) and a step back pinned every frame to the last time before it.
import Foundation
import Testing
import TestSupport
@testable import Agent

@Suite(.serialized) struct ClockStepTests {
    private static let second: Int64 = 1_000_000_000

    @Test func stampsStayOnTheBaseAcrossStepsEitherWay() {
        var base = ClockBase(startOffset: 1_000 * Self.second)
        #expect(base.observe(offset: 1_000 * Self.second + 10_000_000) == nil)  // 10 ms: a slew, not a step
        #expect(base.map(1_500 * Self.second, now: 1_500 * Self.second) == 1_500 * Self.second)
        // Stepped forward by an hour: the kernel's stamps jump, the base does not.
        #expect(base.observe(offset: 4_600 * Self.second) == 3_600 * Self.second)
        #expect(base.map(5_101 * Self.second, now: 1_501 * Self.second) == 1_501 * Self.second)
        // A frame stamped just before the step, read just after it.
        #expect(base.map(1_500 * Self.second + 900_000_000, now: 1_501 * Self.second) == 1_500 * Self.second + 900_000_000)
        // Stepped back by two hours.
        #expect(base.observe(offset: -2_600 * Self.second) == -7_200 * Self.second)
        #expect(base.map(-2_098 * Self.second, now: 1_502 * Self.second) == 1_502 * Self.second)
        // A stamp an hour off on every clock seen (a step before the measurement started, the
        // frame queued meanwhile): read now, it stands at now.
        let fresh = ClockBase(startOffset: 0)
        #expect(fresh.map(3_600 * Self.second, now: 5 * Self.second) == 5 * Self.second)
        #expect(fresh.map(4 * Self.second, now: 5 * Self.second) == 4 * Self.second)
        // The loop away for 12 s (SIGSTOP, a stalled system): a frame queued 11 s ago keeps its
        // stamp; one from further back than the time away does not.
        #expect(fresh.map(9 * Self.second, now: 20 * Self.second) == 20 * Self.second)
        #expect(fresh.map(9 * Self.second, now: 20 * Self.second, away: 12 * Self.second) == 9 * Self.second)
        #expect(fresh.map(5 * Self.second, now: 20 * Self.second, away: 12 * Self.second) == 20 * Self.second)
        // Away 60 s, the clock stepped +30 s meanwhile: a frame stamped after the step 16 s ago
        // is put there, not on the clock before the step, 14 s in the future (the nearer one).
        var stalled = ClockBase(startOffset: 0)
        #expect(stalled.observe(offset: 30 * Self.second) == 30 * Self.second)
        #expect(stalled.map(114 * Self.second, now: 100 * Self.second, away: 60 * Self.second) == 84 * Self.second)
        // A stamp in the future on both clocks: the moment it is read.
        #expect(stalled.map(200 * Self.second, now: 100 * Self.second, away: 60 * Self.second) == 100 * Self.second)
        // A +0.5 s step long ago, then a 1 s hold-up: a frame 0.9 s old is nearer the present on
        // the clock before the step (0.4 s), but its queue was emptied since the step.
        var later = ClockBase(startOffset: 0)
        #expect(later.observe(offset: Self.second / 2) == Self.second / 2)
        let raw = 99 * Self.second + Self.second / 10 + Self.second / 2  // 99.1 s on the base, read at 100 s
        #expect(later.map(raw, now: 100 * Self.second, away: Self.second) == 99 * Self.second + 6 * Self.second / 10)
        #expect(later.map(raw, now: 100 * Self.second, away: Self.second, afterLastStep: true) == 99 * Self.second + Self.second / 10)
    }

    /// In the vcan guest (its clock is its own): daqlink records `daqctl ecu-sim` from vcan0 while
    /// the clock is stepped an hour forward, then two hours back.
    @Test func aLiveMeasurementKeepsItsTimeBaseWhenTheClockSteps() throws {
        let work = try PackagePaths.temporaryDirectory("clock-step")
        let dbc = try Agent.writeLiveExperiment(in: work)
        let script = """
            set -u
            w=\(work.path)
            \(Agent.daqlink) run --experiment $w/live.toml --source socketcan:vcan0 --journal $w/journal \\
                --quiet --drain-timeout 0 2>$w/daqlink.err &
            p=$!
            sleep 1
            \(Agent.daqctl) ecu-sim --dbc \(dbc) --to vcan0 --duration 3 --seed 5 2>$w/sim.err &
            s=$!
            sleep 1
            date -s "@$(( $(date +%s) + 3600 ))" >/dev/null
            sleep 1
            date -s "@$(( $(date +%s) - 7200 ))" >/dev/null
            wait $s
            sleep 0.5
            kill -INT $p
            wait $p
            echo $? >$w/daqlink.rc
            """
        let read = try Agent.runInVcanRig(script, in: work, name: "step.sh")
        let log = read("daqlink.err")
        #expect(read("daqlink.rc").hasPrefix("0"), "\(log)")
        // `date -s @N` drops the fraction of a second: the steps are within a second of ±1 h, 2 h.
        let steps = log.matches(of: /the system clock stepped by ([+-]\d+\.\d+) s/).compactMap { Double($0.1) }
        #expect(steps.count == 2 && abs(steps[0] - 3600) < 1.5 && abs(steps[1] + 7200) < 1.5, "\(log)")
        #expect(log.contains("system clock steps 2 (the measurement kept its time base)"), "\(log)")
        let entries = try Agent.dump(work.appendingPathComponent("journal"))
        // The 5 ms raster: one record per period from the first frame to SIGINT (3.5 s of traffic,
        // which the emulated guest takes up to 10 s to send), on one time line without a jump either
        // way. Before: 720,000 more for the hour stepped forward.
        let fast = entries.filter { $0["group"] as? String == "Time 5ms" }.compactMap { $0["dt"] as? Double }
        #expect(fast.count >= 500 && fast.count < 5_000, "\(fast.count) records of the 5 ms group")
        #expect(zip(fast, fast.dropFirst()).allSatisfy { abs(($1 - $0) - 0.005) < 1e-9 })
        // Event records follow the bus: increasing times, no gap of the step.
        let events = entries.filter { $0["group"] as? String == "Seg 1" }.compactMap { $0["dt"] as? Double }
        #expect(events.count >= 20 && zip(events, events.dropFirst()).allSatisfy { $1 > $0 && $1 - $0 < 2 }, "\(events)")
        #expect(try runProcess(Agent.daqctl, ["journal", "verify", work.appendingPathComponent("journal").path]).status == 0)
    }
}

/// A board without an RTC boots with its clock in the past: daqlink names the cause (the clock
/// before the certificate's start) instead of calling fine credentials unusable and the link's
/// failure "a TLS error". In the vcan guest, whose clock is its own.
@Suite(.serialized) struct ClockBehindTests {
    @Test func aClockBeforeTheCertificatesStartIsNamed() throws {
        let work = try PackagePaths.temporaryDirectory("clock-behind")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(Agent.daqctl, ["pki", "init", "--dir", pki]).status == 0)
        #expect(try runProcess(Agent.daqctl, ["pki", "device", "--dir", pki, "ecu-01"]).status == 0)
        let script = """
            date -s 2001-02-03T04:05:06Z >/dev/null
            \(Agent.daqlink) run --experiment \(Agent.experiment) --source replay:\(Agent.log) --speed max \\
                --journal \(work.path)/journal --quiet --broker 127.0.0.1:1 --device ecu-01 --pki \(pki) \\
                --drain-timeout 1 2>\(work.path)/daqlink.err
            echo $? >\(work.path)/daqlink.rc
            """
        let read = try Agent.runInVcanRig(script, in: work, name: "behind.sh")
        let log = read("daqlink.err")
        #expect(read("daqlink.rc").hasPrefix("0"), "\(log)")
        #expect(log.contains("the system clock reads 2001-02-03T04:05:0") && log.contains("before the start of the device certificate \(pki)/devices/ecu-01.crt")
                && log.contains("until the clock is set (NTP, an RTC)"), "\(log)")
        #expect(!log.contains("ALARM: uplink credentials"), "\(log)")
    }
}
