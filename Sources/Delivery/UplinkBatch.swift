// The wire form of one uplink batch: a checked header naming the device, the stream epoch and the
// sequence range, then the journal's own framed entries (optionally compressed). The collector
// appends those entry bytes unchanged, which is why its rebuilt journal is byte-identical.
import DAQCore
import Journal

/// One batch of journal entries as published on `devices/<id>/data`.
///
/// Header, little-endian (`docs/uplink.md`):
/// `"DQLB" | u8 version=2 | u8 codec | u16 header length | u64 epoch | u64 first seq | u64 last seq |
///  u32 body length (uncompressed) | u32 entries checksum (`entriesChecksum`) | u16 segment-start count |
///  u16 device id length | device id | segment starts (u64 each) | [codecs 3, 4: u64 context first |
///  u32 context checksum] | u32 CRC32C of the header so far`,
/// then the body (the entries' framed bytes; zstd-compressed when codec = 1, transposed by
/// `BatchTransform` and then zstd-compressed when codec = 2; codec 3 like 2 but transposed
/// against the context entries `contextFirst..<first`; codec 4 the same content against the same
/// context, range-coded by `ContextCoder`).
public struct UplinkBatch: Sendable, Hashable {
    /// Body compression. The header's body length and checksum always describe the uncompressed,
    /// untransformed body, so validation is the same for every codec.
    public enum Codec: UInt8, Sendable {
        /// The framed entries as they are.
        case none = 0
        /// The framed entries, zstd-compressed.
        case zstd = 1
        /// `BatchTransform` (index + per-group delta-coded column matrices), then zstd: about a
        /// third of codec 1's size on sampled records.
        case transposedZstd = 2
        /// `BatchTransform` format 2 continuing from the entries just before the batch (its
        /// `context`), then zstd: small low-latency batches compress like one long stream. The
        /// receiver decodes it only once it has committed the context entries.
        case contextTransposedZstd = 3
        /// The same content as codec 3, against the same context, written by `ContextCoder`
        /// (an adaptive range coder whose models start primed on the context) instead of zstd:
        /// small batches no longer pay for per-frame tables.
        case contextModelled = 4

        /// Codecs 3 and 4 are coded against the entries before the batch (`ContextReference`).
        public var usesContext: Bool { self == .contextTransposedZstd || self == .contextModelled }
    }

    /// The entries a codec-3 or codec-4 batch was coded against: `first..<batch.first`, and a CRC32C
    /// over their CRC32C trailers (each covers its entry) so a receiver holding other bytes there
    /// notices before decoding.
    public struct ContextReference: Sendable, Hashable {
        public var first: UInt64
        public var checksum: UInt32
        public init(first: UInt64, checksum: UInt32) {
            self.first = first
            self.checksum = checksum
        }

        /// The checksum of the framed entries `entries` of `body`: `UplinkBatch.entriesChecksum`.
        public static func checksum(body: UnsafeRawBufferPointer, entries: [Range<Int>]) -> UInt32 {
            UplinkBatch.entriesChecksum(body: body, entries: entries)
        }
    }

    /// The batch's body checksum: a CRC32C over the entries' own CRC32C trailers, in order. Each
    /// trailer covers its entry's header and payload, so this sees every byte, at 4 bytes of work
    /// per entry. (Not a CRC32C over the framed body itself: see `version`.)
    public static func entriesChecksum(body: UnsafeRawBufferPointer, entries: [Range<Int>]) -> UInt32 {
        var crc = CRC32C()
        for range in entries {
            crc.update(UnsafeRawBufferPointer(rebasing: body[(range.upperBound - JournalFraming.trailerLength)..<range.upperBound]))
        }
        return crc.value
    }

    /// `entriesChecksum` of a framed body held in an array.
    public static func entriesChecksum(body: [UInt8], entries: [Range<Int>]) -> UInt32 {
        body.withUnsafeBytes { entriesChecksum(body: $0, entries: entries) }
    }

    /// Most context entries a codec-3 or codec-4 batch may name: bounds what a receiver reads to rebuild it.
    public static let maxContextEntries: UInt64 = 4096

    /// The largest body a batch may state: what a receiver allocates to decompress one is bounded
    /// by it (a 60-byte message stating 4 GiB made the collector zero-fill 4 GiB before zstd
    /// failed). Room for the device's largest batch (`maxBatchBytes`) and for a single entry of
    /// the journal's largest payload, which goes alone.
    public static let maxBodyLength = 40 << 20
    /// The most journal bytes a device puts into one message (`daqlink run --max-batch-bytes`).
    public static let maxBatchBytes = 32 << 20

    public static let magic: [UInt8] = Array("DQLB".utf8)
    /// 2: the body checksum is `entriesChecksum` (version 1's CRC32C over the whole framed body
    /// could not see content: a CRC32C run over entries that each end in their own CRC32C lands on
    /// the same value whatever the entries hold, so it only vouched for their lengths).
    public static let version: UInt8 = 2

