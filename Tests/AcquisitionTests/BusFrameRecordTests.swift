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

    @Test func fdGroupsLogEveryDataFrameIn64DataBytes() {
        let groups = [ChannelGroup(name: "FD", trigger: .busFrames(buses: ["can0"], fd: true), channels: []),
                      ChannelGroup(name: "Classic", trigger: .busFrames(buses: ["can0"]), channels: [])]
        var sampler = Sampler(groups: groups)
        #expect(RecordLayout(groups[0]).recordBytes == BusFrameRecord.fdBytes && BusFrameRecord.fdBytes == 79)
        var out = RecordBuffer()
        let lengths = [0, 8, 12, 16, 20, 24, 32, 48, 64, 10]
        for (index, length) in lengths.enumerated() {
            let time = Timestamp(nanoseconds: Int64(index) * 1_000_000)
            let frame = CANFrame(timestamp: time, interface: "can0", id: 0x1ABC_DEF0, isExtended: true, isFD: true,
                                 bitRateSwitch: index % 2 == 0, errorStateIndicator: index == 3,
                                 data: CANPayload((0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }))
            sampler.advance(to: time, into: &out)
            sampler.logFrame(frame, at: time, into: &out)
        }
        // A classic frame in an FD group: DLC is its length, EDL clear.
        let classic = CANFrame(timestamp: Timestamp(nanoseconds: 20_000_000), interface: "can0", id: 0x123, data: CANPayload([1, 2, 3]))
        sampler.advance(to: classic.timestamp, into: &out)
        sampler.logFrame(classic, at: classic.timestamp, into: &out)

        let fd = (0..<out.count).compactMap { index in
            out.withPayload(index) { raw -> ([UInt8], BusFrameRecord.Fields, BusFrameRecord.FDFlags)? in
                guard RecordPayload.groupIndex(raw) == 0 else { return nil }
                #expect(raw.count == RecordPayload.headerBytes + 79)
                let record = UnsafeRawBufferPointer(rebasing: raw[RecordPayload.headerBytes...])
                return (Array(record), BusFrameRecord.fields(record, at: 0, fd: true), BusFrameRecord.fdFlags(record, at: 0))
            }
        }
        #expect(fd.count == lengths.count + 1)
        #expect(out.count == fd.count + 3, "the classic group logs the 0- and 8-byte FD frames and the classic frame")
        #expect(sampler.busFramesTooLong == 8, "the classic group counts the eight FD frames over 8 bytes")
        #expect(fd.map(\.1.dlc) == [0, 8, 9, 10, 11, 12, 13, 14, 15, 9, 3], "FD DLC codes; 10 bytes need code 9 (12 bytes)")
        #expect(fd.map { $0.0[Int(BusFrameRecord.lengthOffset)] } == lengths.map(UInt8.init) + [3], "DataLength is the actual length")
        for (index, length) in lengths.enumerated() {
            #expect(fd[index].1 == .init(busChannel: 1, id: 0x1ABC_DEF0, isExtended: true, dlc: fd[index].1.dlc, isTransmitted: false,
                                         data: (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }))
            #expect(fd[index].2 == .init(isFD: true, bitRateSwitch: index % 2 == 0, errorStateIndicator: index == 3))
            #expect(fd[index].0[(BusFrameRecord.dataOffset + length)...].allSatisfy { $0 == 0 }, "unused data bytes are zero")
        }
        #expect(fd[lengths.count].1 == .init(busChannel: 1, id: 0x123, isExtended: false, dlc: 3, isTransmitted: false, data: [1, 2, 3]))
        #expect(fd[lengths.count].2 == .init(isFD: false, bitRateSwitch: false, errorStateIndicator: false))
        #expect(BusFrameRecord.fdLengths.enumerated().allSatisfy { BusFrameRecord.fdDLC(length: $0.element) == UInt8($0.offset) })
    }
}
