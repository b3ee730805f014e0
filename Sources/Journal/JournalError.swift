// Error codes of the journal, and the defects a scan can find in a segment's bytes.
import DAQCore

extension DAQError.Code {
    /// The journal's quota (or the filesystem) is full of unacknowledged entries; nothing was
    /// written and nothing already written was dropped.
    public static let journalFull = DAQError.Code("journal-full")
    /// A segment's bytes are not a valid journal (bad header, CRC, framing or sequence).
    public static let journalCorrupt = DAQError.Code("journal-corrupt")
    /// Another process holds the journal directory open for writing.
    public static let journalBusy = DAQError.Code("journal-busy")
    /// A caller asked for something the journal cannot do (ack beyond the synced entries,
    /// read from a sequence number already deleted, a payload over the size limit).
    public static let journalMisuse = DAQError.Code("journal-misuse")
}

/// What is wrong with a segment's bytes at some offset.
public enum JournalDefect: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file is shorter than a segment header.
    case tornHeader(available: Int)
    /// The first eight bytes are not the segment magic.
    case badMagic
    /// A format version this code does not read.
    case unsupportedVersion(UInt16)
    /// The header's CRC32C does not match its bytes.
    case headerChecksumMismatch
    /// The header's reserved fields or header length are not what format version 1 writes.
    case badHeaderField(String)
    /// The bytes end inside an entry (a write cut short by a crash).
    case torn(needed: Int, available: Int)
    /// The payload length field exceeds the format's maximum.
    case lengthTooLarge(UInt32)
    /// The entry's CRC32C does not match its header and payload.
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// A well-formed entry of a kind format version 1 reserves.
    case reservedKind(UInt8)
    /// A well-formed entry whose reserved header bytes are not zero.
    case reservedBytesSet
    /// A well-formed entry whose sequence number does not follow its predecessor.
    case sequenceGap(expected: UInt64, found: UInt64)

    public var description: String {
        switch self {
        case .tornHeader(let available):
            return "torn segment header: \(available) of \(SegmentHeader.length) bytes present"
        case .badMagic: return "not a journal segment (bad magic)"
        case .unsupportedVersion(let version): return "unsupported segment format version \(version)"
        case .headerChecksumMismatch: return "segment header CRC32C mismatch"
        case .badHeaderField(let what): return "bad segment header field: \(what)"
        case .torn(let needed, let available):
            return "torn entry: \(available) of \(needed) bytes present (unsynced tail of a crash)"
        case .lengthTooLarge(let length):
            return "entry payload length \(length) exceeds the maximum \(JournalFraming.maxPayloadLength)"
        case .checksumMismatch(let stored, let computed):
            return "entry CRC32C mismatch: stored \(hex8(stored)), computed \(hex8(computed))"
        case .reservedKind(let kind): return "entry kind \(kind) is reserved"
        case .reservedBytesSet: return "entry reserved bytes are not zero"
        case .sequenceGap(let expected, let found):
            return "sequence gap: expected seq \(expected), found \(found)"
        }
    }
}

func hex8(_ value: UInt32) -> String {
    let text = String(value, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: 8 - text.count) + text
}
