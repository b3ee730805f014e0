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
            dataBytes = BusFrameRecord.bytes(fd: group.logsFDFrames)
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

/// The record of a raw bus-logging group (ASAM MDF bus logging, `CAN_DataFrame`):
/// `f64 time | u32 ID (bits 0–28, IDE = bit 31) | u8 DLC (bits 0–3) + BusChannel (bits 4–7) |
/// u8 Dir (bit 0, 1 = Tx) + EDL (bit 2) + BRS (bit 3) + ESI (bit 4) | u8 DataLength | data bytes`.
/// A classic group's record has 8 data bytes (23 bytes in all) and logs frames of up to 8 bytes
/// with DLC = length; a CAN FD group's record has 64 data bytes (79 in all) and logs every data
/// frame, DLC being the FD code (0–15) of its length. Unused data bytes are zero.
public enum BusFrameRecord {
    /// Bytes of a classic group's record.
    public static let bytes = 23
    /// Bytes of a CAN FD group's record.
    public static let fdBytes = 79
    /// Where the composed `CAN_DataFrame` channel starts (after the time master).
    public static let frameOffset = 8
    public static let idOffset = 8
    public static let dlcOffset = 12
    public static let flagsOffset = 13
    public static let lengthOffset = 14
    public static let dataOffset = 15
    /// Data bytes of a classic group's record.
    public static let dataCapacity = 8
    /// Data bytes of a CAN FD group's record.
    public static let fdDataCapacity = 64

    /// Record bytes of a classic (`fd` false) or CAN FD group.
    public static func bytes(fd: Bool) -> Int { fd ? fdBytes : bytes }
    /// Data bytes of a classic (`fd` false) or CAN FD group's record.
    public static func dataCapacity(fd: Bool) -> Int { fd ? fdDataCapacity : dataCapacity }

    /// The CAN FD data length code of a payload of `length` bytes (0–64): the smallest code whose
    /// length holds it (0–8 → 0–8, 12 → 9, 16 → 10, 20 → 11, 24 → 12, 32 → 13, 48 → 14, 64 → 15).
    public static func fdDLC(length: Int) -> UInt8 {
        precondition((0...64).contains(length), "a CAN FD payload holds 0…64 bytes, not \(length)")
        if length <= 8 { return UInt8(length) }
        return UInt8(fdLengths.firstIndex { $0 >= length }!)
    }

    /// The payload length of each CAN FD DLC code.
    public static let fdLengths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]

    /// The fields of one frame record (the MDF record, without the journal's record id).
    public struct Fields: Sendable, Hashable {
        /// 1-based position of the bus in the group's bus list.
        public var busChannel: Int
        public var id: UInt32
        public var isExtended: Bool
        /// The DLC code (classic: the length; FD: 0–15).
        public var dlc: UInt8
        public var isTransmitted: Bool
        /// The frame's data (DataLength bytes).
        public var data: [UInt8]
    }

    /// The CAN FD bits of a frame record.
    public struct FDFlags: Sendable, Hashable {
        /// EDL: a CAN FD frame.
        public var isFD: Bool
        public var bitRateSwitch: Bool
        public var errorStateIndicator: Bool
    }

    /// Reads the frame record starting at `start` in `raw` (`bytes(fd:)` long).
    public static func fields(_ raw: UnsafeRawBufferPointer, at start: Int, fd: Bool = false) -> Fields {
        let id = raw.loadUnaligned(fromByteOffset: start + idOffset, as: UInt32.self).littleEndian
        let length = min(Int(raw[start + lengthOffset]), dataCapacity(fd: fd))
        return Fields(busChannel: Int(raw[start + dlcOffset] >> 4), id: id & 0x1FFF_FFFF, isExtended: id >> 31 == 1,
                      dlc: raw[start + dlcOffset] & 0x0F, isTransmitted: raw[start + flagsOffset] & 1 == 1,
                      data: Array(raw[(start + dataOffset)..<(start + dataOffset + length)]))
    }

    /// Reads the EDL/BRS/ESI bits of the frame record starting at `start` in `raw`.
    public static func fdFlags(_ raw: UnsafeRawBufferPointer, at start: Int) -> FDFlags {
        let flags = raw[start + flagsOffset]
        return FDFlags(isFD: flags & 0x04 != 0, bitRateSwitch: flags & 0x08 != 0, errorStateIndicator: flags & 0x10 != 0)
    }
}
