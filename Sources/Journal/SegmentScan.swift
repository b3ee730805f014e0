// The recovery scan: the longest valid prefix of a segment's bytes and why the rest is invalid.
// Pure, so random tears and bit flips can be tested byte by byte without touching a disk.

/// The result of scanning one segment's bytes.
public struct SegmentScan: Sendable, Hashable {
    /// Why the scan stopped.
    public enum Stop: Sendable, Hashable {
        /// The bytes end exactly after the last valid entry.
        case end
        /// The bytes from `offset` on are invalid for the given reason.
        case defect(JournalDefect, offset: Int)
    }

    /// The parsed header; nil when the header itself is invalid.
    public var header: SegmentHeader?
    /// How many valid entries follow the header.
    public var entryCount: Int
    /// Length of the longest valid prefix: header plus whole valid entries (0 if the header is bad).
    public var validLength: Int
    /// The sequence number the next entry must carry.
    public var nextSequence: UInt64
    public var stop: Stop

    /// The last valid entry's sequence number, if there is one.
    public var lastSequence: UInt64? { entryCount > 0 ? nextSequence - 1 : nil }

    /// Scans a segment: header, then entries while framing, CRC and sequence continuity hold.
    /// `body` sees each valid entry's offset and decoded step (verify and dump use it; recovery
    /// does not need it).
    public static func scan(
        _ bytes: UnsafeRawBufferPointer,
        body: (_ offset: Int, _ kind: JournalEntryKind, _ sequence: UInt64, _ payloadLength: Int) -> Void = { _, _, _, _ in }
    ) -> SegmentScan {
        let header: SegmentHeader
        switch SegmentHeader.parse(bytes) {
        case .failure(let defect):
            return SegmentScan(header: nil, entryCount: 0, validLength: 0, nextSequence: 0,
                               stop: .defect(defect, offset: 0))
        case .success(let parsed): header = parsed
        }
        var offset = SegmentHeader.length
        var expected = header.firstSequence
        var count = 0
        while offset < bytes.count {
            switch JournalFraming.decode(bytes, at: offset, expectedSequence: expected) {
            case .entry(let kind, let sequence, let payloadLength, let framedLength):
                body(offset, kind, sequence, payloadLength)
                offset += framedLength
                expected += 1
                count += 1
            case .incomplete(let needed):
                return SegmentScan(header: header, entryCount: count, validLength: offset, nextSequence: expected,
                                   stop: .defect(.torn(needed: needed, available: bytes.count - offset), offset: offset))
            case .invalid(let defect):
                return SegmentScan(header: header, entryCount: count, validLength: offset, nextSequence: expected,
                                   stop: .defect(defect, offset: offset))
            }
        }
        return SegmentScan(header: header, entryCount: count, validLength: offset, nextSequence: expected, stop: .end)
    }

    /// Scans a segment held in an array.
    public static func scan(_ bytes: [UInt8]) -> SegmentScan {
        bytes.withUnsafeBytes { scan($0) }
    }
}
