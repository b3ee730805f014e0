// What the device says while a backlog drains: its size at the connect, how far the collector's
// acks have come, at what rate, and when it is done. Pure: the caller gives the clock's readings.

/// The progress of one backlog's drain, as lines for the operator. A backlog is what the journal
/// held beyond the acknowledged cursor when the link came up (beyond what the broker took for the
/// collector on earlier connections, when it holds more); entries appended later (live data) are
/// not part of it.
public struct BacklogProgress: Sendable, Equatable {
    /// The backlog's entries.
    public let first: UInt64
    public let last: UInt64
    /// Its approximate size in journal bytes (entries × the journal's mean entry size).
    public let bytes: Double
    public let startedAt: Int64
    /// At most one progress line per interval (ns).
    public let interval: Int64
    public private(set) var acknowledged: UInt64
    private var reportedAt: Int64

    /// Nil when the backlog is smaller than `minimumBytes` (a link that was down for a moment: a
    /// few seconds of the reference workload).
    public init?(acknowledged: UInt64, journalEnd: UInt64, bytesPerEntry: Double, now: Int64,
                 interval: Int64 = 10_000_000_000, minimumBytes: Double = 256_000) {
        guard journalEnd > acknowledged, Double(journalEnd - acknowledged) * bytesPerEntry >= minimumBytes else { return nil }
        first = acknowledged + 1
        last = journalEnd
        bytes = Double(journalEnd - acknowledged) * bytesPerEntry
        startedAt = now
        self.interval = interval
        self.acknowledged = acknowledged
        reportedAt = now
    }

    public var entries: UInt64 { last - first + 1 }

    /// The line that starts the drain.
    public var startLine: String {
        "backlog: \(entries) entries (≈ \(megabytes(bytes)) MB), seq \(first)…\(last), draining"
    }

    /// The collector acknowledged up to `upTo` at `now`: a progress line when one is due, the
    /// closing line when the backlog is drained (the caller then drops this value), else nil.
    public mutating func acknowledged(upTo: UInt64, now: Int64) -> (line: String, drained: Bool)? {
        guard upTo > acknowledged else { return nil }
        acknowledged = min(upTo, last)
        let seconds = Double(max(now - startedAt, 1)) / 1e9
        let done = Double(acknowledged - first + 1)
        let rate = bytes * done / Double(entries) / seconds
        if acknowledged == last {
            return ("backlog: \(entries) entries (≈ \(megabytes(bytes)) MB) drained in \(decimal(seconds, 1)) s "
                    + "(≈ \(megabytes(rate)) MB/s)", true)
        }
        guard now - reportedAt >= interval else { return nil }
        reportedAt = now
        let left = seconds * (Double(entries) - done) / done
        return ("backlog: \(acknowledged - first + 1) of \(entries) entries acknowledged (\(Int(done * 100 / Double(entries))) %), "
                + "≈ \(megabytes(rate)) MB/s, about \(Int(left.rounded(.up))) s left", false)
    }
}

private func megabytes(_ bytes: Double) -> String { decimal(bytes / 1e6, bytes >= 1e8 ? 0 : 1) }

private func decimal(_ value: Double, _ places: Int) -> String {
    guard places > 0 else { return String(Int(value.rounded())) }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
