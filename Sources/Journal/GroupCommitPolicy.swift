// When to fsync: a pure state machine. The device's single-threaded loop owns the clock; it feeds
// appends, timer firings and completed syncs in, and performs the actions that come out.

/// Group commit: sync once `maxPendingBytes` are unsynced, or `maxDelay` after the first unsynced
/// append, whichever comes first. Batching syncs is what lets a slow SD card keep up; the delay
/// bounds how much a power cut can take.
public struct GroupCommitPolicy: Sendable {
    /// Thresholds; times are in the caller's monotonic nanoseconds.
    public struct Configuration: Sendable, Hashable {
        public var maxPendingBytes: Int
        public var maxDelayNanoseconds: Int64

        public init(maxPendingBytes: Int, maxDelayNanoseconds: Int64) {
            precondition(maxPendingBytes > 0 && maxDelayNanoseconds >= 0, "group commit thresholds must be positive")
            self.maxPendingBytes = maxPendingBytes
            self.maxDelayNanoseconds = maxDelayNanoseconds
        }
    }

    /// What happened.
    public enum Event: Sendable, Hashable {
        /// `bytes` were appended to the journal (not yet synced) at monotonic time `now`.
        case appended(bytes: Int, now: Int64)
        /// The timer armed by a previous `.armTimer` fired at `now` (possibly late, early or stale).
        case timerFired(now: Int64)
        /// The caller finished a sync covering every append so far.
        case synced
    }

    /// What the caller must do.
    public enum Action: Sendable, Hashable {
        case none
        /// Sync the journal now, then send `.synced`.
        case syncNow
        /// Arm (or re-arm) the one group-commit timer for `deadline`; send `.timerFired` when it fires.
        case armTimer(deadline: Int64)
    }

    private enum State: Sendable, Hashable {
        case clean
        case pending(bytes: Int, deadline: Int64)
    }

    public let configuration: Configuration
    private var state: State = .clean

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// Unsynced bytes the policy knows of.
    public var pendingBytes: Int {
        if case .pending(let bytes, _) = state { return bytes }
        return 0
    }

    /// Feeds one event; returns what to do.
    public mutating func on(_ event: Event) -> Action {
        switch (state, event) {
        case (.clean, .appended(let bytes, let now)):
            let deadline = now &+ configuration.maxDelayNanoseconds
            state = .pending(bytes: bytes, deadline: deadline)
            if bytes >= configuration.maxPendingBytes || configuration.maxDelayNanoseconds == 0 { return .syncNow }
            return .armTimer(deadline: deadline)
        case (.pending(let pending, let deadline), .appended(let bytes, let now)):
            let total = pending + bytes
            state = .pending(bytes: total, deadline: deadline)
            // The timer is already armed for `deadline`; a loop that ran late may see it passed here.
            return total >= configuration.maxPendingBytes || now >= deadline ? .syncNow : .none
        case (.pending(_, let deadline), .timerFired(let now)):
            return now >= deadline ? .syncNow : .armTimer(deadline: deadline)
        case (.clean, .timerFired):
            // A timer from a batch that a byte-threshold sync already committed.
            return .none
        case (_, .synced):
            state = .clean
            return .none
        }
    }
}
