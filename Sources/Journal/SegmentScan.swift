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
        var scan = entries(bytes, from: SegmentHeader.length, expectedSequence: header.firstSequence, body: body)
        scan.header = header
        return scan
    }

    /// Scans entries from `offset` on, the first carrying `expectedSequence` (after the header, or
    /// where `resynchronize` found entries going on after damage). `header` is nil in the result;
    /// `validLength` is where the valid entries end.
    public static func entries(
        _ bytes: UnsafeRawBufferPointer, from start: Int, expectedSequence: UInt64,
        body: (_ offset: Int, _ kind: JournalEntryKind, _ sequence: UInt64, _ payloadLength: Int) -> Void = { _, _, _, _ in }
    ) -> SegmentScan {
        var offset = start
        var expected = expectedSequence
        var count = 0
        while offset < bytes.count {
            switch JournalFraming.decode(bytes, at: offset, expectedSequence: expected) {
            case .entry(let kind, let sequence, let payloadLength, let framedLength):
                body(offset, kind, sequence, payloadLength)
                offset += framedLength
                expected += 1
                count += 1
            case .incomplete(let needed):
                return SegmentScan(header: nil, entryCount: count, validLength: offset, nextSequence: expected,
                                   stop: .defect(.torn(needed: needed, available: bytes.count - offset), offset: offset))
            case .invalid(let defect):
                return SegmentScan(header: nil, entryCount: count, validLength: offset, nextSequence: expected,
                                   stop: .defect(defect, offset: offset))
            }
        }
        return SegmentScan(header: nil, entryCount: count, validLength: offset, nextSequence: expected, stop: .end)
    }

    /// Where entries go on after damage at `offset` (a defect the scan stopped at): the first
    /// valid entry after it numbered above `sequence`, searched byte by byte, since a damaged
    /// length field says nothing about where the next entry starts. Nil when none follows.
    /// (A false find needs a frame with a matching CRC32C and a sequence number in range inside
    /// the damaged bytes.)
    public static func resynchronize(_ bytes: UnsafeRawBufferPointer, after offset: Int, above sequence: UInt64)
        -> (offset: Int, sequence: UInt64)?
    {
        // At most one entry per `overhead` bytes can follow.
        let bound = UInt64(max(0, bytes.count - offset) / JournalFraming.overhead)
        var at = offset + 1
        while at + JournalFraming.overhead <= bytes.count {
            let found = bytes.le64(at: at + 8)
            if found > sequence, found - sequence <= bound,
               case .entry = JournalFraming.decode(bytes, at: at, expectedSequence: found) {
                return (at, found)
            }
            at += 1
        }
        return nil
    }

    /// Entries damage took inside a segment, which valid entries follow: `first…last` from byte
    /// `offset` on, where `defect` was found; entries go on at `resumesAt`.
    public struct DamagedRun: Sendable, Hashable {
        public var first: UInt64
        public var last: UInt64
        public var offset: Int
        public var defect: JournalDefect
        public var resumesAt: Int
    }

    /// `scan`, reading on past damage that valid entries follow (`resynchronize`): the result
    /// counts every valid entry, ends where the last run of them ends and stops as that run
    /// stopped; the damaged runs are listed in order. What recovery keeps and verify reports.
    public static func scanPastDamage(_ bytes: UnsafeRawBufferPointer) -> (scan: SegmentScan, damaged: [DamagedRun]) {
        var scan = scan(bytes)
        guard scan.header != nil else { return (scan, []) }
        let damaged = readOn(bytes, &scan)
        return (scan, damaged)
    }

    /// `scanPastDamage` for a segment whose header is damaged: its entries from the header's end
    /// on, numbered from its name's sequence (a header holds nothing but that and the epoch).
    /// `header` stays nil. Nil when no valid entry follows the header.
    public static func scanPastDamagedHeader(_ bytes: UnsafeRawBufferPointer, nameSequence: UInt64)
        -> (scan: SegmentScan, damaged: [DamagedRun])?
    {
        guard nameSequence >= 1, bytes.count > SegmentHeader.length else { return nil }
        var scan = entries(bytes, from: SegmentHeader.length, expectedSequence: nameSequence)
        let damaged = readOn(bytes, &scan)
        return scan.entryCount > 0 ? (scan, damaged) : nil
    }

    /// Reads on past each defect that valid entries follow, adding them to `scan`; returns the
    /// damaged runs in order.
    private static func readOn(_ bytes: UnsafeRawBufferPointer, _ scan: inout SegmentScan) -> [DamagedRun] {
        var damaged: [DamagedRun] = []
        while case .defect(let defect, let offset) = scan.stop,
              let resume = resynchronize(bytes, after: offset, above: scan.nextSequence) {
            damaged.append(DamagedRun(first: scan.nextSequence, last: resume.sequence - 1, offset: offset, defect: defect,
                                      resumesAt: resume.offset))
            let more = entries(bytes, from: resume.offset, expectedSequence: resume.sequence)
            scan.entryCount += more.entryCount
            scan.validLength = more.validLength
            scan.nextSequence = more.nextSequence
            scan.stop = more.stop
        }
        return damaged
    }

    /// Scans a segment held in an array.
    public static func scan(_ bytes: [UInt8]) -> SegmentScan {
        bytes.withUnsafeBytes { scan($0) }
    }
}
