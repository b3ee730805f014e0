// The journal's single writer: opens (creates or recovers) a directory, appends framed entries,
// syncs, rotates segments, persists the ack cursor and enforces the disk quota.
import DAQCore
import Journal
internal import Glibc

/// Appends entries to a journal directory. Confined to the device loop (not Sendable); one
/// writer per directory, enforced with an exclusive flock on the directory.
///
/// Durability contract: every entry appended before `sync()` returns is on stable storage. A
/// crash or power cut loses at most entries appended after the last successful `sync()`; reopening
/// cuts any torn tail and continues the sequence after the last entry that survived. Readers that
/// ship entries (the uplink) must stop at `lastSyncedSequence`: only those sequence numbers are
/// never reused.
public final class JournalWriter {
    public let directory: String
    /// Where the uplink notes what the broker took for the collector, and its temporary name.
    public var queuedNotePath: String { directory + "/" + JournalLayout.queuedNoteName }
    public var queuedNoteTemporaryPath: String { directory + "/" + JournalLayout.queuedNoteTemporaryName }
    /// Where the uplink notes where the collector's copy and this journal diverged, and its temporary name.
    public var divergedNotePath: String { directory + "/" + JournalLayout.divergedNoteName }
    public var divergedNoteTemporaryPath: String { directory + "/" + JournalLayout.divergedNoteTemporaryName }
    public let configuration: JournalConfiguration
    /// What opening the directory found and repaired.
    public let recovery: JournalRecovery
    /// The stream epoch of this journal (from its segments, or the configuration for a new one).
    public let epoch: UInt64
    /// The directory lies on a file system that keeps nothing across a power loss (tmpfs, ramfs):
    /// the journal is no outbox there, and each boot starts a new stream.
    public let onVolatileStorage: Bool
    /// The last appended sequence number (0 when the journal has never held an entry).
    public private(set) var lastSequence: UInt64
    /// The last sequence number known to be on stable storage.
    public private(set) var lastSyncedSequence: UInt64
    /// Every entry up to here has been acknowledged by the collector (persisted in `ack`).
    public private(set) var acknowledgedUpTo: UInt64
    /// Bytes the journal occupies as counted against the quota: segment files plus the ack file's
    /// 28 bytes (reserved from the start, so persisting the first ack never breaks the quota).
    public private(set) var journalBytes: Int

    private let layout: JournalLayout
    private var directoryFD: Int32
    private var activeFD: Int32
    private var activeLength: Int
    /// Retained segments, oldest first; the last one is the active segment.
    private var segments: [(firstSequence: UInt64, bytes: Int)]
    private var scratch: [UInt8] = []
    /// Set when an fsync failed: the page cache's state is then unknown, so the only safe way on
    /// is to reopen (which rescans what is really on disk).
    private var failure: DAQError?
    private var isClosed = false
    /// Rotations whose syncs wait for the next sync ticket, oldest first (`defersRotationSyncs`).
    private var pendingRotations: [PendingRotation] = []
    /// First sequences of the segments still under their temporary names (pending, or in a ticket
    /// not finished yet), oldest first.
    private var unnamed: [UInt64] = []
    private var firstUnnamed: UInt64? { unnamed.first }
    /// Rotations handed out in a ticket not finished yet: a sync in place meanwhile would count
    /// entries as synced before the worker renamed their segment.
    private var rotationsInFlight = 0
    /// Bytes at the start of the active segment before its first record: the header, and the
    /// entry that opened it when `opensSegment` asked for one (a layout repeat). A segment
    /// holding no more than these is not cut again.
    private var activeFloor = SegmentHeader.length

    /// The device's choice (its syncs run off the loop): a rotation writes the new segment's
    /// header under a temporary name and leaves every sync to the next sync ticket, which syncs
    /// the closing segment, then the new one, then renames it into place and syncs the directory.
    /// Off, a rotation syncs in place (the collector, the tools). docs/journal.md, "Rotation".
    public var defersRotationSyncs = false

    /// A segment closed by a deferred rotation, and the segment after it under its temporary name.
    public struct PendingRotation: Sendable {
        let firstSequence: UInt64
        let closingFD: Int32
        let temporaryPath: String
        let path: String
    }

