// Offline check of a whole journal directory: every header, entry frame, CRC and the sequence
// continuity within and across segments, plus the ack cursor. `daqctl journal verify` prints it.
import DAQCore
import Journal

/// One thing wrong with a journal, located to the byte.
public struct JournalFault: Sendable, Hashable, CustomStringConvertible {
    /// The file (segment name or `ack`) inside the journal directory.
    public var file: String
    /// Byte offset in that file where the problem starts.
    public var offset: Int
    /// What is wrong, for a person.
    public var problem: String

    public var description: String { "\(file) offset \(offset): \(problem)" }
}

/// What one segment holds.
public struct JournalSegmentSummary: Sendable, Hashable {
    /// The file name (`<20-digit first seq>.jnl`).
    public var name: String
    /// The header's epoch; nil when the header is invalid.
    public var epoch: UInt64?
    /// The first seq (the header's, when it disagrees with the name).
    public var firstSequence: UInt64
    /// nil when the segment holds no valid entry.
    public var lastSequence: UInt64?
    /// Valid entries (up to the first fault).
    public var entries: Int
    /// File size.
    public var bytes: Int
}

/// The result of verifying a journal directory.
public struct JournalVerification: Sendable, Hashable {
    public var directory: String
    /// Every segment, oldest first.
    public var segments: [JournalSegmentSummary] = []
    /// Valid entries across all segments.
    public var entries = 0
    /// Entries lost to damage inside segments (a journal verify could read on past).
    public var lostEntries: UInt64 = 0
    /// Bytes of all segment files.
    public var bytes = 0
    /// The first and last valid seq (nil when there are no entries).
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    /// The epoch of the first readable segment header.
    public var epoch: UInt64?
    /// The persisted ack cursor, when the `ack` file exists and is readable.
    public var acknowledgedUpTo: UInt64?
    /// Everything wrong, in file order.
    public var faults: [JournalFault] = []
    /// What a kill left that is no fault and that the next writer removes (`ack.tmp`,
    /// `segment.tmp`), for a person wondering about the file.
    public var notes: [String] = []

    /// No faults found.
    public var isValid: Bool { faults.isEmpty }
}

