// Reads entries back in sequence order across segments, from any retained sequence number: what
// the uplink ships and what `journal dump` prints. Follows a live journal: at the end it returns
// nil, and a later `next()` picks up entries appended since. `readEntries` reads runs of entries
// into a caller's buffer (the uplink's backlog drain: no allocation per entry).
import DAQCore
import Journal
internal import Glibc

/// Consecutive entries `readEntries` appended to a caller's buffer: `count` entries from
/// `firstSequence` on, all in the segment whose first entry is `segmentFirstSequence`.
public struct JournalEntryRun: Sendable, Hashable {
    public var firstSequence: UInt64
    public var count: Int
    public var segmentFirstSequence: UInt64
    /// The sequence number of the run's last entry.
    public var lastSequence: UInt64 { firstSequence + UInt64(count) - 1 }
    /// Whether the run's first entry is the first of its segment (the uplink marks it so the
    /// collector cuts its copy there).
    public var startsSegment: Bool { firstSequence == segmentFirstSequence }

    public init(firstSequence: UInt64, count: Int, segmentFirstSequence: UInt64) {
        self.firstSequence = firstSequence
        self.count = count
        self.segmentFirstSequence = segmentFirstSequence
    }
}

/// A forward cursor over a journal directory's entries. Reads in 256 KiB chunks with pread.
/// Use from one context (not Sendable). Entries in a closed segment that fail framing, CRC or
/// sequence checks throw journal-corrupt naming the file and byte offset; the end of the newest
/// segment is treated as "not written yet".
public final class JournalReader {
    public let directory: String
    private let layout: JournalLayout
    private let startSequence: UInt64
    /// First seq of the segment being read (0 before one is open).
    private var currentFirst: UInt64 = 0
    private var fd: Int32 = -1
    private var headerRead = false
    private var offset = SegmentHeader.length
    private var buffer: [UInt8] = []
    private var bufferOffset = 0
    private var expected: UInt64 = 0
    /// `skipDamaged(written:)` declared the entries up to `expected - 1` lost while the cursor
    /// stays at the damage: the next search takes `expected` itself, not only those above it.
    private var resumedPastWritten = false
    /// The entry at `offset`, decoded (CRC checked) but not consumed: a run that stopped before it
    /// (at a limit) leaves it to the next call, which need not check it again.
    private var located: Located?
    /// The stream epoch, once the first segment header was read.
    public private(set) var epoch: UInt64?
    /// The first seq of the segment holding the entry `next()` (or `readEntries`) returned last. The uplink marks
    /// segment starts with it, so the collector cuts its copy at the same places (boundaries are
    /// the device's decision, e.g. after a refused append or a changed size limit).
    public private(set) var segmentFirstSequence: UInt64?

    private static let chunk = 256 << 10

    /// A cursor whose first entry is `sequence` (which must not be older than the oldest
    /// retained segment).
    public init(directory: String, from sequence: UInt64 = 1) throws(DAQError) {
        self.directory = directory
        layout = JournalLayout(directory: directory)
        startSequence = max(sequence, 1)
        let firsts = try layout.segmentFirstSequences()
        if let oldest = firsts.first {
            guard startSequence >= oldest else {
                throw DAQError(.journalMisuse, "seq \(startSequence) is no longer in the journal (oldest is \(oldest))",
                               at: InputLocation(file: directory))
            }
            try openSegment(firsts.last { $0 <= startSequence } ?? oldest)
        }
    }

    /// The journal's oldest entry (its oldest segment's first), nil for a directory without
    /// segments: where a reader of "everything still there" starts (retention deletes the oldest).
    public static func oldestSequence(directory: String) throws(DAQError) -> UInt64? {
        try JournalLayout(directory: directory).segmentFirstSequences().first.map { max($0, 1) }
    }

    deinit { if fd >= 0 { FileOps.close(fd) } }

    /// The next entry, or nil when the reader has caught up with the writer.
    public func next() throws(DAQError) -> JournalEntry? {
        guard let entry = try locateNext(crossingSegments: true, beforeRefill: {}) else { return nil }
        consume(entry)
        let framed = Array(buffer[entry.relative..<(entry.relative + entry.framedLength)])
        let payload = Array(framed[JournalFraming.headerLength..<(JournalFraming.headerLength + entry.payloadLength)])
        return JournalEntry(sequence: entry.sequence, kind: entry.kind, payload: payload, framed: framed)
    }

