// A device that sends garbage, forges another device's stream on its own topic, or corrupts its
// batches: the collector rejects each message by name and keeps every other device's stream intact.
// (Publishing on another device's topic is refused by the broker: PKITests.BrokerIntegrationTests.)
import Delivery
import Uplink
import Foundation
import Journal
import Testing
import TestSupport

@Suite(.serialized) struct ForgedBatchTests {
    /// Publishes `bytes` with mosquitto_pub (QoS 1) as `identity` on `topic`.
    static func publish(_ bytes: [UInt8], as identity: MQTTClientIdentity, on topic: String, rig: UplinkRig, file name: String,
                        _ what: String) throws {
        let file = rig.work.appendingPathComponent(name)
        try Data(bytes).write(to: file)
        let sent = try rig.broker.runClient(["mosquitto_pub"] + rig.broker.clientArguments(identity) + ["-t", topic, "-f", file.path, "-q", "1"])
        #expect(sent.status == 0, "\(what): \(sent.stderr)")
    }

    /// One entry (`text`, sequence 1) as a codec-0 batch of `device` and `epoch`; `checksum`
    /// replaces the body checksum (nil: the right one).
    static func oneEntryBatch(_ text: String, device: String = "ecu-02", epoch: UInt64 = 1, checksum: UInt32? = nil) -> [UInt8] {
        let body = JournalFraming.encode(kind: .record, sequence: 1, payload: Array(text.utf8))
        let right = UplinkBatch.entriesChecksum(body: body, entries: [0..<body.count])
        return UplinkBatch(deviceID: device, epoch: epoch, first: 1, last: 1, segmentStarts: [], codec: .none,
                           bodyLength: UInt32(body.count), bodyChecksum: checksum ?? right).encodedHeader() + body
    }

    /// The honest device's stream (ecu-01, the fixture as fast as it goes), to its end.
    static func runHonestDevice(_ rig: UplinkRig) throws {
        try rig.startDevice(speed: "max")
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
    }

