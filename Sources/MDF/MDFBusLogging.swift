// The channels of a raw CAN bus-logging group in the ASAM MDF bus-logging layout: one composed
// byte-array channel `CAN_DataFrame` over the frame bytes of `BusFrameRecord`, whose composition
// chain names the frame's fields. asammdf's `extract_bus_logging` looks for exactly these names
// in a channel group flagged as bus event with a CAN source. A CAN FD group's DataBytes is a fixed
// 64-byte array (asammdf decodes signals from its bit positions; DataLength says how many are used).
import Acquisition

/// Writes the `CAN_DataFrame` channel and its members.
enum MDFBusLogging {
    /// (name, byte offset, bit offset, bit count, MDF data type) of each `CAN_DataFrame.*` member
    /// of a classic group; an FD group's `DataBytes` is `BusFrameRecord.fdDataCapacity` bytes.
    static let members: [(name: String, byte: Int, bit: UInt8, bits: UInt32, dataType: UInt8)] = [
        ("BusChannel", BusFrameRecord.dlcOffset, 4, 4, 0),
        ("ID", BusFrameRecord.idOffset, 0, 29, 0),
        ("IDE", BusFrameRecord.idOffset + 3, 7, 1, 0),
        ("DLC", BusFrameRecord.dlcOffset, 0, 4, 0),
        ("DataLength", BusFrameRecord.lengthOffset, 0, 8, 0),
        ("DataBytes", BusFrameRecord.dataOffset, 0, UInt32(BusFrameRecord.dataCapacity * 8), 10),
        ("Dir", BusFrameRecord.flagsOffset, 0, 1, 0),
        ("EDL", BusFrameRecord.flagsOffset, 2, 1, 0),
        ("BRS", BusFrameRecord.flagsOffset, 3, 1, 0),
        ("ESI", BusFrameRecord.flagsOffset, 4, 1, 0),
    ]

    /// CN flag: the channel is part of a bus event.
    static let busEventFlag: UInt32 = 0x400

    /// The `CAN_DataFrame` channel (byte array over the whole frame) with its composition chain,
    /// sized for classic or CAN FD (`fd`) records; returns its address.
    static func writeFrameChannel(_ image: inout MDFImage, source: UInt64, fd: Bool) -> UInt64 {
        let frameName = image.text("CAN_DataFrame")
        let frameBytes = UInt32((BusFrameRecord.bytes(fd: fd) - BusFrameRecord.frameOffset) * 8)
        let frame = image.block("##CN", links: [0, 0, frameName, source, 0, 0, 0, 0],
                                data: MDFWriter.channelData(type: 0, sync: 0, dataType: 10, byteOffset: UInt32(BusFrameRecord.frameOffset),
                                                            bits: frameBytes, invalidationBit: nil, flags: busEventFlag))
        var previous: UInt64 = 0
        for var member in members {
            if member.name == "DataBytes" { member.bits = UInt32(BusFrameRecord.dataCapacity(fd: fd) * 8) }
            let name = image.text("CAN_DataFrame." + member.name)
            let channel = image.block("##CN", links: [0, 0, name, source, 0, 0, 0, 0],
                                      data: MDFWriter.channelData(type: 0, sync: 0, dataType: member.dataType,
                                                                  byteOffset: UInt32(member.byte), bitOffset: member.bit,
                                                                  bits: member.bits, invalidationBit: nil, flags: busEventFlag))
            image.setLink(of: previous == 0 ? frame : previous, index: previous == 0 ? 1 : 0, to: channel)
            previous = channel
        }
        return frame
    }
}
