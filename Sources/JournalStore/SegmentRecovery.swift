// Segment files at the edges of a writer's life: creating one durably, and recovering the newest
// one when a directory is opened (cutting a torn tail, dropping a segment whose creation was cut).
import DAQCore
import Journal
internal import Glibc

extension JournalWriter {
    /// Creates a segment holding only `header`, durable (file and directory entry) before it is used.
    /// The header is written and synced under a temporary name first, and the file then renamed to
    /// its segment name: a kill at any moment leaves either no segment or one with its whole
    /// header, never a file the verifier would call torn. (Opening the directory removes a
    /// `segment.tmp` left behind; `recoverSegment` still drops a torn segment, which only a journal
    /// written otherwise, or a disk that lost synced data, can hold.) An existing segment is never
    /// replaced: the writer holds the directory's lock, so none can appear between the check and
    /// the rename (`rename`, not `link`: a vfat or exFAT card has no hard links).
    static func createSegment(layout: JournalLayout, directoryFD: Int32, header: SegmentHeader) throws(DAQError) -> Int32 {
        let path = layout.segmentPath(firstSequence: header.firstSequence)
        guard !FileOps.exists(path) else {
            throw SystemCallError(errno: EEXIST).daqError("create segment", path: path)
        }
        let temporary = layout.segmentTemporaryPath
        let fd: Int32
        do { fd = try FileOps.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND) } catch {
            throw error.daqError("create segment", path: temporary)
        }
        var renamed = false
        do {
            var written = 0
            try FileOps.writeAll(fd, header.bytes, written: &written)
            try FileOps.fullSync(fd)
            try FileOps.rename(temporary, path)
            renamed = true
            try FileOps.fullSync(directoryFD)
        } catch {
            FileOps.close(fd)
            _ = try? FileOps.unlink(renamed ? path : temporary)
            _ = try? FileOps.fullSync(directoryFD)
            throw error.daqError("create segment", path: path)
        }
        return fd
    }

    /// Recovers the newest segment: nil when it must be dropped (its creation was cut short, so it
    /// holds no entries); otherwise the open descriptor, the valid length after cutting any invalid
    /// tail, its header and the next sequence number.
    static func recoverSegment(path: String, nameSequence: UInt64, recovery: inout JournalRecovery)
        throws(DAQError) -> (fd: Int32, length: Int, header: SegmentHeader, next: UInt64)?
    {
        let fd: Int32
        do { fd = try FileOps.open(path, O_RDWR | O_APPEND) } catch { throw error.daqError("open segment", path: path) }
        var keep = false
        defer { if !keep { FileOps.close(fd) } }
        let bytes: [UInt8]
        do { bytes = try FileOps.pread(fd, count: try FileOps.size(fd), at: 0) } catch {
            throw error.daqError("read segment", path: path)
        }
        // Read on past damage that valid entries follow (see below).
        let (scan, damaged) = bytes.withUnsafeBytes { SegmentScan.scanPastDamage($0) }
        let name = SegmentName.name(firstSequence: nameSequence)
        guard let header = scan.header else {
            if bytes.count <= SegmentHeader.length {
                do { try FileOps.unlink(path) } catch { throw error.daqError("remove torn segment", path: path) }
                recovery.removedSegments.append(name)
                return nil
            }
            guard case .defect(let defect, let offset) = scan.stop else { preconditionFailure("scan without header") }
            throw DAQError(.journalCorrupt, "segment header invalid: \(defect)",
                           at: InputLocation(file: path, field: "offset \(offset)"))
        }
        guard header.firstSequence == nameSequence else {
            throw DAQError(.journalCorrupt, "header first seq \(header.firstSequence) does not match the file name",
                           at: InputLocation(file: path, field: "offset 24"))
        }
        // Damage that valid entries follow is no torn tail: a write cut short leaves nothing valid
        // after it, a flipped bit or a bad block in synced entries does. Cutting there would
        // throw away synced (perhaps acknowledged) entries and number new ones like them, which a
        // collector holding the old ones drops as duplicates. So those entries stay, and the
        // damaged ones are reported (readers pass them: `JournalReader.skipDamaged`).
        recovery.damaged += damaged.map {
            JournalReader.Damage(first: $0.first, last: $0.last, segment: name, segmentFirstSequence: nameSequence,
                                 offset: $0.offset, defect: $0.defect.description)
        }
        do {
            if case .defect(let defect, let offset) = scan.stop {
                try FileOps.truncate(fd, to: scan.validLength)
                recovery.truncatedSegment = name
                recovery.truncatedAtOffset = offset
                recovery.truncatedBytes = bytes.count - scan.validLength
                recovery.truncationReason = defect
            }
            // What a killed process left in the page cache is not durable yet; make it so before
            // counting it as synced.
            try FileOps.dataSync(fd)
        } catch {
            throw error.daqError("repair segment tail", path: path, offset: scan.validLength)
        }
        keep = true
        return (fd, scan.validLength, header, scan.nextSequence)
    }
}
