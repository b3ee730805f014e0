// One journal entry: its kind, its framing on disk (header, payload, CRC32C trailer), and the
// decoding step shared by the recovery scan, the reader and verify.

/// What an entry's payload is. Format version 1 defines 0 to 3; the rest are reserved.
public struct JournalEntryKind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A channel-group record from the sampler (opaque bytes laid out like an MDF4 record).
    public static let record = JournalEntryKind(rawValue: 0)
    /// A description of channel groups, so a dump can decode records without the experiment file.
    public static let layout = JournalEntryKind(rawValue: 1)
    /// A stand-in for an entry the device could not read back from its own journal (damaged
    /// storage): the uplink sends one in its place, so the collector's copy holds every sequence
    /// number and the rest of the stream flows. The payload says why, in UTF-8 text. Only a
    /// collector's copy holds these; the sampler never appends one.
    public static let lost = JournalEntryKind(rawValue: 2)
    /// The layout of the measurement in force, repeated as the first entry of each new segment
    /// (the payload is the layout entry's, byte for byte). It starts no new measurement: it lets a
    /// reader decode the segment's records when retention has deleted the segment holding the
    /// layout entry itself.
    public static let layoutRepeat = JournalEntryKind(rawValue: 3)

    /// Whether format version 1 defines this kind.
    public var isDefined: Bool { rawValue <= 3 }

    public var description: String {
        switch rawValue {
        case 0: return "record"
        case 1: return "layout"
        case 2: return "lost"
        case 3: return "layout-repeat"
        default: return "reserved(\(rawValue))"
        }
    }
}

/// A decoded entry: its sequence number, kind, payload, and its exact framed bytes (what the
/// uplink ships so the collector can rebuild a byte-identical journal).
public struct JournalEntry: Sendable, Hashable {
    /// The entry's sequence number (≥ 1, consecutive across the journal).
    public var sequence: UInt64
    public var kind: JournalEntryKind
    /// The opaque bytes the sampler appended.
    public var payload: [UInt8]
    /// Header + payload + CRC32C, exactly as stored in the segment.
    public var framed: [UInt8]

    public init(sequence: UInt64, kind: JournalEntryKind, payload: [UInt8], framed: [UInt8]) {
        self.sequence = sequence
        self.kind = kind
        self.payload = payload
        self.framed = framed
    }
}

/// The byte layout of an entry (all integers little-endian):
///
/// | offset | size | field                                    |
/// |--------|------|------------------------------------------|
/// | 0      | 4    | payload length N                         |
/// | 4      | 1    | kind (0 record, 1 layout, 2 lost, 3 layout repeat, others reserved)|
/// | 5      | 3    | reserved, zero                           |
/// | 8      | 8    | sequence number                          |
/// | 16     | N    | payload                                  |
/// | 16+N   | 4    | CRC32C of bytes 0 ..< 16+N               |
public enum JournalFraming {
    /// Bytes before the payload.
    public static let headerLength = 16
    /// The CRC32C after the payload.
    public static let trailerLength = 4
    /// Bytes an entry occupies beyond its payload.
    public static let overhead = headerLength + trailerLength
    /// The largest payload: bounds what a corrupt length field can make a reader allocate.
    public static let maxPayloadLength = 16 << 20

    /// Bytes an entry with `payloadLength` bytes of payload occupies.
    public static func framedLength(payloadLength: Int) -> Int { payloadLength + overhead }

    /// Writes the 16-byte entry header into `header` (which must hold at least 16 bytes).
    public static func writeHeader(kind: JournalEntryKind, sequence: UInt64, payloadLength: Int,
                                   into header: UnsafeMutableRawBufferPointer) {
        precondition(header.count >= headerLength, "entry header buffer too small")
        header.storeLE(UInt32(payloadLength), at: 0)
        header.storeLE(kind.rawValue, at: 4)
        header.storeLE(UInt8(0), at: 5)
        header.storeLE(UInt16(0), at: 6)
        header.storeLE(sequence, at: 8)
    }

    /// Appends the framed entry to `output`.
    public static func encode(kind: JournalEntryKind, sequence: UInt64, payload: UnsafeRawBufferPointer,
                              into output: inout [UInt8]) {
        precondition(payload.count <= maxPayloadLength, "journal payload over \(maxPayloadLength) bytes")
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: framedLength(payloadLength: payload.count)))
        output.withUnsafeMutableBytes { all in
            let frame = UnsafeMutableRawBufferPointer(rebasing: all[start...])
            writeHeader(kind: kind, sequence: sequence, payloadLength: payload.count, into: frame)
            if payload.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: frame[headerLength..<(headerLength + payload.count)])
                    .copyMemory(from: payload)
            }
            let covered = UnsafeRawBufferPointer(rebasing: frame[0..<(headerLength + payload.count)])
            frame.storeLE(CRC32C.checksum(covered), at: headerLength + payload.count)
        }
    }

    /// The framed bytes of one entry.
    public static func encode(kind: JournalEntryKind, sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(framedLength(payloadLength: payload.count))
        payload.withUnsafeBytes { encode(kind: kind, sequence: sequence, payload: $0, into: &output) }
        return output
    }

    /// The outcome of decoding at one offset.
    public enum Step: Sendable, Hashable {
        /// A valid entry occupying `framedLength` bytes; its payload starts 16 bytes in.
        case entry(kind: JournalEntryKind, sequence: UInt64, payloadLength: Int, framedLength: Int)
        /// The bytes end before the entry does: `needed` bytes (from the offset) are required.
        case incomplete(needed: Int)
        /// The bytes at the offset are not a valid entry.
        case invalid(JournalDefect)
    }

    /// Decodes the entry at `offset` of `bytes`, which must carry `expectedSequence`.
    /// Checks run in the order that names the real problem: bounds, completeness, CRC (so torn
    /// or garbled bytes are never blamed on the sequence), then the fields the CRC vouches for.
    /// `checksumVerified`: the caller computed or checked this entry's CRC32C over these very
    /// bytes a moment ago, so it is not computed again (every other check still runs).
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int, expectedSequence: UInt64,
                              checksumVerified: Bool = false) -> Step {
        let available = bytes.count - offset
        guard available >= headerLength else { return .incomplete(needed: headerLength) }
        let length = bytes.le32(at: offset)
        guard length <= UInt32(maxPayloadLength) else { return .invalid(.lengthTooLarge(length)) }
        let framed = framedLength(payloadLength: Int(length))
        guard available >= framed else { return .incomplete(needed: framed) }
        if !checksumVerified {
            let covered = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + headerLength + Int(length))])
            let computed = CRC32C.checksum(covered)
            let stored = bytes.le32(at: offset + headerLength + Int(length))
            guard computed == stored else { return .invalid(.checksumMismatch(stored: stored, computed: computed)) }
        }
        let kind = JournalEntryKind(rawValue: bytes[offset + 4])
        guard kind.isDefined else { return .invalid(.reservedKind(kind.rawValue)) }
        guard bytes[offset + 5] == 0, bytes[offset + 6] == 0, bytes[offset + 7] == 0 else {
            return .invalid(.reservedBytesSet)
        }
        let sequence = bytes.le64(at: offset + 8)
        guard sequence == expectedSequence else {
            return .invalid(.sequenceGap(expected: expectedSequence, found: sequence))
        }
        return .entry(kind: kind, sequence: sequence, payloadLength: Int(length), framedLength: framed)
    }
}
