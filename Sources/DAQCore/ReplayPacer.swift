// Maps a log's frame timestamps onto monotonic-clock deadlines for a replay speed. Pure: the
// caller owns the clock and passes "now" in; the pacer only does the arithmetic.

/// How fast a recorded log is played back.
public enum ReplaySpeed: Sendable, Hashable, CustomStringConvertible {
    /// The log's own inter-frame timing.
    case original
    /// N times faster than recorded (N > 0; 0.5 is half speed).
    case factor(Double)
    /// No waiting at all.
    case asFastAsPossible

    /// Parses `max`, `original`, `1`, `2.5`, `x4` (the `--speed` option's forms).
    public init?(argument: String) {
        let text = argument.lowercased()
        if text == "max" || text == "fast" { self = .asFastAsPossible; return }
        if text == "original" || text == "real" { self = .original; return }
        let number = text.hasPrefix("x") ? String(text.dropFirst()) : text
        guard let value = Double(number), value > 0, value.isFinite else { return nil }
        self = value == 1 ? .original : .factor(value)
    }

    public var description: String {
        switch self {
        case .original: return "original timing"
        case .factor(let n): return "×\(n)"
        case .asFastAsPossible: return "as fast as possible"
        }
    }
}

/// Turns frame timestamps into deadlines on the caller's monotonic clock.
/// The first frame is due at once; each later frame is due at its offset from the first frame,
/// divided by the speed factor. Deadlines never go backwards, even when the log's timestamps do.
public struct ReplayPacer: Sendable {
    public let speed: ReplaySpeed
    private var origin: (log: Int64, clock: Int64)?
    private var lastDeadline: Int64 = .min

    public init(speed: ReplaySpeed) { self.speed = speed }

    /// The monotonic time (ns) at which the frame stamped `logTime` is due; nil = due now.
    /// `now` is the caller's monotonic clock reading, used to anchor the first frame.
    public mutating func deadline(for logTime: Timestamp, now: Int64) -> Int64? {
        let divisor: Double
        switch speed {
        case .asFastAsPossible: return nil
        case .original: divisor = 1
        case .factor(let n): divisor = n
        }
        guard let origin else {
            self.origin = (logTime.nanoseconds, now)
            lastDeadline = now
            return now
        }
        let offset = logTime.nanoseconds &- origin.log
        // A tiny factor or a gap of decades leaves Int64 (it trapped): such a frame is due "never".
        let quotient = (Double(offset) / divisor).rounded()
        let scaled = divisor == 1 ? offset : (quotient < 9.2e18 ? Int64(max(quotient, -9.2e18)) : Int64.max)
        let (due, overflow) = origin.clock.addingReportingOverflow(max(0, scaled))
        let deadline = max(lastDeadline, overflow ? .max : due)
        lastDeadline = deadline
        return deadline
    }
}
