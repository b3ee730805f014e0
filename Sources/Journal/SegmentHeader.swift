// The 40-byte header at the start of every segment file, and segment file naming.

/// The header of a segment file (all integers little-endian):
///
/// | offset | size | field                                  |
/// |--------|------|----------------------------------------|
/// | 0      | 8    | magic `DAQJRNL\0`                      |
/// | 8      | 2    | format version (1)                     |
/// | 10     | 2    | header length (40)                     |
/// | 12     | 4    | reserved, zero                         |
/// | 16     | 8    | stream epoch (chosen by the caller)    |
/// | 24     | 8    | sequence number of the first entry     |
/// | 32     | 4    | reserved, zero                         |
/// | 36     | 4    | CRC32C of bytes 0 ..< 36               |
public struct SegmentHeader: Sendable, Hashable {
    public static let length = 40
    public static let formatVersion: UInt16 = 1
    public static let magic: [UInt8] = Array("DAQJRNL".utf8) + [0]

    /// Identifies one continuous sequence stream: a journal wiped and restarted at seq 1 gets a
    /// new epoch from its owner, so a collector never mixes two streams.
    public var epoch: UInt64
    /// The sequence number the segment's first entry carries (and the segment is named after).
    public var firstSequence: UInt64

    public init(epoch: UInt64, firstSequence: UInt64) {
        self.epoch = epoch
        self.firstSequence = firstSequence
    }

    /// The header's 40 bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: SegmentHeader.length)
        out.withUnsafeMutableBytes { raw in
            raw.copyBytes(from: SegmentHeader.magic)
            raw.storeLE(SegmentHeader.formatVersion, at: 8)
            raw.storeLE(UInt16(SegmentHeader.length), at: 10)
            raw.storeLE(epoch, at: 16)
            raw.storeLE(firstSequence, at: 24)
            raw.storeLE(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<36])), at: 36)
        }
        return out
    }

    /// Parses the header at the start of `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<SegmentHeader, JournalDefect> {
        guard bytes.count >= length else { return .failure(.tornHeader(available: bytes.count)) }
        guard bytes[0..<8].elementsEqual(magic) else { return .failure(.badMagic) }
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<36]))
        guard computed == bytes.le32(at: 36) else { return .failure(.headerChecksumMismatch) }
        let version = bytes.le16(at: 8)
        guard version == formatVersion else { return .failure(.unsupportedVersion(version)) }
        guard bytes.le16(at: 10) == UInt16(length) else { return .failure(.badHeaderField("header length")) }
        guard bytes.le32(at: 12) == 0, bytes.le32(at: 32) == 0 else {
            return .failure(.badHeaderField("reserved bytes not zero"))
        }
        let first = bytes.le64(at: 24)
        guard first >= 1 else { return .failure(.badHeaderField("first sequence 0")) }
        return .success(SegmentHeader(epoch: bytes.le64(at: 16), firstSequence: first))
    }

    public static func parse(_ bytes: [UInt8]) -> Result<SegmentHeader, JournalDefect> {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// The header a damaged one was, for a segment named after `nameSequence`. A header holds
    /// nothing but its journal's epoch and its name's sequence number, so with the epoch known
    /// (`journalEpoch`: from another segment or the ack cursor) the original bytes follow.
    /// Without it, a single flipped bit is found by its CRC32C (which tells every 1- and 2-bit
    /// error in 36 bytes apart): the one flip that makes the header valid, naming `nameSequence`.
    /// Nil when neither gives the header (more damage than one bit, and no epoch known).
    public static func reconstruct(_ damaged: UnsafeRawBufferPointer, nameSequence: UInt64,
                                   journalEpoch: UInt64?) -> SegmentHeader? {
        guard nameSequence >= 1 else { return nil }
        if let journalEpoch { return SegmentHeader(epoch: journalEpoch, firstSequence: nameSequence) }
        guard damaged.count >= length else { return nil }
        var bytes = [UInt8](UnsafeRawBufferPointer(rebasing: damaged[0..<length]))
        var found: SegmentHeader?
        for bit in 0..<(length * 8) {
            bytes[bit / 8] ^= UInt8(1) << (bit % 8)
            if case .success(let header) = parse(bytes), header.firstSequence == nameSequence {
                guard found == nil else { return nil }
                found = header
            }
            bytes[bit / 8] ^= UInt8(1) << (bit % 8)
        }
        return found
    }
}

/// Segment file names: the first sequence number in 20 decimal digits + `.jnl`, so sorting the
/// names sorts the segments.
public enum SegmentName {
    public static let suffix = ".jnl"

    /// `00000000000000000001.jnl` for first sequence 1.
    public static func name(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: 20 - digits.count) + digits + suffix
    }

    /// The first sequence number a segment name encodes; nil when it is not a segment name.
    public static func firstSequence(of name: String) -> UInt64? {
        guard name.hasSuffix(suffix) else { return nil }
        let digits = name.utf8.dropLast(suffix.utf8.count)
        guard digits.count == 20, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(String(decoding: digits, as: UTF8.self))
    }
}