    /// Appends the framed bytes of the next consecutive entries to `bytes` and each one's range in
    /// `bytes` to `ranges`, each entry's CRC32C verified once, with no allocation per entry (the
    /// caller clears and reuses both). Returns the run, or nil (nothing appended) when no entry is
    /// available: the reader has caught up with the writer, or the next entry is after `last`.
    ///
    /// A run stops after `maxEntries` entries, before an entry that would take it past `maxBytes`
    /// (a first entry larger than that is read alone, so a run always makes progress), after
    /// `last`, and at the end of a segment: all its entries share `segmentFirstSequence`, and the
    /// next call continues in the next segment. A run also stops before a fault (a corrupt or
    /// torn entry in a closed segment, a bad segment header, a read error); the next call throws
    /// it as `next()` would (journal-corrupt naming the file and byte offset), appending nothing.
    public func readEntries(maxEntries: Int, maxBytes: Int, through last: UInt64 = .max,
                            into bytes: inout [UInt8], ranges: inout [Range<Int>]) throws(DAQError) -> JournalEntryRun? {
        precondition(maxEntries > 0 && maxBytes > 0, "a run holds at least one entry")
        let base = bytes.count
        var runBytes = 0
        // Entries are copied span by span: the ones consumed since the last copy are contiguous in
        // `buffer` until it is refilled.
        var span: Range<Int>?
        func copySpan() {
            guard let pending = span else { return }
            buffer.withUnsafeBytes { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[pending])) }
            span = nil
        }
        var count = 0
        func take(_ entry: Located) {
            consume(entry)
            let start = base + runBytes
            ranges.append(start..<(start + entry.framedLength))
            span = (span?.lowerBound ?? entry.relative)..<(entry.relative + entry.framedLength)
            runBytes += entry.framedLength
            count += 1
        }
        var first: (sequence: UInt64, segment: UInt64)?
        while count < maxEntries {
            // One entry the careful way: refills, segment changes, skipped entries, faults.
            let next: Located?
            do {
                next = try locateNext(crossingSegments: first == nil, beforeRefill: copySpan)
            } catch {
                if first == nil { throw error }
                break  // state is unchanged, so the next call meets the fault again and throws it
            }
            guard let entry = next, entry.sequence <= last else { break }
            if first != nil && runBytes + entry.framedLength > maxBytes { break }
            take(entry)
            if first == nil { first = (entry.sequence, currentFirst) }
            // Then the entries that lie complete in `buffer` after it, in one pass over it; the
            // first one that does not decode is left to `locateNext`, one over a limit to the
            // next call (decoded already: `located`).
            buffer.withUnsafeBytes { raw in
                while count < maxEntries,
                      case .entry(let kind, let sequence, let payloadLength, let framedLength) = JournalFraming.decode(
                          raw, at: offset - bufferOffset, expectedSequence: expected) {
                    let entry = Located(relative: offset - bufferOffset, kind: kind, sequence: sequence,
                                        payloadLength: payloadLength, framedLength: framedLength)
                    guard sequence <= last, runBytes + framedLength <= maxBytes else {
                        located = entry
                        return
                    }
                    take(entry)
                }
            }
        }
        copySpan()
        return first.map { JournalEntryRun(firstSequence: $0.sequence, count: count, segmentFirstSequence: $0.segment) }
    }

    /// Entries the reader could not read (`skipDamaged`): `first…last` were in `segment` (its
    /// file name) from byte `offset` on, where `defect` was found.
    public struct Damage: Sendable, Hashable, CustomStringConvertible {
        public var first: UInt64
        public var last: UInt64
        public var segment: String
        /// The first sequence number of that segment (its name's).
        public var segmentFirstSequence: UInt64
        public var offset: Int
        public var defect: String

        /// How many of the entries the reader was to return were lost: 0 when the damage lies
        /// wholly before its start sequence (it was only passed over on the way there).
        public var count: UInt64 { last >= first ? last - first + 1 : 0 }

        public var description: String {
            "entries \(first)…\(last) unreadable in \(segment) from offset \(offset) (\(defect))"
        }
    }

    /// After `next()` or `readEntries` threw journal-corrupt for an entry (damaged storage: a
    /// flipped bit, a torn or zeroed block), moves past the damage so reading can go on: to the
    /// next valid entry further in the same segment (searched byte by byte, since a damaged
    /// length field says nothing about where the next entry starts), else to the next segment.
    /// Returns the entries passed over that the reader was to return (none when they all come
    /// before its start sequence).
    /// Also passes a segment that starts after a gap in the numbering (entries lost between
    /// segments), and a closed segment's damaged header (its entries are read from the first
    /// valid one on, numbered from its file name's). Nil, with the cursor unchanged, when there is
    /// no damage to pass (a read error), or when no entry follows the damage yet (the newest
    /// segment: entries appended later may still resynchronize) — unless the caller knows the
    /// entries up to `written` were written (a live writer's synced ones): with no valid entry
    /// after the damage, those are lost, and reading goes on after `written` from the damaged place
    /// (entries appended later lie beyond it, and are found by the same search).
    public func skipDamaged(written: UInt64? = nil) throws(DAQError) -> Damage? {
        // Entries known to exist from here on: damage in the newest segment is not an unwritten end.
        let knownWritten = written.map { $0 >= expected && expected != 0 } ?? false
        if fd >= 0, !headerRead {
            // A segment that starts later than the entries before it end: entries lost between
            // segments (a writer numbers on after acknowledged entries it lost; see
            // `JournalRecovery.numberedAfterAcknowledged`).
            let parsed = SegmentHeader.parse(try read(count: SegmentHeader.length))
            if case .success(let header) = parsed {
                guard expected != 0, header.firstSequence == currentFirst, header.firstSequence > expected else { return nil }
                let damage = Damage(first: max(expected, startSequence), last: header.firstSequence - 1,
                                    segment: SegmentName.name(firstSequence: currentFirst), segmentFirstSequence: currentFirst,
                                    offset: 24, defect: JournalDefect.sequenceGap(expected: expected, found: header.firstSequence).description)
                expected = header.firstSequence
                return damage
            }
            // A damaged header of a closed segment: its entries are most likely intact. Read on
            // at the first valid one after the header, numbered from the file name's on.
            guard case .failure(let defect) = parsed, try !isNewestSegment() else { return nil }
            let from = expected != 0 ? expected : currentFirst
            let bytes: [UInt8]
            do { bytes = try FileOps.pread(fd, count: try FileOps.size(fd), at: 0) } catch {
                throw error.daqError("read segment", path: currentPath, offset: 0)
            }
            guard let found = bytes.withUnsafeBytes({ SegmentScan.resynchronize($0, after: SegmentHeader.length - 1, above: from - 1) })
            else { return nil }
            headerRead = true
            offset = found.offset
            buffer = []
            bufferOffset = offset
            expected = found.sequence
            return Damage(first: max(from, startSequence), last: found.sequence - 1, segment: SegmentName.name(firstSequence: currentFirst),
                          segmentFirstSequence: currentFirst, offset: 0, defect: "segment header: \(defect)")
        }
        guard fd >= 0, headerRead, located == nil else { return nil }
        let relative = offset - bufferOffset
        let step = buffer.withUnsafeBytes { raw in
            JournalFraming.decode(UnsafeRawBufferPointer(rebasing: raw[min(relative, raw.count)...]), at: 0, expectedSequence: expected)
        }
        // Only an entry that does not decode (or a closed segment that ends inside one) is damage.
        let defect: JournalDefect
        switch step {
        case .invalid(let found):
            defect = found
        case .incomplete(let needed):
            let rest = try read(count: max(needed, JournalReader.chunk))
            if knownWritten {
                guard rest.count < needed else { return nil }
            } else {
                guard rest.count < needed, !rest.isEmpty, try !isNewestSegment() else { return nil }
            }
            defect = .torn(needed: needed, available: rest.count)
        case .entry:
            return nil
        }
        let damagedAt = offset
        let damagedSegment = currentFirst
        let segment = SegmentName.name(firstSequence: currentFirst)
        let rest: [UInt8]
        do { rest = try FileOps.pread(fd, count: max(0, try FileOps.size(fd) - offset), at: offset) } catch {
            throw error.daqError("read segment", path: currentPath, offset: offset)
        }
        // The next valid entry after the damage in this segment, else the next segment.
        let above = resumedPastWritten ? expected - 1 : expected
        let found = rest.withUnsafeBytes { SegmentScan.resynchronize($0, after: 0, above: above) }
        let resume: UInt64
        if let found {
            resumedPastWritten = false
            resume = found.sequence
            offset += found.offset
            buffer = []
            bufferOffset = offset
        } else if let newer = try layout.segmentFirstSequences().first(where: { $0 > currentFirst }), newer > expected {
            resumedPastWritten = false
            resume = newer
            try openSegment(newer)
        } else if knownWritten, let written {
            resumedPastWritten = true
            // Written, and unreadable: lost. The cursor stays at the damage, whose search finds
            // what is appended after it.
            resume = written + 1
        } else {
            return nil
        }
        let first = max(expected, startSequence)
        expected = resume
        return Damage(first: first, last: resume - 1, segment: segment, segmentFirstSequence: damagedSegment, offset: damagedAt,
                      defect: defect.description)
    }

    /// `next()`, reading on past damaged storage (`skipDamaged`, told that the entries up to
    /// `written` were written): `damaged` hears of each run of entries the damage took. Throws
    /// what `skipDamaged` cannot pass.
    public func nextReadable(written: UInt64? = nil, damaged: (Damage) -> Void) throws(DAQError) -> JournalEntry? {
        while true {
            do {
                return try next()
            } catch {
                guard error.code == .journalCorrupt, let damage = try skipDamaged(written: written) else { throw error }
                if damage.count > 0 { damaged(damage) }
            }
        }
    }

    // MARK: - Internals

    /// The entry `locateNext` found: where it lies in `buffer` and what it is.
    private struct Located {
        var relative: Int
        var kind: JournalEntryKind
        var sequence: UInt64
        var payloadLength: Int
        var framedLength: Int
    }

    /// Moves past the entry `locateNext` returned.
    private func consume(_ entry: Located) {
        located = nil
        offset += entry.framedLength
        expected += 1
        segmentFirstSequence = currentFirst
    }

    /// Finds the next entry at or after the start sequence and decodes it (CRC included) in
    /// `buffer`, without consuming it: nil when the reader has caught up with the writer, or, when
    /// not `crossingSegments`, when the current segment holds no more entries. `beforeRefill` runs
    /// before `buffer` is replaced by fresh bytes. Throws journal-corrupt for a fault, leaving the
    /// cursor where it was. Until it is consumed, the same entry is returned without decoding it again.
    private func locateNext(crossingSegments: Bool, beforeRefill: () -> Void) throws(DAQError) -> Located? {
        if let located { return located }
        while true {
            if fd < 0 {
                beforeRefill()
                let firsts = try layout.segmentFirstSequences()
                guard let oldest = firsts.first else { return nil }
                try openSegment(firsts.last { $0 <= startSequence } ?? oldest)
            }
            if !headerRead {
                beforeRefill()
                guard try readHeader() else { return nil }
            }
            let relative = offset - bufferOffset
            let step = buffer.withUnsafeBytes { raw in
                JournalFraming.decode(UnsafeRawBufferPointer(rebasing: raw[relative...]), at: 0, expectedSequence: expected)
            }
            switch step {
            case .entry(let kind, let sequence, let payloadLength, let framedLength):
                guard sequence >= startSequence else {
                    offset += framedLength
                    expected += 1
                    continue
                }
                located = Located(relative: relative, kind: kind, sequence: sequence, payloadLength: payloadLength,
                                  framedLength: framedLength)
                return located
            case .incomplete(let needed):
                let fresh = try read(count: max(needed, JournalReader.chunk))
                if fresh.count > buffer.count - relative {
                    beforeRefill()
                    buffer = fresh
                    bufferOffset = offset
                }
                if fresh.count >= needed { continue }
                // At the end of this segment's bytes: move on if a newer segment exists (looked up
                // by name, so retention deleting older segments meanwhile does not matter).
                guard let newer = try layout.segmentFirstSequences().first(where: { $0 > currentFirst }) else {
                    return nil
                }
                guard fresh.isEmpty else {
                    throw corrupt(.torn(needed: needed, available: fresh.count), at: offset)
                }
                guard crossingSegments else { return nil }
                beforeRefill()
                try openSegment(newer)
            case .invalid(let defect):
                throw corrupt(defect, at: offset)
            }
        }
    }

    /// After `next()` returned nil: the bytes of the newest segment past its last whole entry (a
    /// torn entry or a torn segment header: a crash's unsynced tail, or a write still under way),
    /// nil when it ends on an entry. A live reader waits for them; an offline one (`journal dump`)
    /// names them.
    public func unreadTail() throws(DAQError) -> UnreadTail? {
        guard fd >= 0, located == nil else { return nil }
        let size: Int
        do { size = try FileOps.size(fd) } catch { throw error.daqError("stat segment", path: currentPath) }
        let from = headerRead ? offset : 0
        guard size > from else { return nil }
        return UnreadTail(segment: SegmentName.name(firstSequence: currentFirst), offset: from, bytes: size - from,
                          isHeader: !headerRead)
    }

    /// Bytes at the end of the newest segment that make no whole entry (see `unreadTail()`).
    public struct UnreadTail: Sendable, Equatable, CustomStringConvertible {
        public var segment: String
        public var offset: Int
        public var bytes: Int
        /// The segment's header itself is cut short (a segment created as the crash came).
        public var isHeader: Bool

        public var description: String {
            isHeader
                ? "\(segment) is \(bytes) bytes, shorter than a segment header (\(SegmentHeader.length) bytes)"
                : "\(segment) ends in \(bytes) bytes from offset \(offset) that make no whole entry"
        }
    }

    private var currentPath: String { layout.segmentPath(firstSequence: currentFirst) }

    private func corrupt(_ defect: JournalDefect, at offset: Int) -> DAQError {
        DAQError(.journalCorrupt, defect.description, at: InputLocation(file: currentPath, field: "offset \(offset)"))
    }

    private func read(count: Int) throws(DAQError) -> [UInt8] {
        do { return try FileOps.pread(fd, count: count, at: offset) } catch {
            throw error.daqError("read segment", path: currentPath, offset: offset)
        }
    }

    private func openSegment(_ first: UInt64) throws(DAQError) {
        if fd >= 0 { FileOps.close(fd) }
        fd = -1
        located = nil
        currentFirst = first
        do { fd = try FileOps.open(currentPath, O_RDONLY) } catch { throw error.daqError("open segment", path: currentPath) }
        headerRead = false
        offset = 0
        buffer = []
        bufferOffset = 0
    }

    private func isNewestSegment() throws(DAQError) -> Bool {
        try layout.segmentFirstSequences().last.map { $0 <= currentFirst } ?? true
    }

    /// Reads and checks the current segment's header; false when the newest segment's header is
    /// not fully written yet.
    private func readHeader() throws(DAQError) -> Bool {
        let bytes = try read(count: SegmentHeader.length)
        switch SegmentHeader.parse(bytes) {
        case .failure(let defect):
            if case .tornHeader = defect, try isNewestSegment() { return false }
            throw corrupt(defect, at: 0)
        case .success(let header):
            guard header.firstSequence == currentFirst else {
                throw DAQError(.journalCorrupt, "header first seq \(header.firstSequence) does not match the file name",
                               at: InputLocation(file: currentPath, field: "offset 24"))
            }
            if expected != 0 && header.firstSequence != expected {
                throw corrupt(.sequenceGap(expected: expected, found: header.firstSequence), at: 24)
            }
            if let epoch, epoch != header.epoch {
                throw DAQError(.journalCorrupt, "segment epoch \(header.epoch) differs from the journal's \(epoch)",
                               at: InputLocation(file: currentPath, field: "offset 16"))
            }
            epoch = header.epoch
            expected = header.firstSequence
            headerRead = true
            offset = SegmentHeader.length
            buffer = []
            bufferOffset = offset
            return true
        }
    }
}
