// A collector away for long while the device's link is up: the broker accepts and PUBACKs every
// batch (the collector's durable session queues them), but no end-to-end ack comes. The device
// must not send its whole backlog again at every ack timeout: that multiplied what a 4G link
// carries, and what the broker queues, with the length of the outage (1.8× the journal in 26 s);
// nor at every reconnect.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct CollectorAwayTests {
    @Test func aCollectorAwayIsNotSentTheBacklogOverAndOver() throws {
        let rig = try UplinkRig()
        try rig.startCollector()  // its durable session and subscriptions, then away
        rig.stopCollector()
        try rig.startDevice(speed: "0.4")  // 25 s: two ack timeouts while the collector is away
        // The link drops twice meanwhile: a reconnect sent the whole backlog again into the
        // collector's queue (the broker had it already).
        for _ in 0..<2 {
            UplinkRig.pause(8)
            rig.proxy.resetConnections()
        }
        UplinkRig.pause(6)
        try rig.startCollector()
        let device = rig.waitForDevice()
        #expect(device.status == 0, "\(device.log)")
        let written = try #require(device.log.firstMatch(of: /journal: (\d+) bytes written, seq 1…(\d+)/))
        let sent = try #require(device.log.firstMatch(of: /uplink: \d+ batches, (\d+) journal bytes as \d+ wire bytes \(.*\), acknowledged up to (\d+)/))
        #expect(sent.2 == written.2, "drained: \(device.log)")
        #expect(device.log.components(separatedBy: "connected to").count - 1 >= 2, "\(device.log)")
        #expect(device.log.contains("for the collector before)"), "\(device.log)")
        // Everything once, a probe of one entry per ack timeout (each ~270 bytes here), and what
        // was in flight at each cut: 1.0004× on a quiet machine, 1.11× on a loaded one (PUBACKs
        // slower, more in flight at a cut). Resending the backlog at every ack timeout and
        // reconnect sent more than twice the journal.
        #expect(Double(sent.1)! <= Double(written.1)! * 1.3, "\(device.log)")
        rig.stopCollector()
        let collector = rig.read("collector")
        let duplicates = try #require(collector.firstMatch(of: /(\d+) duplicates dropped/)).1
        #expect(Int(duplicates)! <= Int(written.2)! / 4, "\(collector)")
        try rig.expectIdentical("after the collector was away")
    }
}

/// A device restarted while the collector is away (a vehicle started again): the broker holds
/// what the last run sent, noted in the journal's `queued`; the restart sends from after it. It
/// sent the whole backlog into the collector's queue again at every start.
@Suite(.serialized) struct RestartWhileAwayTests {
    @Test func aRestartDoesNotSendWhatTheBrokerHoldsAgain() throws {
        let rig = try UplinkRig()
        try rig.startCollector()  // its durable session, then away
        rig.stopCollector()
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "0.5"])
        let first = rig.waitForDevice()
        #expect(first.status == 0, "\(first.log)")
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "0.5"])
        let second = rig.waitForDevice()
        #expect(second.status == 0, "\(second.log)")
        #expect(second.log.contains("sending from 3638 (the broker took 1…3637 for the collector before)"), "\(second.log)")
        let written = try #require(second.log.firstMatch(of: /journal: (\d+) bytes written/)).1
        let sent = try #require(second.log.firstMatch(of: /uplink: \d+ batches, (\d+) journal bytes as/)).1
        #expect(Double(sent)! <= Double(written)! * 1.05, "only its own entries: \(second.log)")
        try rig.startCollector()
        try rig.expectIdentical("both runs from the broker's queue")
        rig.stopCollector()
        let duplicates = try #require(rig.read("collector").firstMatch(of: /(\d+) duplicates dropped/)).1
        #expect(Int(duplicates)! <= 10, "\(rig.read("collector"))")
    }
}
