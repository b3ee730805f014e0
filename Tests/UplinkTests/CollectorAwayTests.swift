// A collector away for long while the device's link is up: the broker accepts and PUBACKs every
// batch (the collector's durable session queues them), but no end-to-end ack comes. The device
// must not send its whole backlog again at every ack timeout: that multiplied what a 4G link
// carries, and what the broker queues, with the length of the outage (1.8× the journal in 26 s).
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct CollectorAwayTests {
    @Test func aCollectorAwayIsNotSentTheBacklogOverAndOver() throws {
        let rig = try UplinkRig()
        try rig.startCollector()  // its durable session and subscriptions, then away
        rig.stopCollector()
        try rig.startDevice(speed: "0.4")  // 25 s: two ack timeouts while the collector is away
        UplinkRig.pause(22)
        try rig.startCollector()
        let device = rig.waitForDevice()
        #expect(device.status == 0, "\(device.log)")
        let written = try #require(device.log.firstMatch(of: /journal: (\d+) bytes written, seq 1…(\d+)/))
        let sent = try #require(device.log.firstMatch(of: /uplink: \d+ batches, (\d+) journal bytes as \d+ wire bytes \(.*\), acknowledged up to (\d+)/))
        #expect(sent.2 == written.2, "drained: \(device.log)")
        // Everything once, and a probe of one entry per ack timeout (each ~270 bytes here).
        #expect(Double(sent.1)! <= Double(written.1)! * 1.02, "\(device.log)")
        rig.stopCollector()
        let collector = rig.read("collector")
        let duplicates = try #require(collector.firstMatch(of: /(\d+) duplicates dropped/)).1
        #expect(Int(duplicates)! <= 3, "\(collector)")
        try rig.expectIdentical("after the collector was away")
    }
}
