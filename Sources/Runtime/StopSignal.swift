// A SIGINT/SIGTERM stop flag for simple blocking loops (daqctl listen/replay). The agent's
// cooperative loop uses SignalWatch (signalfd) instead.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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
