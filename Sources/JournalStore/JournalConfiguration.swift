// How a journal directory is sized, and what opening it found.
import Journal

/// Sizes and identity of a journal.
public struct JournalConfiguration: Sendable, Hashable {
    /// The stream epoch written into new segments. Only used when the directory holds no
    /// journal yet; an existing journal keeps the epoch of its segments.
    public var epoch: UInt64
    /// A segment is closed and a new one started when the next entry would push it past this
    /// size (a segment always holds at least one entry, so one huge entry may exceed it).
    public var segmentSizeLimit: Int
    /// Bytes the whole journal directory may hold (segments + ack file). Must be at least two
    /// segments, so the active segment never has to be deleted to make room.
    public var quotaBytes: Int
    /// The epoch this journal is known to hold, kept outside it: a collector's copy beside a
    /// device's first is named after its epoch, and the first copy's epoch is recorded beside it.
    /// A damaged segment header whose epoch none of the journal's own sources gives (another
    /// segment's header, one flipped bit's CRC32C, the ack cursor) is rewritten with it.
    public var recordedEpoch: UInt64?
    /// A damaged segment header whose epoch neither the journal's own sources nor `recordedEpoch`
    /// gives is rewritten with `epoch`: its entries go on as a new stream, which a collector keeps
    /// beside the old one. For a device's own journal (daqlink sets it).
    public var newEpochForUnknownHeaders = false

    public init(epoch: UInt64, segmentSizeLimit: Int = 8 << 20, quotaBytes: Int = 512 << 20) {
        precondition(segmentSizeLimit >= SegmentHeader.length + JournalFraming.overhead,
                     "segment size limit below one header and one empty entry")
        precondition(quotaBytes >= 2 * segmentSizeLimit, "journal quota must hold at least two segments")
        self.epoch = epoch
        self.segmentSizeLimit = segmentSizeLimit
        self.quotaBytes = quotaBytes
    }
}

/// What `JournalWriter` found and repaired when it opened the directory (log it: a non-empty
/// truncation after a clean shutdown means the medium corrupted data).
public struct JournalRecovery: Sendable, Hashable {
    /// The directory held no segments; a new journal was started.
    public var createdNewJournal = false
    /// The segment whose invalid tail was cut off, if any.
    public var truncatedSegment: String?
    /// Where the cut was made (the end of the longest valid prefix).
    public var truncatedAtOffset: Int?
    /// How many bytes were cut off.
    public var truncatedBytes = 0
    /// Why the tail was invalid.
    public var truncationReason: JournalDefect?
    /// Segments removed because their creation was cut short before the header was durable
    /// (such a file holds no entries).
    public var removedSegments: [String] = []
    /// New segments a sync never renamed into place (`<name>.new`) that continued the journal:
    /// synced and named at open, their entries kept.
    public var adoptedSegments: [String] = []
    /// New segments never renamed into place that held entries but did not continue the journal
    /// (the segment before them lost its tail, or another stream), or that no room could be made
    /// to name: removed (none of their entries was counted as synced, so none had been sent).
    public var removedUnnamedSegments: [String] = []
    /// Acknowledged segments deleted to make room for naming an unrenamed one (its rename refused
    /// for space).
    public var freedForRename: [String] = []
    /// Damage inside the newest segment with valid entries after it (a flipped bit or a bad block
    /// on the card, not a torn tail): those entries were kept, and these are the ones the damage
    /// took (each as the reader's `skipDamaged` reports it), oldest first.
    public var damaged: [JournalReader.Damage] = []
    /// Entries the collector had acknowledged that the journal no longer held (its synced tail
    /// was damaged and cut): new entries are numbered after them, in a new segment.
    public var numberedAfterAcknowledged: ClosedRange<UInt64>?
    /// The ack file was unreadable or belonged to another epoch; the cursor restarted from the
    /// oldest segment (safe: the uplink resends, the collector drops duplicates).
    public var ackCursorReset = false
    /// Damaged segment headers rewritten with their original bytes, oldest first.
    public var repairedHeaders: [RepairedHeader] = []

    /// A segment header rewritten at open: what was wrong, and where its epoch came from.
    public struct RepairedHeader: Sendable, Hashable, CustomStringConvertible {
        public var segment: String
        public var defect: JournalDefect
        public var epoch: UInt64
        public var from: String
        /// The epoch is a new one (`newEpochForUnknownHeaders`): the entries go on as a new stream.
        public var newStream = false

        public var description: String {
            newStream
                ? "rewrote the damaged header of \(segment) (\(defect)) with a new epoch \(epoch) and its name's first seq: "
                    + "no other segment, no single flipped bit, no ack cursor and no recorded epoch gave the old one, so its entries go on as a "
                    + "new stream (the collector keeps it beside the old one)"
                : "rewrote the damaged header of \(segment) (\(defect)) with epoch \(epoch) from \(from) and its name's first seq"
        }
    }

    public init() {}
}