    public var deviceID: String
    /// Changes when a device's journal is started afresh, so a collector never mixes two streams.
    public var epoch: UInt64
    public var first: UInt64
    public var last: UInt64
    /// Sequence numbers in `first...last` that begin a new journal segment on the device, so the
    /// collector cuts its segments at the same entries.
    public var segmentStarts: [UInt64]
    public var codec: Codec
    /// Length of the uncompressed body and its `entriesChecksum`.
    public var bodyLength: UInt32
    public var bodyChecksum: UInt32
    /// Codecs 3 and 4 only: the context entries the body was coded against.
    public var context: ContextReference?

    public init(deviceID: String, epoch: UInt64, first: UInt64, last: UInt64, segmentStarts: [UInt64],
                codec: Codec, bodyLength: UInt32, bodyChecksum: UInt32, context: ContextReference? = nil) {
        self.deviceID = deviceID
        self.epoch = epoch
        self.first = first
        self.last = last
        self.segmentStarts = segmentStarts
        self.codec = codec
        self.bodyLength = bodyLength
        self.bodyChecksum = bodyChecksum
        self.context = context
    }

    /// The encoded header.
    public func encodedHeader() -> [UInt8] {
        precondition(codec.usesContext == (context != nil), "codecs 3 and 4, and only they, name a context")
        var out = UplinkBatch.magic
        out.append(UplinkBatch.version)
        out.append(codec.rawValue)
        let id = Array(deviceID.utf8)
        let length = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4 + 4 + 2 + 2 + id.count + 8 * segmentStarts.count + (context == nil ? 0 : 12) + 4
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
        if let context {
            append(context.first, to: &out)
            append(context.checksum, to: &out)
        }
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
        let contextLength = codec.usesContext ? 12 : 0
        guard 44 + idLength + 8 * startCount + contextLength + 4 == headerLength else { throw bad("header fields do not add up", "header length") }
        guard first >= 1, first <= last else { throw bad("sequence range \(first)…\(last) is empty", "sequence") }
        // The walk counts one past the last entry.
        guard last < UInt64.max else { throw bad("sequence range \(first)…\(last) reaches the largest number", "sequence") }
        guard Int(bodyLength) <= maxBodyLength else {
            throw bad("body length \(bodyLength) is over the most a batch may hold (\(maxBodyLength))", "body length")
        }
        guard let deviceID = String(validating: UnsafeRawBufferPointer(rebasing: message[44..<(44 + idLength)]).bindMemory(to: UInt8.self), as: UTF8.self)
        else { throw bad("device id is not UTF-8", "device id") }
        var starts: [UInt64] = []
        for index in 0..<startCount {
            let start = load(UInt64.self, message, 44 + idLength + 8 * index)
            guard start >= first, start <= last else { throw bad("segment start \(start) outside \(first)…\(last)", "segment starts") }
            starts.append(start)
        }
        var context: ContextReference?
        if contextLength > 0 {
            let at = 44 + idLength + 8 * startCount
            let contextFirst = load(UInt64.self, message, at)
            guard contextFirst >= 1, contextFirst < first, first - contextFirst <= maxContextEntries else {
                throw bad("context \(contextFirst)..<\(first) is empty or longer than \(maxContextEntries) entries", "context")
            }
            context = ContextReference(first: contextFirst, checksum: load(UInt32.self, message, at + 8))
        }
        let batch = UplinkBatch(deviceID: deviceID, epoch: epoch, first: first, last: last, segmentStarts: starts,
                                codec: codec, bodyLength: bodyLength, bodyChecksum: bodyChecksum, context: context)
        return (batch, headerLength)
    }

    /// Checks an (uncompressed) body against the header: length, CRC32C, and that it is exactly the
    /// framed entries `first...last`. Returns each entry's byte range in the body.
    /// `entriesSealed`: the receiver framed and CRC'd the entries itself (`BatchTransform.decode`),
    /// so only their layout is walked; their CRC32Cs are not computed a second time.
    public func validate(body: UnsafeRawBufferPointer, entriesSealed: Bool = false, source: String) throws(DAQError) -> [Range<Int>] {
        func bad(_ text: String, _ field: String) -> DAQError {
            DAQError(.malformedInput, text, at: InputLocation(file: source, field: field))
        }
        guard body.count == Int(bodyLength) else { throw bad("body is \(body.count) bytes, header says \(bodyLength)", "body length") }
        var ranges: [Range<Int>] = []
        var offset = 0
        var expected = first
        while offset < body.count {
            // Sealed entries: everything but the CRC32C (kind, reserved bytes, sequence, length).
            switch JournalFraming.decode(body, at: offset, expectedSequence: expected, checksumVerified: entriesSealed) {
            case .entry(_, _, _, let length):
                ranges.append(offset..<(offset + length))
                offset += length
                expected += 1
            case .invalid(let defect):
                throw bad("entry \(expected) at body byte \(offset) is not a valid journal entry: \(defect)", "entries")
            case .incomplete:
                throw bad("entry \(expected) at body byte \(offset) is cut short by the body's end", "entries")
            }
        }
        guard expected == last + 1 else { throw bad("body holds \(first)…\(expected - 1), header says …\(last)", "entries") }
        // After the walk: the entries' CRC32Cs are known good (checked, or made by the receiver).
        guard UplinkBatch.entriesChecksum(body: body, entries: ranges) == bodyChecksum else {
            throw bad("body checksum mismatch", "body crc")
        }
        return ranges
    }
}

private func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
}

private func load<T: FixedWidthInteger>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> T {
    T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
}
