// A full journal on a device with an uplink: the acquisition pauses (records are counted, not
// kept) until the collector's acks let the journal retire its oldest segment, and then goes on by
// itself. Without an uplink nothing would ever free the journal, and a run stops instead.
// Pure: the run asks it whether to try an append and tells it what happened.

struct JournalFullPause {
    /// When the current pause began (nil: not paused).
    private(set) var since: Int64?
    /// Records not kept in the current pause, and over the run.
    private var notKeptNow: UInt64 = 0
    private(set) var notKeptTotal: UInt64 = 0
    private(set) var pauses = 0
    private(set) var pausedNanoseconds: Int64 = 0

    /// The pause is the disk's, not the quota's: the card filled first (free space below the
    /// quota, other files growing). Acks may free nothing then (once the journal is down to its
    /// active segment none can be retired) and room may come from elsewhere: an append is tried
    /// again every `diskRetryNanoseconds`. Before, such a pause lasted until daqlink restarted
    /// (a review).
    private(set) var diskFull = false
    /// When an append was last tried and found the journal full.
    private var lastFullAt: Int64 = 0
    static let diskRetryNanoseconds: Int64 = 1_000_000_000

    /// Whether to try appending: always, unless paused and the journal cannot retire a segment
    /// yet. (A record small enough for the room left would otherwise slip in, and the next one
    /// pause the acquisition again: a pause ends only when room is made.) A disk-full pause is
    /// also tried once a second.
    /// `diskHasRoom` is asked only then (a system call).
    func shouldTry(roomCanBeMade: Bool, now: Int64, diskHasRoom: @autoclosure () -> Bool = true) -> Bool {
        since == nil || roomCanBeMade || (diskFull && now - lastFullAt >= Self.diskRetryNanoseconds && diskHasRoom())
    }

    /// An append found the journal full (`disk`: the disk, not the quota); true when this begins
    /// a pause (say so once).
    mutating func paused(now: Int64, disk: Bool = false) -> Bool {
        lastFullAt = now
        diskFull = disk
        guard since == nil else { return false }
        since = now
        pauses += 1
        notKeptNow = 0
        return true
    }

    /// Records that were not kept.
    mutating func notKept(_ count: Int) {
        notKeptNow += UInt64(max(0, count))
        notKeptTotal += UInt64(max(0, count))
    }

    /// An append succeeded: ends a pause, returning how long it lasted and what it did not keep.
    mutating func resumed(now: Int64) -> (seconds: Double, recordsNotKept: UInt64)? {
        guard let began = since else { return nil }
        since = nil
        pausedNanoseconds += now - began
        return (Double(now - began) / 1e9, notKeptNow)
    }

    /// The time paused so far, including a pause still under way at `now`.
    func pausedSeconds(now: Int64) -> Double {
        Double(pausedNanoseconds + (since.map { now - $0 } ?? 0)) / 1e9
    }
}
