// The wire form of one uplink batch: a checked header naming the device, the stream epoch and the
// sequence range, then the journal's own framed entries (optionally compressed). The collector
// appends those entry bytes unchanged, which is why its rebuilt journal is byte-identical.
import DAQCore
import Journal

/// One batch of journal entries as published on `devices/<id>/data`.
///
/// Header, little-endian (`docs/uplink.md`):
/// `"DQLB" | u8 version=1 | u8 codec | u16 header length | u64 epoch | u64 first seq | u64 last seq |
///  u32 body length (uncompressed) | u32 CRC32C of the uncompressed body | u16 segment-start count |
///  u16 device id length | device id | segment starts (u64 each) | u32 CRC32C of the header so far`,
/// then the body (the entries' framed bytes; zstd-compressed when codec = 1, transposed by
/// `BatchTransform` and then zstd-compressed when codec = 2).
public struct UplinkBatch: Sendable, Hashable {
    /// Body compression. The header's body length and CRC32C always describe the uncompressed,
    /// untransformed body, so validation is the same for every codec.
    public enum Codec: UInt8, Sendable {
        /// The framed entries as they are.
        case none = 0
        /// The framed entries, zstd-compressed.
        case zstd = 1
        /// `BatchTransform` (index + per-group delta-coded column matrices), then zstd: about a
        /// third of codec 1's size on sampled records.
        case transposedZstd = 2
    }

    public static let magic: [UInt8] = Array("DQLB".utf8)
    public static let version: UInt8 = 1

    public var deviceID: String
    /// Changes when a device's journal is started afresh, so a collector never mixes two streams.
    public var epoch: UInt64
    public var first: UInt64
    public var last: UInt64
    /// Sequence numbers in `first...last` that begin a new journal segment on the device, so the
    /// collector cuts its segments at the same entries.
    public var segmentStarts: [UInt64]
    public var codec: Codec
    /// Length and CRC32C of the uncompressed body.
    public var bodyLength: UInt32
    public var bodyChecksum: UInt32

    public init(deviceID: String, epoch: UInt64, first: UInt64, last: UInt64, segmentStarts: [UInt64],
                codec: Codec, bodyLength: UInt32, bodyChecksum: UInt32) {
        self.deviceID = deviceID
        self.epoch = epoch
        self.first = first
        self.last = last
        self.segmentStarts = segmentStarts
        self.codec = codec
        self.bodyLength = bodyLength
        self.bodyChecksum = bodyChecksum
    }

    /// The encoded header.
    public func encodedHeader() -> [UInt8] {
        var out = UplinkBatch.magic
        out.append(UplinkBatch.version)
        out.append(codec.rawValue)
        let id = Array(deviceID.utf8)
        let length = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4 + 4 + 2 + 2 + id.count + 8 * segmentStarts.count + 4
        append(UInt16(length), to: &out)
        append(epoch, to: &out)
        append(first, to: &out)
        append(last, to: &out)
        append(bodyLength, to: &out)
        append(bodyChecksum, to: &out)
        append(UInt16(segmentStarts.count), to: &out)
        append(UInt16(id.count), to: &out)
        out += id
        for start in segmentStarts { append(start, to: &out) }
        append(CRC32C.checksum(out), to: &out)
        return out
    }

    /// Reads a header from the start of `message`; returns it and where the body starts.
    /// Throws a malformed-input error naming the field for anything inconsistent.
    public static func decodeHeader(_ message: UnsafeRawBufferPointer, source: String) throws(DAQError) -> (UplinkBatch, Int) {
        func bad(_ text: String, _ field: String) -> DAQError {
            DAQError(.malformedInput, text, at: InputLocation(file: source, field: field))
        }
        guard message.count >= 46 else { throw bad("batch shorter than its header (\(message.count) bytes)", "header") }
        guard Array(message[0..<4]) == magic else { throw bad("not a DAQLink batch (magic)", "magic") }
        guard message[4] == version else { throw bad("unsupported batch version \(message[4])", "version") }
        guard let codec = Codec(rawValue: message[5]) else { throw bad("unknown codec \(message[5])", "codec") }
        let headerLength = Int(load(UInt16.self, message, 6))
        guard headerLength >= 46, headerLength <= message.count else { throw bad("header length \(headerLength) out of range", "header length") }
        let stored = load(UInt32.self, message, headerLength - 4)
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: message[0..<(headerLength - 4)])) == stored else {
            throw bad("header checksum mismatch", "header crc")
        }
        let epoch = load(UInt64.self, message, 8)
        let first = load(UInt64.self, message, 16)
        let last = load(UInt64.self, message, 24)
        let bodyLength = load(UInt32.self, message, 32)
        let bodyChecksum = load(UInt32.self, message, 36)
        let startCount = Int(load(UInt16.self, message, 40))
        let idLength = Int(load(UInt16.self, message, 42))
        guard 44 + idLength + 8 * startCount + 4 == headerLength else { throw bad("header fields do not add up", "header length") }
        guard first >= 1, first <= last else { throw bad("sequence range \(first)…\(last) is empty", "sequence") }
        guard let deviceID = String(validating: UnsafeRawBufferPointer(rebasing: message[44..<(44 + idLength)]).bindMemory(to: UInt8.self), as: UTF8.self)
        else { throw bad("device id is not UTF-8", "device id") }
        var starts: [UInt64] = []
        for index in 0..<startCount {
            let start = load(UInt64.self, message, 44 + idLength + 8 * index)
            guard start >= first, start <= last else { throw bad("segment start \(start) outside \(first)…\(last)", "segment starts") }
            starts.append(start)
        }
        let batch = UplinkBatch(deviceID: deviceID, epoch: epoch, first: first, last: last, segmentStarts: starts,
                                codec: codec, bodyLength: bodyLength, bodyChecksum: bodyChecksum)
        return (batch, headerLength)
    }

    /// Checks an (uncompressed) body against the header: length, CRC32C, and that it is exactly the
    /// framed entries `first...last`. Returns each entry's byte range in the body.
    public func validate(body: UnsafeRawBufferPointer, source: String) throws(DAQError) -> [Range<Int>] {
        func bad(_ text: String, _ field: String) -> DAQError {
            DAQError(.malformedInput, text, at: InputLocation(file: source, field: field))
        }
        guard body.count == Int(bodyLength) else { throw bad("body is \(body.count) bytes, header says \(bodyLength)", "body length") }
        guard CRC32C.checksum(body) == bodyChecksum else { throw bad("body checksum mismatch", "body crc") }
        var ranges: [Range<Int>] = []
        var offset = 0
        var expected = first
        while offset < body.count {
            switch JournalFraming.decode(body, at: offset, expectedSequence: expected) {
            case .entry(_, _, _, let length):
                ranges.append(offset..<(offset + length))
                offset += length
                expected += 1
            default:
                throw bad("entry \(expected) at body byte \(offset) is not a valid journal entry", "entries")
            }
        }
        guard expected == last + 1 else { throw bad("body holds \(first)…\(expected - 1), header says …\(last)", "entries") }
        return ranges
    }
}

private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
}

private func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> T {
    T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
}
