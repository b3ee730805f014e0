// Seconds (a command line's, a file's) as nanoseconds without a trap: `Int64(seconds * 1e9)`
// traps for NaN, ±infinity and anything past ±292 years (`--duration 1e10`, `--duration inf`).

/// Nanoseconds for a wait or a deadline: 0 for NaN and values ≤ 0, and at most `Int64.max / 4`
/// (73 years, which no run reaches), so that it can be added to a clock reading.
public func waitNanoseconds(seconds: Double) -> Int64 {
    guard seconds > 0 else { return 0 }
    let limit = Int64.max / 4
    let nanoseconds = seconds * 1e9
    return nanoseconds >= Double(limit) ? limit : Int64(nanoseconds.rounded())
}

/// `base` plus `seconds`, in nanoseconds; nil when the sum leaves Int64 or `seconds` is not finite.
public func offsetNanoseconds(_ base: Int64, seconds: Double) -> Int64? {
    let nanoseconds = (seconds * 1e9).rounded()
    guard nanoseconds.isFinite, abs(nanoseconds) < 9.2e18 else { return nil }
    let (sum, overflow) = base.addingReportingOverflow(Int64(nanoseconds))
    return overflow ? nil : sum
}
