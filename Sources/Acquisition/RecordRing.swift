// The bounded RAM ring between the sampler and its consumers (journal writer, uplink). It keeps
// the most recent journal entries by sequence number; a consumer that fell behind the ring reads
// the journal instead, so a full ring evicts but never loses data.

/// A byte-bounded ring of recent journal entries, addressed by sequence number.
public struct RecordRing: Sendable {
    /// Upper bound of the entry bytes held.
    public let capacity: Int
    private var entries: [[UInt8]] = []
    private var head = 0
    private var firstSeq: UInt64 = 0
    /// Bytes currently held.
    public private(set) var byteCount = 0
    /// Entries evicted to make room (consumers then read them from the journal).
    public private(set) var evicted: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "ring capacity must be positive")
        self.capacity = capacity
    }

    /// Sequence numbers currently held, oldest first.
    public var range: ClosedRange<UInt64>? {
        let count = entries.count - head
        return count == 0 ? nil : firstSeq...(firstSeq + UInt64(count) - 1)
    }

    /// Appends entry `seq` (consecutive after the last one). Evicts the oldest entries while the
    /// ring would exceed its capacity; an entry larger than the ring is not kept at all.
    public mutating func append(seq: UInt64, bytes: UnsafeRawBufferPointer) {
        if let last = range?.upperBound {
            precondition(seq == last + 1, "ring entries must be consecutive: \(seq) after \(last)")
        }
        if bytes.count > capacity {
            while head < entries.count { evictOldest() }
            firstSeq = seq + 1
            return
        }
        while byteCount + bytes.count > capacity { evictOldest() }
        if head == entries.count { firstSeq = seq }
        entries.append(Array(bytes))
        byteCount += bytes.count
        if head > 4096 && head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }

    /// Calls `body` with entry `seq`'s bytes; nil when the ring does not hold it (read the journal).
    public func withEntry<R>(_ seq: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard let range, range.contains(seq) else { return nil }
        return try entries[head + Int(seq - firstSeq)].withUnsafeBytes(body)
    }

    private mutating func evictOldest() {
        byteCount -= entries[head].count
        entries[head] = []
        head += 1
        firstSeq += 1
        evicted += 1
    }
}
