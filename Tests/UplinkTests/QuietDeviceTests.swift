// A device that stops sending: the collector says so once after --quiet-after, and once more when
// the device is heard again; time the collector itself is away from the broker does not count.
import Foundation
import Testing
import TestSupport
@testable import Collector

@Suite(.serialized) struct QuietDeviceTests {
    private static let second: Int64 = 1_000_000_000

    @Test func aDeviceIsReportedQuietOnceAndHeardAgainOnce() {
        var quiet = QuietDevices(after: 60 * Self.second)
        quiet.connected(now: 0)
        #expect(quiet.heard("a", now: 1 * Self.second) == nil)
        #expect(quiet.heard("b", now: 30 * Self.second) == nil)
        #expect(quiet.tick(now: 60 * Self.second).isEmpty)
        let first = quiet.tick(now: 61 * Self.second)
        #expect(first.map(\.device) == ["a"] && first.first?.silent == 60 * Self.second)
        #expect(quiet.tick(now: 89 * Self.second).isEmpty)  // said once
        #expect(quiet.tick(now: 95 * Self.second).map(\.device) == ["b"])
        #expect(quiet.heard("a", now: 301 * Self.second) == "a: heard again after 5 min quiet")
        #expect(quiet.tick(now: 302 * Self.second).isEmpty)
        #expect(quiet.tick(now: 361 * Self.second).map(\.device) == ["a"])  // quiet again: said again
    }

    /// While the collector has no session the broker keeps the devices' batches: a device is not
    /// quiet for that time, only for time the collector was there to hear it.
    @Test func timeTheCollectorWasAwayDoesNotCount() {
        var quiet = QuietDevices(after: 60 * Self.second)
        quiet.connected(now: 0)
        _ = quiet.heard("a", now: 10 * Self.second)
        quiet.disconnected()
        #expect(quiet.tick(now: 500 * Self.second).isEmpty)
        quiet.connected(now: 500 * Self.second)
        #expect(quiet.tick(now: 559 * Self.second).isEmpty)
        #expect(quiet.tick(now: 560 * Self.second).map(\.silent) == [550 * Self.second])
    }

    @Test(arguments: [(45.4, "45 s"), (119, "119 s"), (125, "2 min 5 s"), (3600, "60 min"), (7200, "2 h"), (12_000, "3 h 20 min")])
    func spansReadAsAPersonSaysThem(seconds: Double, text: String) {
        #expect(QuietDevices.describe(Int64(seconds * 1e9)) == text)
    }

    /// End to end: a real device drains and stops; the collector (--quiet-after 1) names it with
    /// what it holds of it; the device started again is named once more, with how long it was away.
    @Test func aDeviceThatStopsAndComesBackIsNamedBothTimes() throws {
        let rig = try UplinkRig()
        try rig.startCollector(extra: ["--quiet-after", "1"])
        try rig.startDevice(speed: "10")
        let first = rig.waitForDevice()
        #expect(first.status == 0, "\(first.log)")
        let committed = try #require(first.log.firstMatch(of: /acknowledged up to (\d+)/)).1
        let quietLine = "ecu-01: nothing received for 1 s, committed up to \(committed); the device is off, or its link is down"
        let deadline = Date().addingTimeInterval(10)
        while !rig.read("collector").contains(quietLine), Date() < deadline { UplinkRig.pause(0.1) }
        #expect(rig.read("collector").contains(quietLine), "\(rig.read("collector"))")
        UplinkRig.pause(1.5)
        try rig.startDevice(speed: "10")
        let second = rig.waitForDevice()
        #expect(second.status == 0, "\(second.log)")
        rig.stopCollector()
        let log = rig.read("collector")
        #expect(log.contains("ecu-01: first batch of this run, entries 1…") && log.contains(" (a new copy)\n"), "\(log)")
        let again = log.split(separator: "\n").filter { $0.contains("ecu-01: heard again after ") }
        #expect(again.count == 1 && again.first?.hasSuffix(" s quiet") == true, "\(log)")
        // Said once per silence: the second run's end is a silence of its own, after the line above.
        #expect(log.components(separatedBy: "nothing received for").count - 1 <= 2, "\(log)")
        try rig.expectIdentical("after two runs")
    }
}
