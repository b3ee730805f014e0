// The collector side of once-and-only-once delivery for one device, as a pure state machine:
// drop what is already committed, commit what continues the stream, hold a bounded window of
// early batches, and ask the device to resend when a gap is seen.

/// Decisions for one device's stream. The committed high-water mark is the last entry of the
/// rebuilt journal itself, so "data + mark" commit atomically by construction.
public struct CollectorStream: Sendable {
    public enum Action: Sendable, Equatable {
        /// Append entries `first...last` of the held/arrived batch `batch` to the rebuilt journal.
        case commit(batch: Int, first: UInt64, last: UInt64)
        /// Publish the end-to-end ack (devices/<id>/ack) for everything up to `upTo`.
        case acknowledge(upTo: UInt64)
        /// Ask the device to resend from `from` (devices/<id>/cmd).
        case requestResend(from: UInt64)
        /// Forget a held batch (committed or superseded).
        case release(batch: Int)
    }

    /// Highest committed sequence number (0 = nothing yet).
    public private(set) var committed: UInt64
    /// Batches held because they arrived ahead of a gap: id → range, and the bytes each holds.
    private var held: [(batch: Int, first: UInt64, last: UInt64, bytes: Int)] = []
    /// Most batches held while waiting for a gap to fill, and most bytes they may hold together
    /// (a device's batches are at most 256 KiB by default; 64 of the largest a batch may state
    /// would be 2.5 GiB).
    public let holdLimit: Int
    public let holdByteLimit: Int
    private var heldBytes = 0
    /// Don't repeat a resend request for the same gap more often than this (ns).
    public let resendInterval: Int64
    private var lastRequest: (from: UInt64, at: Int64)?
    /// Entries received more than once (dropped).
    public private(set) var duplicates: UInt64 = 0
    /// Gaps seen (each led to a resend request), and those the resent entries then filled.
    public private(set) var gaps: UInt64 = 0
    public private(set) var gapsFilled: UInt64 = 0

    public init(committed: UInt64, holdLimit: Int = 64, holdByteLimit: Int = 64 << 20, resendInterval: Int64 = 1_000_000_000) {
        self.committed = committed
        self.holdLimit = holdLimit
        self.holdByteLimit = holdByteLimit
        self.resendInterval = resendInterval
    }

    /// A checked batch `batch` carrying entries `first...last` (`bytes` in memory) arrived at `now`.
    public mutating func receive(batch: Int, first: UInt64, last: UInt64, bytes: Int = 0, now: Int64) -> [Action] {
        precondition(first <= last, "a batch holds at least one entry")
        var actions: [Action] = []
        if last <= committed {
            duplicates += last - first + 1
            // Already committed: the device missed our ack. Repeat it up to this batch's last
            // entry, which the caller compared with the committed ones, not beyond: an ack up to
            // `committed` let the device retire the batches it had in flight after this one,
            // unseen, and a journal restored from a backup numbers new entries like committed ones.
            actions.append(.release(batch: batch))
            actions.append(.acknowledge(upTo: last))
            return actions
        }
        if first <= committed + 1 {
            if first <= committed { duplicates += committed - first + 1 }
            actions.append(.commit(batch: batch, first: committed + 1, last: last))
            actions.append(.release(batch: batch))
            committed = last
            drainHeld(into: &actions)
            actions.append(.acknowledge(upTo: committed))
            return actions
        }
        // A gap: committed+1 ..< first is missing. Hold this batch (bounded) and ask for the gap.
        if held.contains(where: { $0.first == first && $0.last == last }) {
            duplicates += last - first + 1
            actions.append(.release(batch: batch))
        } else if held.count < holdLimit, heldBytes + bytes <= holdByteLimit {
            held.append((batch, first, last, bytes))
            heldBytes += bytes
            held.sort { $0.first < $1.first }
        } else {
            // Window full: drop it; the resend from the gap will bring it again.
            actions.append(.release(batch: batch))
        }
        let from = committed + 1
        if lastRequest?.from != from { gaps += 1 }
        if requestDue(from: from, now: now) { actions.append(.requestResend(from: from)) }
        return actions
    }

    /// The batch that continues the stream was refused (its coding could not be undone against
    /// what is committed): where to ask the device to resend from, at most once per place and
    /// `resendInterval`, as for a gap (the parts already in flight meet the same refusal).
    public mutating func refused(now: Int64) -> UInt64? {
        requestDue(from: committed + 1, now: now) ? committed + 1 : nil
    }

    /// Whether a resend request from `from` is due now (a new place, or the interval passed);
    /// records it when it is.
    private mutating func requestDue(from: UInt64, now: Int64) -> Bool {
        if let last = lastRequest, last.from == from, now - last.at < resendInterval { return false }
        lastRequest = (from, now)
        return true
    }

    private mutating func drainHeld(into actions: inout [Action]) {
        while let next = held.first, next.first <= committed + 1 {
            held.removeFirst()
            heldBytes -= next.bytes
            if next.last > committed {
                actions.append(.commit(batch: next.batch, first: committed + 1, last: next.last))
                committed = next.last
            }
            actions.append(.release(batch: next.batch))
        }
        if let request = lastRequest, request.from <= committed {
            lastRequest = nil
            gapsFilled += 1
        }
    }

    /// A commit the caller was asked to make failed (a held batch whose body did not decode once
    /// its context was there): the stream goes back to what the rebuilt journal really holds,
    /// `committed`, forgets every held batch and asks for the rest again.
    public mutating func commitFailed(committed truth: UInt64, now: Int64) -> [Action] {
        precondition(truth <= committed, "the journal cannot hold more than was committed")
        var actions = held.map { Action.release(batch: $0.batch) }
        held.removeAll()
        heldBytes = 0
        committed = truth
        gaps += 1
        lastRequest = (truth + 1, now)
        actions.append(.requestResend(from: truth + 1))
        return actions
    }

    /// Batches currently held ahead of a gap.
    public var heldCount: Int { held.count }
}
