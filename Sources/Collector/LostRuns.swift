// What the collector says about entries it commits as `lost`: one line per run, not per batch.

/// Runs of entries committed as `lost`, per device. A refill of thousands of entries the device's
/// retention removed comes in hundreds of batches: its first batch is reported at once, the run
/// then at most once per `interval` as the whole run so far, and whole once more at the end.
struct LostRuns {
    private var runs: [String: (first: UInt64, last: UInt64, reason: String, reported: UInt64, at: Int64)] = [:]
    let interval: Int64

    init(interval: Int64 = 1_000_000_000) {
        self.interval = interval
    }

    /// Entries `first…last` of `device` committed as lost for `reason` at `now`; the lines to print.
    mutating func add(device: String, first: UInt64, last: UInt64, reason: String, now: Int64) -> [String] {
        if var run = runs[device], run.last + 1 == first, run.reason == reason {
            run.last = last
            var lines: [String] = []
            if now - run.at >= interval {
                lines.append("\(device): entries \(run.first)…\(run.last) committed as lost so far: \(reason)")
                (run.reported, run.at) = (last, now)
            }
            runs[device] = run
            return lines
        }
        var lines = rest(of: device)
        lines.append("\(device): entries \(first)…\(last) committed as lost: \(reason)")
        runs[device] = (first, last, reason, last, now)
        return lines
    }

    /// The runs that grew since they were last reported, whole (the collector stops).
    mutating func finish() -> [String] {
        runs.keys.sorted().flatMap { rest(of: $0) }
    }

    private mutating func rest(of device: String) -> [String] {
        guard let run = runs[device], run.last > run.reported else { return [] }
        runs[device]?.reported = run.last
        return ["\(device): entries \(run.first)…\(run.last) committed as lost in all: \(run.reason)"]
    }
}
