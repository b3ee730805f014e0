// The byte layout of one channel group's record, shaped as an MDF4 record so an MDF file later
// wraps the very same bytes: f64 time master, the channel values, then the invalidation bytes.

/// Where each value of a group's record lives.
///
/// Record bytes (little-endian), exactly an MDF4 sorted-data-group record:
/// `f64 time (s since measurement start) | channel values in declaration order | invalidation bits`.
/// Invalidation bit `i` (byte `i / 8`, bit `i % 8`) is set while channel `i` has never been received.
public struct RecordLayout: Sendable, Hashable {
    /// Byte offset of each channel's value.
    public let valueOffsets: [Int]
    /// Bytes of time master + values (MDF `data_bytes`).
    public let dataBytes: Int
    /// Bytes of invalidation bits (MDF `inval_bytes`).
    public let invalidationBytes: Int

    public init(_ group: ChannelGroup) {
        if group.loggedBuses != nil {
            valueOffsets = []
            dataBytes = BusFrameRecord.bytes
            invalidationBytes = 0
            return
        }
        var offset = 8
        var offsets: [Int] = []
        offsets.reserveCapacity(group.channels.count)
        for channel in group.channels {
            offsets.append(offset)
            offset += channel.storage.byteCount
        }
        valueOffsets = offsets
        dataBytes = offset
        invalidationBytes = (group.channels.count + 7) / 8
    }

    /// Whole record size in bytes.
    public var recordBytes: Int { dataBytes + invalidationBytes }
}

/// The journal payload of one record: `u16 record id` (group index + 1) + the MDF record bytes —
/// byte for byte a record of an unsorted MDF4 data group with 2-byte record ids, so a streaming
/// MDF file is the journal's payloads back to back.
public enum RecordPayload {
    /// Bytes before the MDF record.
    public static let headerBytes = 2

    /// The record id written for group `index` (MDF record ids start at 1 here).
    public static func recordID(group index: Int) -> UInt16 { UInt16(index + 1) }

    /// The group index of a record payload.
    public static func groupIndex(_ payload: UnsafeRawBufferPointer) -> Int {
        (Int(payload[0]) | Int(payload[1]) << 8) - 1
    }
}

/// The record of a raw bus-logging group (ASAM MDF bus logging, `CAN_DataFrame`), 23 bytes:
/// `f64 time | u32 ID (bits 0–28, IDE = bit 31) | u8 DLC (bits 0–3) + BusChannel (bits 4–7) |
/// u8 Dir (bit 0, 1 = Tx) + EDL (bit 2) + BRS (bit 3) + ESI (bit 4) | u8 DataLength | 8 data bytes`.
/// Classic CAN frames only: the 8 data bytes are fixed, unused ones zero.
public enum BusFrameRecord {
    public static let bytes = 23
    /// Where the composed `CAN_DataFrame` channel starts (after the time master).
    public static let frameOffset = 8
    public static let idOffset = 8
    public static let dlcOffset = 12
    public static let flagsOffset = 13
    public static let lengthOffset = 14
    public static let dataOffset = 15
    public static let dataCapacity = 8

    /// The fields of one frame record (the MDF record, without the journal's record id).
    public struct Fields: Sendable, Hashable {
        /// 1-based position of the bus in the group's bus list.
        public var busChannel: Int
        public var id: UInt32
        public var isExtended: Bool
        public var dlc: UInt8
        public var isTransmitted: Bool
        public var data: [UInt8]
    }

    /// Reads the frame record starting at `start` in `raw` (`bytes` long).
    public static func fields(_ raw: UnsafeRawBufferPointer, at start: Int) -> Fields {
        let id = raw.loadUnaligned(fromByteOffset: start + idOffset, as: UInt32.self).littleEndian
        let length = min(Int(raw[start + lengthOffset]), dataCapacity)
        return Fields(busChannel: Int(raw[start + dlcOffset] >> 4), id: id & 0x1FFF_FFFF, isExtended: id >> 31 == 1,
                      dlc: raw[start + dlcOffset] & 0x0F, isTransmitted: raw[start + flagsOffset] & 1 == 1,
                      data: Array(raw[(start + dataOffset)..<(start + dataOffset + length)]))
    }
}
