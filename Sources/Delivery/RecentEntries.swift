// The last entries of the stream, kept the same way by the device (the parts it published) and
// the collector (the batches it committed): a batch coded against a context (codecs 3 and 4)
// names entries just before it, and both sides must be able to produce them without reading the
// journal back. Codec 4 codes against a window of a few hundred entries, which is where its
// models learn the rows they are primed with.

/// Consecutive runs of framed entries ending at the newest one held.
public struct RecentEntries: Sendable {
    /// One appended run: its first sequence number and its entries' ranges in `body`.
    private struct Run {
        var first: UInt64
        var body: [UInt8]
        var entries: [Range<Int>]
        var next: UInt64 { first + UInt64(entries.count) }
    }

    private var runs: [Run] = []
    /// Older runs are dropped while the newer ones still hold at least this many entries.
    public let keep: Int

    public init(keep: Int) {
        self.keep = keep
    }

    /// The first sequence number after the newest entry held (nil when nothing is held).
    public var next: UInt64? { runs.last?.next }

    /// Entries held: `first..<next`.
    public var first: UInt64? { runs.first?.first }

    /// Adds the entries `first…` of `body` (framed, at `entries`); a run that does not continue
    /// the newest one replaces everything held.
    /// Only the bytes of those entries are kept (a batch that repeats committed entries, or a
    /// body the caller holds more of, is not kept whole), and older runs are also dropped while
    /// more than `maxBytes` are held: a device sending huge entries, or the same ones again with
    /// one new one each time, made the collector keep each batch's whole body, 256 of them,
    /// gigabytes (a review). A context no longer held is read back from the journal.
    public mutating func append(first: UInt64, body: [UInt8], entries: [Range<Int>]) {
        guard let lower = entries.first?.lowerBound, let upper = entries.last?.upperBound else { return }
        if next != first { runs.removeAll() }
        if lower == 0 && upper == body.count {
            runs.append(Run(first: first, body: body, entries: entries))
        } else {
            runs.append(Run(first: first, body: Array(body[lower..<upper]), entries: entries.map { ($0.lowerBound - lower)..<($0.upperBound - lower) }))
        }
        var held = runs.reduce(0) { $0 + $1.entries.count }
        var bytes = runs.reduce(0) { $0 + $1.body.count }
        while runs.count > 1, held - runs[0].entries.count >= keep || bytes > Self.maxBytes {
            held -= runs[0].entries.count
            bytes -= runs[0].body.count
            runs.removeFirst()
        }
    }

    /// Bytes held at most, the newest run included; that run is kept whatever its size.
    public static let maxBytes = 8 << 20

    /// Bytes of the entries held.
    public var heldBytes: Int { runs.reduce(0) { $0 + $1.body.count } }

    /// How many entries the newest run holds.
    public var newestRunCount: Int { runs.last?.entries.count ?? 0 }

    /// The held entries `from…through` as one body and their ranges in it (nil unless all held).
    public func entries(from: UInt64, through: UInt64) -> (body: [UInt8], entries: [Range<Int>])? {
        guard let first, let next, from >= first, from <= through, through < next else { return nil }
        var body: [UInt8] = []
        var entries: [Range<Int>] = []
        for run in runs where run.next > from && run.first <= through {
            let lower = Int(max(from, run.first) - run.first), upper = Int(min(through, run.next - 1) - run.first)
            for range in run.entries[lower...upper] {
                entries.append((body.count)..<(body.count + range.count))
                body += run.body[range]
            }
        }
        return (body, entries)
    }
}

extension RecentEntries {
    /// The context of a batch that starts at `first`: the last `count` entries held before it
    /// (fewer if fewer are held; at most `UplinkBatch.maxContextEntries`), as the coders'
    /// `BatchTransform.Context` and the header's reference. Nil unless the batch continues the
    /// newest entry held.
    public func context(before first: UInt64, count: Int) -> (BatchTransform.Context, UplinkBatch.ContextReference)? {
        guard let held = self.first, next == first, count > 0 else { return nil }
        let from = first - min(UInt64(min(count, Int(UplinkBatch.maxContextEntries))), first - held)
        guard let (body, entries) = entries(from: from, through: first - 1) else { return nil }
        return body.withUnsafeBytes { raw in
            (BatchTransform.Context(body: raw, entries: entries),
             UplinkBatch.ContextReference(first: from, checksum: UplinkBatch.ContextReference.checksum(body: raw, entries: entries)))
        }
    }
}