/// Verifies journal directories.
public enum JournalVerifier {
    /// Reads every segment of `directory` and reports its contents and every fault. Throws only
    /// when the directory or a file cannot be read at all.
    public static func verify(directory: String) throws(DAQError) -> JournalVerification {
        let layout = JournalLayout(directory: directory)
        var report = JournalVerification(directory: directory)
        let names: [String]
        do { names = try FileOps.list(directory) } catch { throw error.daqError("list journal directory", path: directory) }
        for name in names where name.hasSuffix(SegmentName.suffix) && SegmentName.firstSequence(of: name) == nil {
            report.faults.append(JournalFault(file: name, offset: 0, problem: "not a segment name (20 digits + .jnl)"))
        }
        // An existing directory without segments is an empty journal: a writer killed before it
        // created its first segment leaves exactly that, and reopening it starts at seq 1. One
        // holding other files is no journal at all (a wrong path given).
        let firsts = try layout.segmentFirstSequences()
        if firsts.isEmpty, case let foreign = try layout.foreignFiles(), !foreign.isEmpty {
            report.faults.append(JournalFault(file: "", offset: 0, problem: "no segments (*\(SegmentName.suffix)), and "
                + "\(JournalLayout.describe(foreign: foreign)): not a journal directory"))
        }
        var previousNext: UInt64?
        for first in firsts {
            let name = SegmentName.name(firstSequence: first)
            let path = layout.segmentPath(firstSequence: first)
            let bytes: [UInt8]
            do { bytes = try FileOps.readFile(path) } catch { throw error.daqError("read segment", path: path) }
            // Damage inside a segment is read past: its entries after it are counted and checked.
            var (scan, damaged) = bytes.withUnsafeBytes { SegmentScan.scanPastDamage($0) }
            // So is a damaged header: the entries after it are numbered from the file name's.
            var readPastHeader = false
            if scan.header == nil, case .defect(let defect, _) = scan.stop,
               let headerless = bytes.withUnsafeBytes({ SegmentScan.scanPastDamagedHeader($0, nameSequence: first) }) {
                report.faults.append(JournalFault(file: name, offset: 0, problem: "damaged header (\(defect)); its entries "
                    + "were read on from the file name's first seq \(first) (a writer opening the journal rewrites the header when its epoch is known: another segment, one flipped bit or the ack cursor)"))
                (scan, damaged) = headerless
                readPastHeader = true
            }
            var summary = JournalSegmentSummary(name: name, epoch: scan.header?.epoch, firstSequence: first,
                                                lastSequence: scan.lastSequence, entries: scan.entryCount, bytes: bytes.count)
            if let header = scan.header {
                if header.firstSequence != first {
                    report.faults.append(JournalFault(file: name, offset: 24,
                        problem: "header first seq \(header.firstSequence) does not match the file name"))
                    summary.firstSequence = header.firstSequence
                }
                if let epoch = report.epoch, epoch != header.epoch {
                    report.faults.append(JournalFault(file: name, offset: 16,
                        problem: "epoch \(header.epoch) differs from the journal's \(epoch)"))
                }
                report.epoch = report.epoch ?? header.epoch
            }
            // Where the segment's numbering starts: its header, or its file name past a damaged one.
            let start: (sequence: UInt64, offset: Int, source: String)? = scan.header.map { ($0.firstSequence, 24, "") }
                ?? (readPastHeader ? (first, 0, " (file name)") : nil)
            if let start {
                if let expected = previousNext, expected != start.sequence {
                    report.faults.append(JournalFault(file: name, offset: start.offset,
                        problem: "sequence gap between segments: expected first seq \(expected), found \(start.sequence)\(start.source)"))
                }
                previousNext = scan.nextSequence
                if report.firstSequence == nil && scan.entryCount > 0 { report.firstSequence = start.sequence }
                if let last = scan.lastSequence { report.lastSequence = last }
            } else {
                previousNext = nil
            }
            // Each damaged run is one fault naming the entries it took.
            for run in damaged {
                report.faults.append(JournalFault(file: name, offset: run.offset, problem: run.defect.description
                    + "; entries \(run.first)…\(run.last) unreadable, seq \(run.last + 1) goes on at offset \(run.resumesAt)"))
                report.lostEntries += run.last - run.first + 1
            }
            if case .defect(let defect, let offset) = scan.stop {
                report.faults.append(JournalFault(file: name, offset: offset, problem: defect.description))
            }
            report.entries += scan.entryCount
            report.bytes += bytes.count
            report.segments.append(summary)
        }
        if FileOps.exists(layout.ackTemporaryPath) {
            report.notes.append("ack.tmp: an ack cursor's update was cut short; the cursor in force is `ack`, and the next writer removes it")
        }
        if FileOps.exists(layout.segmentTemporaryPath) {
            report.notes.append("segment.tmp: a segment's creation was cut short (it holds no entry); the next writer removes it")
        }
        for name in try layout.deferredSegments() {
            report.notes.append("\(name): a new segment not yet renamed into place by a sync (on a running writer, the next sync renames it; "
                                + "left by a crash, none of its entries was counted as synced: the next writer names it when it starts where "
                                + "the segment before it ends, and removes it otherwise)")
        }
        if FileOps.exists(layout.ackPath) {
            let bytes: [UInt8]
            do { bytes = try FileOps.readFile(layout.ackPath) } catch { throw error.daqError("read ack cursor", path: layout.ackPath) }
            if let record = AckRecord.parse(bytes) {
                report.acknowledgedUpTo = record.acknowledgedUpTo
                if let epoch = report.epoch, epoch != record.epoch {
                    report.faults.append(JournalFault(file: "ack", offset: 8,
                        problem: "ack cursor epoch \(record.epoch) differs from the journal's \(epoch)"))
                }
                if record.acknowledgedUpTo > (report.lastSequence ?? 0) {
                    report.faults.append(JournalFault(file: "ack", offset: 16,
                        problem: "acknowledged up to \(record.acknowledgedUpTo), beyond the last entry \(report.lastSequence ?? 0)"))
                }
            } else {
                report.faults.append(JournalFault(file: "ack", offset: 0, problem: "ack cursor unreadable (bad magic, size or CRC32C)"))
            }
        }
        return report
    }
}
