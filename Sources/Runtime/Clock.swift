// The runtime's only clocks: the real monotonic clock, and a virtual one that tests advance by hand.
#if canImport(Glibc)
import Glibc
#endif

/// A monotonic time source in nanoseconds. Tasks never read it; the event loop does.
public protocol MonotonicClock: AnyObject {
    /// Nanoseconds since an arbitrary fixed point; never goes backwards.
    func now() -> Int64
}

/// CLOCK_MONOTONIC.
public final class SystemClock: MonotonicClock, @unchecked Sendable {
    // Stateless: every call reads the kernel clock, so sharing it across threads is safe.
    public init() {}

    public func now() -> Int64 { Self.read(CLOCK_MONOTONIC) }

    /// CLOCK_MONOTONIC in nanoseconds, without an instance.
    public static func monotonicNow() -> Int64 { SystemClock().now() }

    /// Sleeps until CLOCK_MONOTONIC reads `deadline` (absolute clock_nanosleep: time spent before
    /// the call does not add up). Returns false when a signal cut it short.
    @discardableResult
    public static func sleep(until deadline: Int64) -> Bool {
        var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == 0
    }

    /// CPU time (user + system) this process has used, in ns (CLOCK_PROCESS_CPUTIME_ID).
    public static func processCPU() -> Int64 { read(CLOCK_PROCESS_CPUTIME_ID) }

    /// CPU time (user + system) the calling thread has used, in ns (CLOCK_THREAD_CPUTIME_ID).
    public static func threadCPU() -> Int64 { read(CLOCK_THREAD_CPUTIME_ID) }

    /// `clock` in ns.
    private static func read(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Wall-clock time (CLOCK_REALTIME) in ns since the Unix epoch, for kernel-timestamp comparisons.
    public static func realtime() -> Int64 { read(CLOCK_REALTIME) }
}

/// A clock that only moves when told to: the same tasks run under it deterministically.
public final class VirtualClock: MonotonicClock {
    private var current: Int64

    public init(start: Int64 = 0) { current = start }

    public func now() -> Int64 { current }

    /// Moves time forward to `time` (never backwards).
    public func advance(to time: Int64) { current = max(current, time) }
}
