// Kernel frame stamps onto one continuous time base across steps of the system clock.
//
// SocketCAN stamps frames with CLOCK_REALTIME, the only clock a socket offers. A board without a
// real-time clock boots at 1970 (or at its last shutdown) and NTP then steps the clock by years or
// hours, often while daqlink already records. Taken as they come, such stamps made the sampler
// fill every raster period of the step with held values (an hour's step: 720,000 records per
// 5 ms group, in RAM before the first write; from 1970: never finished), or, stepped back, pinned
// every frame to the last time before the step. A measurement keeps the time base it started with
// (the monotonic clock plus the realtime offset at its start); a step is said once, and the next
// measurement starts on the new clock.

/// The measurement's time base: the monotonic clock plus `startOffset` (CLOCK_REALTIME − the
/// monotonic clock at the start). Pure: the caller reads both clocks.
struct ClockBase {
    let startOffset: Int64
    /// How far CLOCK_REALTIME now stands from the base, and where it stood before the last step:
    /// a frame read just after a step may carry a stamp from before it.
    private(set) var shift: Int64 = 0
    private var shiftBefore: Int64 = 0
    /// Steps seen so far: a queue emptied after the last one holds only frames stamped on the
    /// clock after it (`map`'s `afterLastStep`).
    private(set) var steps = 0
    /// Smaller changes of the offset are not steps (NTP slews both clocks alike; this catches
    /// what adds up between reads).
    static let stepThreshold: Int64 = 50_000_000

    init(startOffset: Int64) {
        self.startOffset = startOffset
    }

    /// The offset read now (CLOCK_REALTIME − the monotonic clock); the step, when the system clock
    /// stepped since the last read.
    mutating func observe(offset: Int64) -> Int64? {
        let now = offset - startOffset
        guard abs(now - shift) >= Self.stepThreshold else { return nil }
        defer { (shiftBefore, shift, steps) = (shift, now, steps + 1) }
        return now - shift
    }

    /// A kernel stamp (CLOCK_REALTIME) on the base, given the base's present `now`: of the stamp
    /// read against the clock before and after the last step, the one nearer the present (a frame
    /// waits in the socket for milliseconds, a step is whole seconds to years).
    /// `away`: how old a frame still queued may be (since the last frame read from its socket,
    /// or its last read that found the queue empty). `afterLastStep`: its socket's queue was
    /// emptied since the last step, so the stamp is on the clock after it (of two readings in the
    /// window the nearer one put frames older than half a step that much too late: a +0.5 s step,
    /// then a 1 s hold-up).
    func map(_ stamp: Int64, now: Int64, away: Int64 = 0, afterLastStep: Bool = false) -> Int64 {
        // A frame is stamped before it is read: a stamp may lie at most `away` (10 s at least) in
        // the past and never in the future (a step under the threshold aside). Of the stamp read
        // against the clock before and after the last step, the one in that window, the nearer
        // to the present if both are. After a long hold-up the nearer one could be the wrong one:
        // a step of +30 s in a 60 s stall put a frame 14 s in the future.
        let oldest = now - max(Self.plausibleAge, away + 1_000_000_000), newest = now + Self.stepThreshold
        let candidates = (afterLastStep ? [stamp - shift] : [stamp - shift, stamp - shiftBefore]).filter { $0 >= oldest && $0 <= newest }
        // None: taken across a step this run did not see (frames queued in the socket while
        // daqlink started, the clock stepped meanwhile): the moment it is read stands in for it.
        // Found under load in the vcan guest, where daqlink took seconds to start: an hour of
        // held values again.
        return candidates.min { abs($0 - now) < abs($1 - now) } ?? now
    }

    /// How far a frame's stamp may lie from the moment it is read: a socket holds a few seconds
    /// of a busy bus at most, unless the loop was away longer (SIGSTOP, a stalled system: the
    /// frames of a 12 s hold-up were all put at the moment they were read, the raster records of
    /// the hold-up holding the values from before it).
    static let plausibleAge: Int64 = 10_000_000_000
}