    /// The sequence number the next append will get.
    public var nextSequence: UInt64 { lastSequence + 1 }
    /// The oldest sequence number still in the journal.
    public var oldestSequence: UInt64 { segments[0].firstSequence }
    /// Whether the oldest segment is closed and acknowledged whole, so the next append that needs
    /// room deletes it (a full journal has room again).
    public var canRetireASegment: Bool {
        segments.count > 1 && segments[1].firstSequence - 1 <= acknowledgedUpTo
            && firstUnnamed.map { segments[1].firstSequence < $0 } != false  // its successor has its name
    }
    /// The framed bytes of the entry the last successful append wrote (header, payload, CRC), so
    /// a caller that keeps a copy (the RAM ring) need not frame and checksum it a second time.
    public func withLastAppendedEntry<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        scratch.withUnsafeBytes(body)
    }

    /// The first sequence number of every retained segment, oldest first (the uplink ships them so
    /// the collector cuts its segments at the same entries).
    public var segmentFirstSequences: [UInt64] { segments.map(\.firstSequence) }
    /// The file name of the segment appends go to.
    public var activeSegmentName: String { SegmentName.name(firstSequence: segments[segments.count - 1].firstSequence) }

    /// Opens `directory` (creating it and a first segment if needed), recovers the last segment
    /// (cutting a torn or corrupt tail back to its longest valid prefix), and takes the writer lock.
    public init(directory: String, configuration: JournalConfiguration) throws(DAQError) {
        self.directory = directory
        self.configuration = configuration
        layout = JournalLayout(directory: directory)
        do { try FileOps.makeDirectory(directory) } catch { throw error.daqError("create journal directory", path: directory) }
        do { directoryFD = try FileOps.open(directory, O_RDONLY | O_DIRECTORY) } catch {
            throw error.daqError("open journal directory", path: directory)
        }
        var opened = false
        var segmentFD: Int32 = -1
        let dirFD = directoryFD
        onVolatileStorage = FileOps.isVolatile(dirFD)
        defer {
            if !opened {
                if segmentFD >= 0 { FileOps.close(segmentFD) }
                FileOps.close(dirFD)
            }
        }
        var locked = false
        // A lock may outlive its writer for a moment: a process forked elsewhere in this program
        // shares the directory's open file description until it execs (O_CLOEXEC closes it only
        // then), and a writer that just exited is released by the kernel shortly after. Wait up
        // to a second before calling the journal busy.
        for attempt in 0..<20 where !locked {
            if attempt > 0 { usleep(50_000) }
            do { locked = try FileOps.lockExclusive(directoryFD) } catch {
                throw error.daqError("lock journal directory", path: directory)
            }
        }
        guard locked else {
            throw DAQError(.journalBusy, "another writer holds the journal", at: InputLocation(file: directory))
        }

        var recovery = JournalRecovery()
        // A crash between writing ack.tmp and renaming it leaves the old cursor in force; one
        // during a segment's creation leaves no segment (or a whole one, and its temporary name).
        // A deferred rotation's new segment not yet renamed into place is adopted below when it
        // continues the newest named segment, and removed otherwise. (Its final name there too, as
        // a cut rename can leave on vfat, the file is left alone: both names may hold the same
        // clusters.)
        let deferred = try layout.deferredSegments().map { directory + "/" + $0 }
            .filter { !FileOps.exists(String($0.dropLast(".new".count))) }
        for stale in [layout.ackTemporaryPath, layout.segmentTemporaryPath] where FileOps.exists(stale) {
            do { try FileOps.unlink(stale) } catch {
                throw error.daqError("remove a stale temporary file", path: stale)
            }
        }
        // The names as they stand are made durable before anything is appended: a run killed
        // between a segment's rename and the directory's fsync left a segment whose name a power
        // cut could still take, with the entries synced into it since.
        do { try FileOps.fullSync(directoryFD) } catch { throw error.daqError("fsync journal directory", path: directory) }

        var firsts = try layout.segmentFirstSequences()
        if firsts.isEmpty, case let foreign = try layout.foreignFiles(), !foreign.isEmpty {
            throw DAQError(.journalCorrupt, "holds no journal segment (*\(SegmentName.suffix)) but \(JournalLayout.describe(foreign: foreign)): "
                           + "not a journal directory; give a new or empty one", at: InputLocation(file: directory))
        }
        let segmentSizes = try JournalWriter.repairDamagedHeaders(layout: layout, firsts: firsts, configuration: configuration,
                                                                   recovery: &recovery)
        var active: (fd: Int32, length: Int, header: SegmentHeader, next: UInt64)?
        var restartSequence: UInt64 = 1
        while active == nil, let first = firsts.last {
            let path = layout.segmentPath(firstSequence: first)
            active = try JournalWriter.recoverSegment(path: path, nameSequence: first, recovery: &recovery)
            if active == nil {
                firsts.removeLast()
                restartSequence = first
                do { try FileOps.fullSync(directoryFD) } catch { throw error.daqError("fsync journal directory", path: directory) }
            }
        }

        // The closed segments' sizes, as the header pass found them (recovery touches only the newest).
        var sizes: [(firstSequence: UInt64, bytes: Int)] = firsts.dropLast().map { ($0, segmentSizes[$0]!) }
        // A new segment a sync never renamed into place (a crash before the sync ticket, or its
        // rename refused for space twice): when it starts where the newest segment ends, in the
        // same stream, nothing is missing before it, and it is named now, after syncing both.
        // Removing it lost entries daqlink had appended, written to the card in the second case.
        var unnamed = deferred[...]
        segmentFD = active?.fd ?? -1
        adopting: while var current = active, let candidate = unnamed.first,
              let header = try JournalWriter.continuation(candidate, of: current.header.epoch, at: current.next) {
            let path = String(candidate.dropLast(".new".count))
            do throws(SystemCallError) {
                try FileOps.fullSync(current.fd)
                let fd = try FileOps.open(candidate, O_RDONLY)
                defer { FileOps.close(fd) }
                try FileOps.fullSync(fd)
            } catch {
                throw error.daqError("sync an unrenamed segment that continues the journal, and the one before it", path: candidate)
            }
            // Refused for space, as before the stop, most likely: an acknowledged segment makes
            // room, as at a rotation. (A failed sync is thrown above, as at any open.)
            var renamed = try JournalWriter.rename(candidate, to: path)
            if !renamed {
                let freed: String?
                do {
                    freed = try JournalWriter.deleteOldestAcknowledged(layout: layout, epoch: current.header.epoch, closed: &sizes,
                                                                       next: current.header.firstSequence, directoryFD: directoryFD)
                } catch {
                    throw error.daqError("delete an acknowledged segment to make room", path: directory)
                }
                if let freed {
                    recovery.freedForRename.append(freed)
                    renamed = try JournalWriter.rename(candidate, to: path)
                }
            }
            // No room to name it and none to make: it goes, as it did before adoption, so that
            // acquisition can start (refusing to open left the device without a journal).
            guard renamed else { break adopting }
            do { try FileOps.fullSync(directoryFD) } catch { throw error.daqError("fsync journal directory", path: directory) }
            unnamed = unnamed.dropFirst()
            guard let next = try JournalWriter.recoverSegment(path: path, nameSequence: header.firstSequence, recovery: &recovery)
            else { break }
            recovery.adoptedSegments.append(SegmentName.name(firstSequence: header.firstSequence))
            sizes.append((current.header.firstSequence, current.length))
            FileOps.close(current.fd)
            current = next
            active = current
            segmentFD = current.fd
        }
        for stale in unnamed {
            let holdsEntries = ((try? FileOps.readHead(stale, count: 0))?.size ?? 0) > SegmentHeader.length
            do { try FileOps.unlink(stale) } catch { throw error.daqError("remove a stale temporary file", path: stale) }
            if holdsEntries { recovery.removedUnnamedSegments.append(String(stale.split(separator: "/").last!)) }
        }
        if !deferred.isEmpty {
            do { try FileOps.fullSync(directoryFD) } catch { throw error.daqError("fsync journal directory", path: directory) }
        }

        if let active {
            segmentFD = active.fd
            activeFD = active.fd
            activeLength = active.length
            epoch = active.header.epoch
            lastSequence = active.next - 1
            sizes.append((active.header.firstSequence, active.length))
        } else {
            recovery.createdNewJournal = recovery.removedSegments.isEmpty
            epoch = configuration.epoch
            activeFD = try JournalWriter.createSegment(
                layout: layout, directoryFD: directoryFD, header: SegmentHeader(epoch: epoch, firstSequence: restartSequence))
            segmentFD = activeFD
            activeLength = SegmentHeader.length
            lastSequence = restartSequence - 1
            sizes.append((restartSequence, SegmentHeader.length))
        }
        segments = sizes
        lastSyncedSequence = lastSequence

        var acked: UInt64 = 0
        if FileOps.exists(layout.ackPath) {
            // Unreadable (a bad block under it) is as unparsable: the cursor restarts at the oldest
            // segment, which only costs a resend the collector drops. It stopped daqlink starting.
            let bytes = (try? FileOps.readFile(layout.ackPath)) ?? []
            if let record = AckRecord.parse(bytes), record.epoch == epoch {
                acked = record.acknowledgedUpTo
            } else {
                recovery.ackCursorReset = true
            }
        }
        // Segments before the oldest were only ever deleted once acknowledged; an ack beyond the
        // last surviving entry would let retention delete entries not yet written, so clamp it.
        acked = max(acked, sizes[0].firstSequence - 1)
        if acked > lastSequence {
            // The collector holds entries up to `acked` that this journal lost (the end of its
            // synced entries was damaged and cut like a torn tail). Numbering new entries like
            // them would make the collector drop them as duplicates: they start a new segment
            // after them instead (a gap between segments, which readers pass as damage).
            recovery.numberedAfterAcknowledged = (lastSequence + 1)...acked
            let fresh = try JournalWriter.createSegment(layout: layout, directoryFD: directoryFD,
                                                        header: SegmentHeader(epoch: epoch, firstSequence: acked + 1))
            FileOps.close(activeFD)
            activeFD = fresh
            segmentFD = fresh
            activeLength = SegmentHeader.length
            sizes.append((acked + 1, SegmentHeader.length))
            segments = sizes
            lastSequence = acked
            lastSyncedSequence = acked
        }
        acknowledgedUpTo = acked
        journalBytes = sizes.reduce(0) { $0 + $1.bytes } + AckRecord.length
        self.recovery = recovery
        opened = true
    }

    deinit {
        if !isClosed {
            FileOps.close(activeFD)
            FileOps.close(directoryFD)
            for rotation in pendingRotations { FileOps.close(rotation.closingFD) }
        }
    }

    /// Appends one entry and returns its sequence number. Not durable until `sync()`.
    /// Throws journal-full (nothing written, nothing lost) when the quota or the filesystem is
    /// full of unacknowledged entries.
    @discardableResult
    public func append(kind: JournalEntryKind, payload: UnsafeRawBufferPointer) throws(DAQError) -> UInt64 {
        try append(kind: kind, payload: payload, opensSegment: false)
    }

    /// Appends one entry as the first of a new segment (a layout repeat: docs/journal.md), unless
    /// the active segment holds nothing yet; the next entry goes into the same segment whatever
    /// its size, so the segment never holds the opening entry alone.
    @discardableResult
    public func append(kind: JournalEntryKind, payload: UnsafeRawBufferPointer, opensSegment: Bool) throws(DAQError) -> UInt64 {
        try ensureUsable()
        guard kind.isDefined else {
            throw DAQError(.journalMisuse, "entry kind \(kind.rawValue) is reserved", at: InputLocation(file: directory))
        }
        guard payload.count <= JournalFraming.maxPayloadLength else {
            throw DAQError(.journalMisuse, "payload of \(payload.count) bytes exceeds \(JournalFraming.maxPayloadLength)",
                           at: InputLocation(file: directory))
        }
        let sequence = lastSequence + 1
        let rotating = opensSegment ? activeLength > activeFloor : startsSegment(payloadLength: payload.count)
        scratch.removeAll(keepingCapacity: true)
        JournalFraming.encode(kind: kind, sequence: sequence, payload: payload, into: &scratch)
        try scratch.withUnsafeBytes { entry in
            Result { () throws(DAQError) in try writeEntries(entry, first: sequence, last: sequence, rotating: rotating) }
        }.get()
        // Rotated or not, the segment held nothing past its floor before this entry.
        if opensSegment { activeFloor = activeLength }
        return sequence
    }

    /// Whether appending a payload of `payloadLength` bytes would close the active segment and
    /// start a new one with it (daqlink puts a layout repeat there first).
    public func startsSegment(payloadLength: Int) -> Bool {
        activeLength > activeFloor
            && activeLength + JournalFraming.framedLength(payloadLength: payloadLength) > configuration.segmentSizeLimit
    }

    /// Appends an entry that is already framed (the collector rebuilding a device's journal from
    /// the device's own bytes). It must carry the next sequence number and a valid CRC. The segment
    /// is cut only where `startsSegment` says the device cut it, never by size, so the rebuilt
    /// segments are the device's segments byte for byte.
    public func appendFramed(_ entry: UnsafeRawBufferPointer, startsSegment: Bool) throws(DAQError) {
        try appendFramed(run: entry, entries: [0..<entry.count], startsSegment: { _ in startsSegment })
    }

    /// Appends consecutive framed entries (`entries` are their ranges in `run`), each checked as
    /// `appendFramed(_:startsSegment:)` checks one, with one write per segment they fall into
    /// instead of one per entry (straight from `run`, not copied). `startsSegment(sequence)` says
    /// where the device cut a segment. If one entry is invalid, the entries before it are appended
    /// and an error is thrown.
    ///
    /// `checksumsVerifiedByCaller`: pass `true` only when the caller has itself, just before, checked
    /// (or computed) the CRC32C of every entry of `run` in these very bytes — the collector's
    /// `UplinkBatch.validate` — so the writer does not compute them a second time. Length,
    /// contiguity, sequence, kind and reserved bytes are still checked. The default checks all.
    public func appendFramed(run: UnsafeRawBufferPointer, entries: [Range<Int>],
                             checksumsVerifiedByCaller: Bool = false,
                             startsSegment: (UInt64) -> Bool) throws(DAQError) {
        try ensureUsable()
        var piece: Range<Int>?  // bytes of the entries checked but not yet written
        var pieceEntries: UInt64 = 0
        var rotating = false
        func flush() throws(DAQError) {
            guard let bytes = piece else { return }
            try writeEntries(UnsafeRawBufferPointer(rebasing: run[bytes]), first: lastSequence + 1,
                             last: lastSequence + pieceEntries, rotating: rotating)
            piece = nil
            pieceEntries = 0
            rotating = false
        }
        var previousEnd: Int?
        for range in entries {
            let sequence = lastSequence + 1 + pieceEntries
            let entry = UnsafeRawBufferPointer(rebasing: run[range])
            guard previousEnd == nil || range.lowerBound == previousEnd,
                  case .entry(let kind, _, _, let length) = JournalFraming.decode(
                      entry, at: 0, expectedSequence: sequence, checksumVerified: checksumsVerifiedByCaller),
                  length == entry.count, kind.isDefined else {
                try flush()
                throw DAQError(.journalMisuse, "framed entry is not a valid entry \(sequence)", at: InputLocation(file: directory))
            }
            if startsSegment(sequence) {
                try flush()
                rotating = activeLength > SegmentHeader.length
            }
            piece = (piece?.lowerBound ?? range.lowerBound)..<range.upperBound
            pieceEntries += 1
            previousEnd = range.upperBound
        }
        try flush()
    }

    /// Writes `bytes` (framed entries `first...last`), rotating first when asked.
    private func writeEntries(_ bytes: UnsafeRawBufferPointer, first: UInt64, last sequence: UInt64,
                              rotating: Bool) throws(DAQError) {
        let framed = bytes.count
        // Room first: an entry refused for the quota must not leave a new, empty segment behind.
        try makeRoom(framed + (rotating ? SegmentHeader.length : 0))
        let before = (length: activeLength, floor: activeFloor, pending: pendingRotations.count)
        if rotating { try rotate(firstSequence: first) }
        do throws(DAQError) {
            do {
                try writeAtEnd(bytes)
            } catch where error.isOutOfSpace {
                // The filesystem filled before the quota did: make room from acknowledged segments once.
                guard deleteAcknowledgedSegments(upTo: acknowledgedUpTo, while: { true }, limit: 1) > 0 else {
                    throw diskFullError("writing an entry of \(framed) bytes", error.text)
                }
                do { try writeAtEnd(bytes) } catch {
                    throw error.isOutOfSpace ? diskFullError("writing an entry of \(framed) bytes", error.text)
                        : error.daqError("append", path: activePath, offset: activeLength)
                }
            } catch {
                throw error.daqError("append", path: activePath, offset: activeLength)
            }
        } catch {
            // A deferred rotation whose first entry was refused (a full card) is undone: left, its
            // unnamed segment would hold back retention until a sync came, and no append would
            // ask for one; and the next try would not open the segment with the layout repeat.
            if rotating, pendingRotations.count == before.pending + 1 { undoRotation(length: before.length, floor: before.floor) }
            throw error
        }
        activeLength += framed
        segments[segments.count - 1].bytes = activeLength
        journalBytes += framed
        lastSequence = sequence
    }

    /// Appends one entry and returns its sequence number. Not durable until `sync()`.
    @discardableResult
    public func append(kind: JournalEntryKind, payload: [UInt8]) throws(DAQError) -> UInt64 {
        let result = payload.withUnsafeBytes { raw in
            Result { () throws(DAQError) -> UInt64 in try append(kind: kind, payload: raw) }
        }
        return try result.get()
    }

    /// Makes every appended entry durable (fdatasync of the active segment; earlier segments were
    /// synced when they were closed).
    public func sync() throws(DAQError) {
        guard rotationsInFlight == 0 else {
            throw DAQError(.journalMisuse, "a background sync that renames a new segment is under way: wait for it before syncing in place",
                           at: InputLocation(file: directory))
        }
        guard let ticket = try beginSync() else { return }
        try finishSync(ticket, errno: ticket.perform())
    }

    /// A sync another thread may run (`BackgroundSync`): a duplicate of the active segment's
    /// descriptor, the rotations it completes, and the last entry that is durable once `perform()`
    /// returned 0.
    public struct SyncTicket: Sendable {
        public let fd: Int32
        public let upTo: UInt64
        /// The segment file the descriptor is open on (for error messages).
        public let path: String
        /// Deferred rotations, oldest first, and a descriptor of the directory (-1 without any).
        let rotations: [PendingRotation]
        let directoryFD: Int32

        /// Syncs: each closing segment, the active one, then each new segment's rename and the
        /// directory, in order (no segment name appears before the entries before it are on the
        /// medium, so a power cut leaves no hole between segments). Closes its descriptors; 0, or
        /// the errno of the step that failed.
        public func perform() -> Int32 {
            defer {
                FileOps.close(fd)
                for rotation in rotations { FileOps.close(rotation.closingFD) }
                if directoryFD >= 0 { FileOps.close(directoryFD) }
            }
            var step = Step.syncActive
            do throws(SystemCallError) {
                guard !rotations.isEmpty else {
                    try FileOps.dataSync(fd)
                    return 0
                }
                step = .syncClosing
                for rotation in rotations { try FileOps.fullSync(rotation.closingFD) }
                step = .syncActive
                try FileOps.fullSync(fd)
                for rotation in rotations {
                    step = .rename
                    try FileOps.rename(rotation.temporaryPath, rotation.path)
                    step = .syncDirectory
                    try FileOps.fullSync(directoryFD)
                }
                return 0
            } catch {
                return step.rawValue << 16 | error.errno
            }
        }

        /// The step of `perform()` that failed, in the outcome's bits 16 and up (errno below).
        enum Step: Int32 {
            case syncActive = 0, syncClosing, rename, syncDirectory

            var doing: String {
                switch self {
                case .syncActive: "fdatasync"
                case .syncClosing: "fsync the closed segment"
                case .rename: "rename the new segment into place"
                case .syncDirectory: "fsync the directory after a new segment's rename"
                }
            }
        }
    }

    /// Starts a sync of every entry appended so far without waiting for it (nil when they are all
    /// synced): run fdatasync on the ticket's descriptor off the loop, then report the outcome
    /// with `finishSync`. Entries appended meanwhile are not covered, whatever the sync reaches.
    public func beginSync() throws(DAQError) -> SyncTicket? {
        try ensureUsable()
        guard lastSyncedSequence != lastSequence || !pendingRotations.isEmpty else { return nil }
        let copy = fcntl(activeFD, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            throw SystemCallError(errno: errno).daqError("duplicate the descriptor to sync", path: activePath)
        }
        var directoryCopy: Int32 = -1
        if !pendingRotations.isEmpty {
            // A descriptor of its own, as the ack cursor's (see `beginAcknowledge`).
            do { directoryCopy = try FileOps.open(directory, O_RDONLY | O_DIRECTORY) } catch {
                FileOps.close(copy)
                throw error.daqError("open the journal directory", path: directory)
            }
        }
        defer { pendingRotations.removeAll() }
        rotationsInFlight += pendingRotations.count
        return SyncTicket(fd: copy, upTo: lastSequence, path: activePath, rotations: pendingRotations, directoryFD: directoryCopy)
    }

    /// The outcome of a ticket's `perform()`: 0, or what failed. A failure leaves the writer
    /// unusable, as a failed `sync()` does (the page cache's state is then unknown), except a
    /// rename refused for space once every sync was done: an acknowledged segment is freed and the
    /// renames left are done here.
    public func finishSync(_ ticket: SyncTicket, errno code: Int32) throws(DAQError) {
        rotationsInFlight -= ticket.rotations.count
        try ensureUsable()
        if code != 0 {
            let step = SyncTicket.Step(rawValue: code >> 16) ?? .syncActive
            let number = code & 0xFFFF
            let retried = step == .rename && SystemCallError(errno: number).isOutOfSpace && renameAgain(ticket.rotations)
            guard retried else {
                let path = step == .rename || step == .syncDirectory ? directory : ticket.path
                let failed = SystemCallError(errno: number).daqError(step.doing, path: path)
                failure = failed
                throw failed
            }
        }
        unnamed.removeAll { first in ticket.rotations.contains { $0.firstSequence == first } }
        lastSyncedSequence = max(lastSyncedSequence, ticket.upTo)
    }

    /// The header of the unrenamed segment at `path` when it opens `epoch`'s entry `sequence` and
    /// holds an entry after its header; nil otherwise (another stream, a gap, a torn header, none).
    private static func continuation(_ path: String, of epoch: UInt64, at sequence: UInt64) throws(DAQError) -> SegmentHeader? {
        let head: (bytes: [UInt8], size: Int)
        do { head = try FileOps.readHead(path, count: SegmentHeader.length) } catch {
            throw error.daqError("read an unrenamed segment", path: path)
        }
        guard head.size > SegmentHeader.length, case .success(let header) = SegmentHeader.parse(head.bytes),
              header.epoch == epoch, header.firstSequence == sequence,
              SegmentName.name(firstSequence: sequence) + ".new" == path.split(separator: "/").last.map(String.init)
        else { return nil }
        return header
    }

    /// Renames the unrenamed segment `from` into place at open; false when the file system
    /// refuses it for space.
    private static func rename(_ from: String, to path: String) throws(DAQError) -> Bool {
        do {
            try FileOps.rename(from, path)
            return true
        } catch where error.isOutOfSpace {
            return false
        } catch {
            throw error.daqError("name an unrenamed segment that continues the journal", path: from)
        }
    }

    /// At open, an unrenamed segment's rename refused for space: deletes the oldest of the `closed`
    /// segments (the one before `next` stays named) when the ack cursor of `epoch` covers it;
    /// its name, or nil.
    private static func deleteOldestAcknowledged(layout: JournalLayout, epoch: UInt64, closed: inout [(firstSequence: UInt64, bytes: Int)],
                                                 next: UInt64, directoryFD: Int32) throws(SystemCallError) -> String? {
        guard let oldest = closed.first, let bytes = try? FileOps.readFile(layout.ackPath),
              let record = AckRecord.parse(bytes), record.epoch == epoch,
              (closed.count > 1 ? closed[1].firstSequence : next) - 1 <= record.acknowledgedUpTo else { return nil }
        try FileOps.unlink(layout.segmentPath(firstSequence: oldest.firstSequence))
        closed.removeFirst()
        try FileOps.fullSync(directoryFD)
        return SegmentName.name(firstSequence: oldest.firstSequence)
    }

    /// A ticket's renames refused for space: frees one acknowledged segment, then does the renames
    /// not done yet (each temporary name still there), syncing the directory after each.
    private func renameAgain(_ rotations: [PendingRotation]) -> Bool {
        guard deleteAcknowledgedSegments(upTo: acknowledgedUpTo, while: { true }, limit: 1) > 0 else { return false }
        do throws(SystemCallError) {
            for rotation in rotations where FileOps.exists(rotation.temporaryPath) {
                try FileOps.rename(rotation.temporaryPath, rotation.path)
                try FileOps.fullSync(directoryFD)
            }
            return true
        } catch {
            return false
        }
    }

    /// Persists "the collector holds every entry up to `sequence`" (atomically: write ack.tmp,
    /// fsync, rename over ack, fsync the directory). Lower or equal values are ignored (acks may
    /// arrive twice or out of order); values beyond `lastSyncedSequence` are refused.
    public func acknowledge(upTo sequence: UInt64) throws(DAQError) {
        try ensureUsable()
        guard sequence > acknowledgedUpTo else { return }
        guard sequence <= lastSyncedSequence else {
            throw DAQError(.journalMisuse, "ack up to \(sequence) is beyond the last synced seq \(lastSyncedSequence)",
                           at: InputLocation(file: layout.ackPath))
        }
        let record = AckRecord(epoch: epoch, acknowledgedUpTo: sequence)
        do {
            try writeAck(record)
        } catch where error.isOutOfSpace {
            // The collector already holds these entries, so deleting their segments before the
            // cursor is durable is safe, and it frees the few bytes the cursor needs.
            guard deleteAcknowledgedSegments(upTo: sequence, while: { true }, limit: 1) > 0 else {
                throw error.daqError("write ack cursor", path: layout.ackTemporaryPath)
            }
            do { try writeAck(record) } catch { throw error.daqError("write ack cursor", path: layout.ackTemporaryPath) }
        } catch {
            throw error.daqError("write ack cursor", path: layout.ackTemporaryPath)
        }
        acknowledgedUpTo = sequence
    }

    /// An ack cursor write another thread may run (`BackgroundSync`): the record, where it goes,
    /// and a duplicate of the directory's descriptor to sync the rename with.
    public struct AckTicket: Sendable {
        public let upTo: UInt64
        let record: [UInt8]
        let temporaryPath: String
        let path: String
        let directoryFD: Int32

        /// Writes the cursor as `acknowledge(upTo:)` does (ack.tmp, fsync, rename, fsync the
        /// directory) and closes the duplicate; 0, or the errno of the step that failed.
        public func persist() -> Int32 {
            defer { FileOps.close(directoryFD) }
            do {
                try JournalWriter.writeAck(record, temporary: temporaryPath, path: path, directoryFD: directoryFD)
                return 0
            } catch {
                return error.errno
            }
        }
    }

    /// Starts persisting the ack cursor at `sequence` without waiting for it (nil when it is not
    /// ahead of the persisted one): run `persist()` off the loop, then report with
    /// `finishAcknowledge`. One at a time: they share ack.tmp.
    public func beginAcknowledge(upTo sequence: UInt64) throws(DAQError) -> AckTicket? {
        try ensureUsable()
        guard sequence > acknowledgedUpTo else { return nil }
        guard sequence <= lastSyncedSequence else {
            throw DAQError(.journalMisuse, "ack up to \(sequence) is beyond the last synced seq \(lastSyncedSequence)",
                           at: InputLocation(file: layout.ackPath))
        }
        // A descriptor of its own, not a dup: a writeback error is reported once per open file,
        // and the worker's fsync would take it from the loop's next one (a segment's rename).
        let copy: Int32
        do { copy = try FileOps.open(directory, O_RDONLY | O_DIRECTORY) } catch {
            throw error.daqError("open the journal directory", path: directory)
        }
        return AckTicket(upTo: sequence, record: AckRecord(epoch: epoch, acknowledgedUpTo: sequence).bytes,
                         temporaryPath: layout.ackTemporaryPath, path: layout.ackPath, directoryFD: copy)
    }

    /// The outcome of a ticket's `persist()`. Out of space, it is written again here the way
    /// `acknowledge(upTo:)` does (freeing an acknowledged segment first); any other failure is
    /// thrown and leaves the persisted cursor where it was (the writer stays usable).
    public func finishAcknowledge(_ ticket: AckTicket, errno code: Int32) throws(DAQError) {
        guard code == 0 else {
            if SystemCallError(errno: code).isOutOfSpace { return try acknowledge(upTo: ticket.upTo) }
            throw SystemCallError(errno: code).daqError("write ack cursor", path: ticket.temporaryPath)
        }
        acknowledgedUpTo = max(acknowledgedUpTo, ticket.upTo)
    }

    /// Syncs and releases the directory. The writer cannot be used afterwards.
    public func close() throws(DAQError) {
        guard !isClosed else { return }
        defer {
            isClosed = true
            FileOps.close(activeFD)
            FileOps.close(directoryFD)
            for rotation in pendingRotations { FileOps.close(rotation.closingFD) }
        }
        if failure == nil { try sync() }
    }

    // MARK: - Internals

    /// The active segment's file: its temporary name until a sync renamed it into place.
    private var activePath: String {
        let first = segments[segments.count - 1].firstSequence
        let path = layout.segmentPath(firstSequence: first)
        return firstUnnamed.map { first >= $0 } == true ? JournalLayout.temporaryPath(ofSegment: path) : path
    }

    private func ensureUsable() throws(DAQError) {
        if isClosed { throw DAQError(.journalMisuse, "journal writer is closed", at: InputLocation(file: directory)) }
        if let failure { throw failure }
    }

    /// Whether the last `journalFull` failure was the disk's (not the quota's).
    public private(set) var lastFullWasTheDisk = false

    /// Whether the journal's filesystem has room for a good part of a segment again (at least
    /// the smaller of a segment and 1 MiB free): a disk-full pause tried at any free byte let a
    /// small record slip into the slack left and paused again at the next, an alarm each time.
    public var diskHasRoom: Bool {
        var info = statvfs()
        guard fstatvfs(directoryFD, &info) == 0 else { return true }
        // Root writes into the filesystem's reserve too (ext4's 5 %): free blocks, not available ones.
        let blocks = geteuid() == 0 ? info.f_bfree : info.f_bavail
        return Int(blocks) * Int(info.f_frsize) >= min(configuration.segmentSizeLimit, 1 << 20)
    }

    private func fullError(_ framed: Int, cause: String) -> DAQError {
        lastFullWasTheDisk = false
        return DAQError(.journalFull,
                 "journal full: \(cause); \(journalBytes) of \(configuration.quotaBytes) quota bytes used, "
                 + "acknowledged up to \(acknowledgedUpTo), last seq \(lastSequence); entry of \(framed) bytes refused",
                 at: InputLocation(file: directory))
    }

    /// The disk (not the quota) is full: its own words, and what the journal holds.
    private func diskFullError(_ doing: String, _ text: String) -> DAQError {
        lastFullWasTheDisk = true
        return DAQError(.journalFull, "disk full (\(text)) \(doing); the journal holds entries up to "
                 + "\(lastSequence) (\(journalBytes) bytes)", at: InputLocation(file: directory))
    }

    /// Writes `bytes` at the end of the active segment; on failure cuts the segment back to its
    /// last complete entry, so a failed append never leaves a torn entry for recovery to find.
    private func writeAtEnd(_ bytes: UnsafeRawBufferPointer) throws(SystemCallError) {
        var written = 0
        do {
            try FileOps.writeAll(activeFD, bytes, written: &written)
        } catch {
            if written > 0 {
                do { try FileOps.truncate(activeFD, to: activeLength) } catch {
                    failure = error.daqError("truncate after failed append", path: activePath, offset: activeLength)
                }
            }
            throw error
        }
    }

    /// Closes the active segment (synced) and starts a new one whose first entry is `firstSequence`.
    private func rotate(firstSequence: UInt64) throws(DAQError) {
        let deferred = defersRotationSyncs
        if !deferred { try sync() }
        try makeRoom(SegmentHeader.length)
        let header = SegmentHeader(epoch: epoch, firstSequence: firstSequence)
        let (layout, directoryFD) = (self.layout, self.directoryFD)
        let create = { () throws(DAQError) -> Int32 in
            deferred ? try JournalWriter.createSegmentUnsynced(layout: layout, header: header)
                : try JournalWriter.createSegment(layout: layout, directoryFD: directoryFD, header: header)
        }
        let fd: Int32
        do {
            fd = try create()
        } catch where error.code == .journalFull {
            guard deleteAcknowledgedSegments(upTo: acknowledgedUpTo, while: { true }, limit: 1) > 0 else {
                throw diskFullError("starting a new segment", error.message)
            }
            do { fd = try create() } catch where error.code == .journalFull {
                throw diskFullError("starting a new segment", error.message)
            }
        }
        if deferred {
            let path = layout.segmentPath(firstSequence: firstSequence)
            pendingRotations.append(PendingRotation(firstSequence: firstSequence, closingFD: activeFD,
                                                    temporaryPath: JournalLayout.temporaryPath(ofSegment: path), path: path))
            unnamed.append(firstSequence)
        } else {
            FileOps.close(activeFD)
        }
        activeFloor = SegmentHeader.length
        activeFD = fd
        activeLength = SegmentHeader.length
        segments.append((firstSequence, SegmentHeader.length))
        journalBytes += SegmentHeader.length
    }

    /// Undoes the deferred rotation just made: the new segment's temporary file goes, and the
    /// segment it closed is the active one again, as it was.
    private func undoRotation(length: Int, floor: Int) {
        guard let rotation = pendingRotations.popLast() else { return }
        FileOps.close(activeFD)
        _ = try? FileOps.unlink(rotation.temporaryPath)
        activeFD = rotation.closingFD
        unnamed.removeAll { $0 == rotation.firstSequence }
        segments.removeLast()
        journalBytes -= SegmentHeader.length
        activeLength = length
        activeFloor = floor
    }

    /// Ensures `bytes` more fit in the quota, deleting acknowledged segments oldest first.
    private func makeRoom(_ bytes: Int) throws(DAQError) {
        let quota = configuration.quotaBytes
        guard journalBytes + bytes > quota else { return }
        deleteAcknowledgedSegments(upTo: acknowledgedUpTo, while: { self.journalBytes + bytes > quota }, limit: .max)
        guard journalBytes + bytes <= quota else { throw fullError(bytes, cause: "quota full of unacknowledged entries") }
    }

    /// Deletes closed segments all of whose entries are ≤ `acknowledged`, oldest first, while
    /// `needed()` holds (at most `limit`). Returns how many it deleted.
    /// The active segment is never deleted.
    @discardableResult
    private func deleteAcknowledgedSegments(upTo acknowledged: UInt64, while needed: () -> Bool, limit: Int) -> Int {
        var deleted = 0
        while deleted < limit, segments.count >= 2, needed() {
            let lastOfOldest = segments[1].firstSequence - 1
            guard lastOfOldest <= acknowledged else { break }
            // The oldest segment stays while the next one has no name yet: a crash then would
            // leave no segment at all, and the journal would start again as a new stream.
            if let firstUnnamed, segments[1].firstSequence >= firstUnnamed { break }
            let path = layout.segmentPath(firstSequence: segments[0].firstSequence)
            do { try FileOps.unlink(path) } catch { break }
            journalBytes -= segments[0].bytes
            segments.removeFirst()
            deleted += 1
        }
        // The directory is not synced here: this runs inside an append, on the loop, and at the
        // quota once per segment, where a card's sync held acquisition for its length (329 ms with
        // a 300-ms sync in `SlowStorageTests`; a review). A deletion a power cut takes back only
        // brings back a segment the collector holds, which the next one deletes again; the next
        // directory sync (a segment named, the cursor written) makes it durable. Space is freed
        // at the unlink, synced or not.
        return deleted
    }

    private func writeAck(_ record: AckRecord) throws(SystemCallError) {
        try Self.writeAck(record.bytes, temporary: layout.ackTemporaryPath, path: layout.ackPath, directoryFD: directoryFD)
    }

    private static func writeAck(_ bytes: [UInt8], temporary: String, path: String, directoryFD: Int32) throws(SystemCallError) {
        let fd = try FileOps.open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        // Closed once only: this runs on a worker too, where a second close could hit a
        // descriptor the loop has opened meanwhile under the same number.
        var open = true
        do {
            var written = 0
            try FileOps.writeAll(fd, bytes, written: &written)
            try FileOps.fullSync(fd)
            FileOps.close(fd)
            open = false
            try FileOps.rename(temporary, path)
            try FileOps.fullSync(directoryFD)
        } catch {
            if open { FileOps.close(fd) }
            _ = try? FileOps.unlink(temporary)
            throw error
        }
    }
}
