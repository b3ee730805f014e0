// A device that sends garbage, forges another device's stream on its own topic, or corrupts its
// batches: the collector rejects each message by name and keeps every other device's stream intact.
// (Publishing on another device's topic is refused by the broker: PKITests.BrokerIntegrationTests.)
import Delivery
import Foundation
import Journal
import Testing
import TestSupport

@Suite(.serialized) struct ForgedBatchTests {
    @Test func malformedForgedAndCorruptedBatchesAreRejectedWithoutHarmingOtherDevices() throws {
        let rig = try UplinkRig()
        let intruder = try rig.broker.issueDevice("ecu-02")
        try rig.startCollector()

        // One well-formed entry, as a device's journal would frame it.
        let body = JournalFraming.encode(kind: .record, sequence: 1, payload: Array("forged record".utf8))
        let checksum = UplinkBatch.entriesChecksum(body: body, entries: [0..<body.count])
        func batch(device: String, checksum: UInt32, body: [UInt8]) -> [UInt8] {
            UplinkBatch(deviceID: device, epoch: 1, first: 1, last: 1, segmentStarts: [], codec: .none,
                        bodyLength: UInt32(body.count), bodyChecksum: checksum).encodedHeader() + body
        }
        let messages: [(String, [UInt8])] = [
            ("garbage", Array("hello, collector".utf8)),
            ("names ecu-01 on ecu-02's topic", batch(device: "ecu-01", checksum: checksum, body: body)),
            ("wrong checksum", batch(device: "ecu-02", checksum: checksum ^ 1, body: body)),
            ("body cut off", Array(batch(device: "ecu-02", checksum: checksum, body: body).dropLast(5))),
        ]
        for (index, (what, bytes)) in messages.enumerated() {
            let file = rig.work.appendingPathComponent("forged-\(index).bin")
            try Data(bytes).write(to: file)
            let sent = try rig.broker.runClient(["mosquitto_pub"] + rig.broker.clientArguments(intruder)
                                                + ["-t", "devices/ecu-02/data", "-f", file.path, "-q", "1"])
            #expect(sent.status == 0, "\(what): \(sent.stderr)")
        }
        // The honest device's stream, while and after the intruder tried.
        try rig.startDevice(speed: "max")
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)")
        rig.stopCollector()

        let collector = rig.read("collector")
        let rejections = collector.components(separatedBy: "rejected a batch").count - 1
        #expect(rejections == messages.count, "\(collector)")
        #expect(collector.contains("ecu-01") && collector.contains("devices/ecu-02/data"), "the rejection names topic and device: \(collector)")
        // Nothing of ecu-02's was committed.
        let journal = rig.collected.appendingPathComponent("ecu-02/journal")
        if FileManager.default.fileExists(atPath: journal.path) {
            let dump = try runProcess(UplinkRig.daqctl, ["journal", "dump", journal.path])
            #expect(dump.stdout.isEmpty, "\(dump.stdout)")
        }
    }
}
