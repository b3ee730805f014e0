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

    /// Creates a segment holding only `header` under its temporary name (`<name>.new`), with no
    /// sync: the writer's next sync ticket syncs it and renames it into place (deferred rotation).
    /// A crash before that leaves the temporary file, which the next open removes: nothing in it
    /// was synced.
    static func createSegmentUnsynced(layout: JournalLayout, header: SegmentHeader) throws(DAQError) -> Int32 {
        let path = layout.segmentPath(firstSequence: header.firstSequence)
        guard !FileOps.exists(path) else {
            throw SystemCallError(errno: EEXIST).daqError("create segment", path: path)
        }
        let temporary = JournalLayout.temporaryPath(ofSegment: path)
        let fd: Int32
        do { fd = try FileOps.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND) } catch {
            throw error.daqError("create segment", path: temporary)
        }
        do {
            var written = 0
            try FileOps.writeAll(fd, header.bytes, written: &written)
        } catch {
            FileOps.close(fd)
            _ = try? FileOps.unlink(temporary)
            throw error.daqError("create segment", path: temporary)
        }
        return fd
    }

    /// Rewrites the damaged headers of segments whose entries follow them. A header holds only
    /// the journal's epoch and the sequence number its file is named after, so its original bytes
    /// follow from the epoch of another segment or, failing that, from its own CRC32C when one bit
    /// flipped, or from the ack cursor (`SegmentHeader.reconstruct`): the journal is whole again,
    /// byte for byte what a collector rebuilt. A header none of them gives stays as it is (readers
    /// pass a closed segment's; `recoverSegment` refuses the newest one's). Not touched: a file
    /// no valid entry numbered from its name follows (it may not be a segment of this journal).
    /// Returns each segment's size (the writer's quota accounting needs them; a rewrite keeps it).
    /// Then the configuration's `recordedEpoch`; with `newEpochForUnknownHeaders`, a header none of
    /// them gives gets the configuration's epoch.
    static func repairDamagedHeaders(layout: JournalLayout, firsts: [UInt64], configuration: JournalConfiguration,
                                     recovery: inout JournalRecovery)
        throws(DAQError) -> [UInt64: Int]
    {
        var damaged: [UInt64] = []
        var segmentEpoch: UInt64?
        var sizes: [UInt64: Int] = [:]
        for first in firsts {
            let path = layout.segmentPath(firstSequence: first)
            let header: [UInt8]
            do {
                let fd = try FileOps.open(path, O_RDONLY)
                defer { FileOps.close(fd) }
                sizes[first] = try FileOps.size(fd)
                header = try FileOps.pread(fd, count: SegmentHeader.length, at: 0)
            } catch { throw error.daqError("read segment header", path: path) }
            switch SegmentHeader.parse(header) {
            case .success(let parsed): segmentEpoch = segmentEpoch ?? parsed.epoch
            case .failure: if header.count == SegmentHeader.length { damaged.append(first) }
            }
        }
        guard !damaged.isEmpty else { return sizes }
        var ackEpoch: UInt64?
        if FileOps.exists(layout.ackPath) {
            do { ackEpoch = AckRecord.parse(try FileOps.readFile(layout.ackPath))?.epoch } catch {
                throw error.daqError("read ack cursor", path: layout.ackPath)
            }
        }
        for first in damaged {
            let path = layout.segmentPath(firstSequence: first)
            let fd: Int32
            do { fd = try FileOps.open(path, O_RDWR) } catch { throw error.daqError("open segment", path: path) }
            defer { FileOps.close(fd) }
            let bytes: [UInt8]
            do { bytes = try FileOps.pread(fd, count: try FileOps.size(fd), at: 0) } catch {
                throw error.daqError("read segment", path: path)
            }
            let rebuilt: (header: SegmentHeader, source: String, newStream: Bool)? = bytes.withUnsafeBytes { raw in
                guard SegmentScan.scanPastDamagedHeader(raw, nameSequence: first) != nil else { return nil }
                if let segmentEpoch,
                   let header = SegmentHeader.reconstruct(raw, nameSequence: first, journalEpoch: segmentEpoch) {
                    return (header, "the other segments' epoch", false)
                }
                if let header = SegmentHeader.reconstruct(raw, nameSequence: first, journalEpoch: nil) {
                    return (header, "its CRC32C (one flipped bit)", false)
                }
                if let ackEpoch {
                    return SegmentHeader.reconstruct(raw, nameSequence: first, journalEpoch: ackEpoch).map { ($0, "the ack cursor's epoch", false) }
                }
                if let recorded = configuration.recordedEpoch {
                    return SegmentHeader.reconstruct(raw, nameSequence: first, journalEpoch: recorded)
                        .map { ($0, "the epoch recorded beside the journal", false) }
                }
                guard configuration.newEpochForUnknownHeaders else { return nil }
                return SegmentHeader.reconstruct(raw, nameSequence: first, journalEpoch: configuration.epoch).map { ($0, "a new epoch", true) }
            }
            guard let rebuilt, case .failure(let defect) = SegmentHeader.parse(bytes) else { continue }
            do {
                try FileOps.pwriteAll(fd, rebuilt.header.bytes, at: 0)
                try FileOps.fullSync(fd)
            } catch { throw error.daqError("rewrite segment header", path: path, offset: 0) }
            recovery.repairedHeaders.append(JournalRecovery.RepairedHeader(
                segment: SegmentName.name(firstSequence: first), defect: defect, epoch: rebuilt.header.epoch, from: rebuilt.source,
                newStream: rebuilt.newStream))
        }
        return sizes
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
        // Read what the medium holds, not the page cache: after an fdatasync that failed (a card
        // failing a write), Linux keeps the pages cached and clean, so a run started again in the
        // same boot read entries that never reached the card, found them valid, and sent them
        // ("fsyncgate"). Synced first, so only pages already on the medium are dropped.
        do { try FileOps.dataSync(fd) } catch { throw error.daqError("fdatasync segment", path: path) }
        FileOps.dropCachedPages(fd)
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
            throw DAQError(.journalCorrupt, "segment header invalid: \(defect); no other segment, no single flipped bit "
                           + "and no ack cursor tells its epoch, so it cannot be rewritten (`daqctl journal verify` shows "
                           + "what follows it; move the file away to start a new journal stream)",
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