    @Test func malformedForgedAndCorruptedBatchesAreRejectedWithoutHarmingOtherDevices() throws {
        let rig = try UplinkRig()
        let intruder = try rig.broker.issueDevice("ecu-02")
        try rig.startCollector()

        // One well-formed entry, as a device's journal would frame it.
        let body = JournalFraming.encode(kind: .record, sequence: 1, payload: Array("forged record".utf8))
        let checksum = UplinkBatch.entriesChecksum(body: body, entries: [0..<body.count])
        // Codec 2 (transposed, zstd): the collector frames and CRCs the entries itself, so it
        // walked only their lengths and numbers; an entry of a reserved kind then failed in its
        // journal writer, which the collector took for its own storage failing: it stopped, for
        // every device, and again at each restart (the device resends what was never acked).
        let reserved = JournalFraming.encode(kind: JournalEntryKind(rawValue: 4), sequence: 1, payload: Array("future kind".utf8))
        let reservedHeader = UplinkBatch(deviceID: "ecu-02", epoch: 1, first: 1, last: 1, segmentStarts: [], codec: .transposedZstd,
                                         bodyLength: UInt32(reserved.count),
                                         bodyChecksum: UplinkBatch.entriesChecksum(body: reserved, entries: [0..<reserved.count]))
        let reservedKind = reservedHeader.encodedHeader()
            + BatchTransform.encode(body: reserved, entries: [0..<reserved.count]).withUnsafeBytes { BatchCompression.compress($0, level: 3) }
        // The last possible sequence number: counting one past it trapped (the collector crashed).
        let top = JournalFraming.encode(kind: .record, sequence: .max, payload: Array("last".utf8))
        let topOfRange = UplinkBatch(deviceID: "ecu-02", epoch: 1, first: .max, last: .max, segmentStarts: [], codec: .none,
                                     bodyLength: UInt32(top.count), bodyChecksum: UplinkBatch.entriesChecksum(body: top, entries: [0..<top.count]))
            .encodedHeader() + top
        // A 4 GiB body stated in a few bytes: zero-filled before zstd failed.
        let huge = UplinkBatch(deviceID: "ecu-02", epoch: 1, first: 1, last: 1, segmentStarts: [], codec: .zstd,
                               bodyLength: .max, bodyChecksum: 0).encodedHeader() + [0x28, 0xB5, 0x2F, 0xFD]
        let messages: [(String, [UInt8])] = [
            ("garbage", Array("hello, collector".utf8)),
            ("an entry of a reserved kind (codec 2)", reservedKind),
            ("the last sequence number", topOfRange),
            ("a 4 GiB body", huge),
            ("names ecu-01 on ecu-02's topic", Self.oneEntryBatch("forged record", device: "ecu-01")),
            ("wrong checksum", Self.oneEntryBatch("forged record", checksum: checksum ^ 1)),
            ("body cut off", Array(Self.oneEntryBatch("forged record").dropLast(5))),
        ]
        for (index, (what, bytes)) in messages.enumerated() {
            try Self.publish(bytes, as: intruder, on: "devices/ecu-02/data", rig: rig, file: "forged-\(index).bin", what)
        }
        // The honest device's stream, while and after the intruder tried.
        try Self.runHonestDevice(rig)
        let verify = try rig.verify()
        #expect(verify.status == 0, "\(verify.stdout)")
        rig.stopCollector()

        let collector = rig.read("collector")
        let rejections = collector.components(separatedBy: "rejected a batch").count - 1
        #expect(rejections == messages.count, "\(collector)")
        #expect(collector.contains("ecu-01") && collector.contains("devices/ecu-02/data"), "the rejection names topic and device: \(collector)")
        #expect(collector.contains("entry kind 4 is reserved") && collector.contains("reaches the largest number")
                && collector.contains("over the most a batch may hold"), "\(collector)")
        #expect(!collector.contains("stopped"), "\(collector)")
        // Nothing of ecu-02's was committed.
        let journal = rig.collected.appendingPathComponent("ecu-02/journal")
        if FileManager.default.fileExists(atPath: journal.path) {
            let dump = try runProcess(UplinkRig.daqctl, ["journal", "dump", journal.path])
            #expect(dump.stdout.isEmpty, "\(dump.stdout)")
        }
    }

    /// The device id names a directory under --out: a certificate another tool issued with CN
    /// ".." (the broker's ACL lets it write `devices/../data`) made the collector write its copy
    /// beside the output directory. It is refused by name; other devices go on.
    @Test func aDeviceIDThatIsNotANameIsRefused() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        let pki = rig.broker.pkiDirectory
        let key = rig.work.appendingPathComponent("dotdot.key"), request = rig.work.appendingPathComponent("dotdot.csr")
        let certificate = rig.work.appendingPathComponent("dotdot.crt")
        for arguments in [["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.path,
                           "-subj", "/CN=..", "-out", request.path],
                          ["x509", "-req", "-in", request.path, "-CA", pki.appendingPathComponent("ca.crt").path,
                           "-CAkey", pki.appendingPathComponent("ca.key").path, "-set_serial", "4242", "-days", "1",
                           "-out", certificate.path]] {
            let made = try runProcess("/usr/bin/openssl", arguments)
            #expect(made.status == 0, "\(made.stderr)")
        }
        try Self.publish(Self.oneEntryBatch("outside", device: ".."), as: MQTTClientIdentity(name: "..", certificate: certificate, key: key), on: "devices/../data",
                         rig: rig, file: "dotdot.bin", "CN ..")
        try Self.runHonestDevice(rig)
        try rig.expectIdentical("beside a device named ..")
        rig.stopCollector()
        let collector = rig.read("collector")
        #expect(collector.contains("rejected a batch") && collector.contains("refused as a directory name under --out"), "\(collector)")
        #expect(!FileManager.default.fileExists(atPath: rig.work.appendingPathComponent("journal").path), "a copy beside --out")
    }

    /// A device sending epoch after epoch (each a new stream, each holding files open until the
    /// collector stops) is refused past `newStreamsLimit` new streams in a run: it ran the
    /// collector out of descriptors, for every device.
    @Test func aDeviceSendingEpochAfterEpochIsRefusedPastTheLimit() throws {
        let rig = try UplinkRig()
        let intruder = try rig.broker.issueDevice("ecu-02")
        try rig.startCollector()
        // The first stream, then 16 new ones (the limit), then one more.
        for epoch in UInt64(1)...18 {
            try Self.publish(Self.oneEntryBatch("one more stream", epoch: epoch), as: intruder, on: "devices/ecu-02/data", rig: rig, file: "epoch-\(epoch).bin", "epoch \(epoch)")
        }
        try Self.runHonestDevice(rig)
        try rig.expectIdentical("beside a device with 18 epochs")
        rig.stopCollector()
        let collector = rig.read("collector")
        #expect(collector.contains("ecu-02 sends epoch 18, its 17th new stream in this run: refused"), "\(collector)")
        let streams = try FileManager.default.contentsOfDirectory(atPath: rig.collected.appendingPathComponent("ecu-02").path)
            .filter { $0.hasPrefix("epoch-") }
        #expect(streams.count == 16, "\(streams.sorted())")
    }
}
