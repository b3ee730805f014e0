// One thread, one loop: wait in poll(2) on file descriptors and on the next timer deadline, then
// dispatch. Handlers run on the loop's thread only; C callbacks elsewhere must only record events.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore

/// What a handler wants from a file descriptor.
public struct PollInterest: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let read = PollInterest(rawValue: Int16(POLLIN))
    public static let write = PollInterest(rawValue: Int16(POLLOUT))
    /// Reported (never asked for): the peer hung up or the socket has an error. Handlers are also
    /// told `.read`, so their read sees it; this says the descriptor will never recover.
    public static let hangUp = PollInterest(rawValue: Int16(POLLHUP))
}

/// A single-threaded cooperative event loop over poll(2) and timers.
///
/// Timers are one-shot deadlines on the loop's clock (`schedule(at:)`); file descriptors are
/// registered with an interest and a handler. `run()` returns when `stop()` is called or when
/// nothing is left to wait for. With a `VirtualClock`, waiting jumps the clock to the next timer
/// instead of sleeping, so timer-driven tasks run deterministically in tests.
public final class EventLoop {
    public typealias TimerID = Int

    public let clock: MonotonicClock
    private let sleeps: Bool
    private var timers: [(deadline: Int64, id: TimerID, action: () -> Void)] = []
    private var nextTimerID = 0
    private var sources: [Int32: (interest: PollInterest, handler: (PollInterest) -> Void)] = [:]
    private var stopping = false
    /// How late timers fired (ns), for lateness statistics.
    public private(set) var lastTimerLateness: Int64 = 0

    /// A loop on the real monotonic clock.
    public convenience init() { self.init(clock: SystemClock(), sleeps: true) }

    /// A loop on `clock`; `sleeps: false` (virtual time) advances a VirtualClock instead of waiting.
    public init(clock: MonotonicClock, sleeps: Bool) {
        self.clock = clock
        self.sleeps = sleeps
    }

    /// Arms a one-shot timer; the action runs on the loop at or after `deadline`.
    @discardableResult
    public func schedule(at deadline: Int64, _ action: @escaping () -> Void) -> TimerID {
        nextTimerID += 1
        let entry = (deadline, nextTimerID, action)
        // Keep timers sorted by deadline, then by arming order (deterministic ties).
        let index = timers.firstIndex { $0.deadline > deadline } ?? timers.count
        timers.insert(entry, at: index)
        return nextTimerID
    }

    /// Disarms a timer that has not fired yet.
    public func cancel(_ id: TimerID) {
        timers.removeAll { $0.id == id }
    }

    /// Watches `fd` for `interest`; the handler gets the readiness that occurred.
    public func watch(_ fd: Int32, interest: PollInterest, _ handler: @escaping (PollInterest) -> Void) {
        sources[fd] = (interest, handler)
    }

    /// Changes what `fd` is watched for (e.g. add `.write` while output is pending).
    public func update(_ fd: Int32, interest: PollInterest) {
        sources[fd]?.interest = interest
    }

    public func unwatch(_ fd: Int32) { sources[fd] = nil }

    /// Asks `run()` to return after the current dispatch.
    public func stop() { stopping = true }

    /// Runs until `stop()` or until there are neither timers nor watched descriptors.
    public func run() throws(DAQError) {
        stopping = false
        while !stopping && (!timers.isEmpty || !sources.isEmpty) {
            try runOnce()
        }
    }

    /// One turn: wait for the next timer or readiness, then dispatch what is due.
    public func runOnce() throws(DAQError) {
        let now = clock.now()
        var timeout: Int32 = -1
        if let first = timers.first {
            let wait = first.deadline - now
            timeout = wait <= 0 ? 0 : Int32(min((wait + 999_999) / 1_000_000, Int64(Int32.max)))
        }
        if !sleeps, let virtual = clock as? VirtualClock, sources.isEmpty, let first = timers.first {
            virtual.advance(to: first.deadline)
            timeout = 0
        }
        if !sources.isEmpty || (sleeps && timeout > 0) {
            var fds = sources.map { pollfd(fd: $0.key, events: $0.value.interest.rawValue, revents: 0) }
            fds.sort { $0.fd < $1.fd }
            let ready = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if ready < 0 && errno != EINTR {
                throw DAQError(.system, "poll failed: \(String(cString: strerror(errno)))")
            }
            if ready > 0 {
                for entry in fds where entry.revents != 0 {
                    guard let source = sources[entry.fd] else { continue }
                    var happened = PollInterest(rawValue: entry.revents & (Int16(POLLIN) | Int16(POLLOUT)))
                    // Errors and hang-ups are reported as readable (the handler's read sees them)
                    // and as `.hangUp`.
                    if entry.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { happened.formUnion([.read, .hangUp]) }
                    source.handler(happened)
                }
            }
        }
        fireDueTimers()
    }

    private func fireDueTimers() {
        let now = clock.now()
        while let first = timers.first, first.deadline <= now {
            timers.removeFirst()
            lastTimerLateness = now - first.deadline
            first.action()
            if stopping { return }
        }
    }
}
