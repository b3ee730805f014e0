// The monotonic clock, absolute sleeps and a SIGINT/SIGTERM stop flag for single-threaded bus
// loops (daqctl listen/replay today). They move to the runtime module when the cooperative loop
// of the next stage lands; they live here because the bus loops are their only users so far.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the clock that bus deadlines and replay pacing use.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary start (boot); never jumps.
    public static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Sleeps until the monotonic clock reads `deadline` (an absolute clock_nanosleep, so
    /// time spent before the call does not add up). Returns false when a signal cut it short.
    @discardableResult
    public static func sleep(until deadline: Int64) -> Bool {
        var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == 0
    }
}

/// Set by SIGINT or SIGTERM once `StopSignal.install()` has run; polled by loops.
public enum StopSignal {
    /// Installs handlers for SIGINT and SIGTERM that only raise the flag (no SA_RESTART, so a
    /// blocking poll or sleep returns early with EINTR and the loop sees the flag).
    public static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in stopRequested.store(true, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
    }

    /// Whether a stop was requested.
    public static var isRaised: Bool { stopRequested.load(ordering: .relaxed) }
}

// Written from the signal handler, read by the loop; an atomic is async-signal-safe here.
private let stopRequested = Atomic<Bool>(false)
