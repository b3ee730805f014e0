// Reads entries back in sequence order across segments, from any retained sequence number: what
// the uplink ships and what `journal dump` prints. Follows a live journal: at the end it returns
// nil, and a later `next()` picks up entries appended since.
import DAQCore
import Journal
internal import Glibc

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
    /// The stream epoch, once the first segment header was read.
    public private(set) var epoch: UInt64?
    /// The first seq of the segment holding the entry `next()` returned last. The uplink marks
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

    deinit { if fd >= 0 { FileOps.close(fd) } }

    /// The next entry, or nil when the reader has caught up with the writer.
    public func next() throws(DAQError) -> JournalEntry? {
        while true {
            if fd < 0 {
                let firsts = try layout.segmentFirstSequences()
                guard let oldest = firsts.first else { return nil }
                try openSegment(firsts.last { $0 <= startSequence } ?? oldest)
            }
            if !headerRead {
                guard try readHeader() else { return nil }
            }
            let relative = offset - bufferOffset
            let step = buffer.withUnsafeBytes { raw in
                JournalFraming.decode(UnsafeRawBufferPointer(rebasing: raw[relative...]), at: 0, expectedSequence: expected)
            }
            switch step {
            case .entry(let kind, let sequence, let payloadLength, let framedLength):
                offset += framedLength
                expected += 1
                guard sequence >= startSequence else { continue }
                let framed = Array(buffer[relative..<(relative + framedLength)])
                let payload = Array(framed[JournalFraming.headerLength..<(JournalFraming.headerLength + payloadLength)])
                segmentFirstSequence = currentFirst
                return JournalEntry(sequence: sequence, kind: kind, payload: payload, framed: framed)
            case .incomplete(let needed):
                let fresh = try read(count: max(needed, JournalReader.chunk))
                if fresh.count > buffer.count - relative {
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
                try openSegment(newer)
            case .invalid(let defect):
                throw corrupt(defect, at: offset)
            }
        }
    }

    // MARK: - Internals

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
