// Raw bus-logging groups: the sampler writes a BusFrameRecord per data frame of the group's buses,
// with the fields in the bits the MDF CAN_DataFrame channels describe.
import Testing
import DAQCore
@testable import Acquisition

@Suite struct BusFrameRecordTests {
    @Test func framesOfTheGroupsBusesBecomeRecords() {
        let groups = [ChannelGroup(name: "Frames", trigger: .busFrames(buses: ["can0", "can1"]), channels: [])]
        var sampler = Sampler(groups: groups)
        var out = RecordBuffer()
        let start = Timestamp(nanoseconds: 1_000_000_000)
        let frames = [
            CANFrame(timestamp: start, interface: "can1", id: 0x1234_5678, isExtended: true, data: CANPayload([1, 2, 3]), isReceived: false),
            CANFrame(timestamp: Timestamp(nanoseconds: 1_002_000_000), interface: "can9", id: 0x100, data: CANPayload([9])),
            CANFrame(timestamp: Timestamp(nanoseconds: 1_003_000_000), interface: "can0", id: 0x7FF, isFD: true, bitRateSwitch: true,
                     data: CANPayload(Array(repeating: 0xAA, count: 12))),
            CANFrame(timestamp: Timestamp(nanoseconds: 1_004_000_000), interface: "can0", id: 0x7FF, isFD: true, bitRateSwitch: true,
                     errorStateIndicator: true, data: CANPayload([0xAB])),
        ]
        for frame in frames {
            sampler.advance(to: frame.timestamp, into: &out)
            sampler.logFrame(frame, at: frame.timestamp, into: &out)
        }
        #expect(out.count == 2, "other buses are not logged, FD payloads over 8 bytes are counted")
        #expect(sampler.busFramesTooLong == 1)
        let records = (0..<out.count).map { index in
            out.withPayload(index) { raw -> ([UInt8], Double, BusFrameRecord.Fields) in
                #expect(raw.count == RecordPayload.headerBytes + BusFrameRecord.bytes)
                let record = UnsafeRawBufferPointer(rebasing: raw[RecordPayload.headerBytes...])
                return (Array(raw), Double(bitPattern: record.loadUnaligned(as: UInt64.self)), BusFrameRecord.fields(record, at: 0))
            }
        }
        #expect(records[0].0[0...1] == [1, 0], "record id of group 0")
        #expect(records[0].1 == 0 && records[1].1 == 0.004)
        #expect(records[0].2 == .init(busChannel: 2, id: 0x1234_5678, isExtended: true, dlc: 3, isTransmitted: true, data: [1, 2, 3]))
        #expect(records[1].2 == .init(busChannel: 1, id: 0x7FF, isExtended: false, dlc: 1, isTransmitted: false, data: [0xAB]))
        // Bytes as the MDF channels read them: IDE bit 31, BusChannel in the DLC byte's high nibble,
        // EDL/BRS/ESI bits 2–4, DataLength, zero-filled data bytes.
        #expect(Array(records[0].0[10...24]) == [0x78, 0x56, 0x34, 0x92, 0x23, 0x01, 3, 1, 2, 3, 0, 0, 0, 0, 0])
        #expect(records[1].0[15] == 0x1C, "FD + BRS + ESI, received")
    }
}
