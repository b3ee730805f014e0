// Whether a backlog batch is worth compressing, and how hard, on the link the device has now.
// Compression costs the device CPU time per raw byte and saves link time per byte it removes.
// Encoding the next batch overlaps sending the previous one, so a backlog drains at the slower of
// the two: over 4G (a few MB/s) the link is always slower and the strongest coding drains fastest
// and cheapest; on a LAN or a local broker the link outruns any compressor, and raw batches drain
// fastest — for the device and for a collector that would otherwise decompress them. The governor
// measures both sides and picks the coding with the shortest time per raw byte.

/// Picks a body coding for backlog batches from measurements (pure: the caller reports them).
///
/// - The encoder: for each coding in use, its CPU time per raw byte and its wire/raw ratio, as
///   moving averages of the batches it coded (priors until then).
/// - The link: its rate, from the broker's acknowledgements over periods in which the link mostly
///   had work queued (at least a quarter of a window of parts in flight: it set the pace); in periods where
///   the device was busy instead, the device set the pace and the link is only known to be faster.
public struct CompressionGovernor: Sendable {
    /// One way to code a batch body. `codings` lists them from weakest to strongest, `raw` first
    /// (no CPU, ratio 1).
    public struct Coding: Sendable, Equatable {
        public var name: String
        /// Priors until measured: CPU seconds per raw byte and wire bytes per raw byte.
        public var secondsPerRawByte: Double
        public var ratio: Double
        public init(name: String, secondsPerRawByte: Double, ratio: Double) {
            self.name = name
            self.secondsPerRawByte = secondsPerRawByte
            self.ratio = ratio
        }
    }

    public private(set) var codings: [Coding]
    /// The priors, which unused codings' figures drift back to (`linkPeriod`).
    private let priors: [Coding]
    /// Index into `codings` of the coding for the next backlog batch.
    public private(set) var choice: Int
    /// Link rate in wire bytes per second; nil until measured or bounded.
    public private(set) var linkBytesPerSecond: Double?
    /// The estimate is a probe's assumption (the device set the pace), not a measurement: the
    /// next measurement replaces it instead of being averaged with it.
    private var linkAssumed = false

    /// Weight of a new measurement in the moving averages.
    static let weight = 0.3
    /// Per link period, how far an unused coding's figures move back toward its priors.
    static let forgetting = 0.05
    /// A period saturated at least this share of the time was paced by the link; otherwise one in
    /// which the device was busy at least `deviceBoundShare` of it, by the device.
    static let linkBoundShare = 0.5
    static let deviceBoundShare = 0.5
    /// When the device sets the pace, the link is assumed this much faster than its input rate.
    static let probeMargin = 2.0
    /// A busy period says the device set the pace only if the link acknowledged what was published
    /// in it, within this share of it: the link kept up, and it was not catching up on parts published
    /// before (what was in flight neither grew nor shrank). A local broker's device-bound periods
    /// acknowledge 1.00–1.01 of what they publish. Behind a shaper's burst allowance a slow link
    /// acknowledged 0.52–0.59 of a slow device's output, and 1.8× after an idle spell refilled the
    /// burst (a debug build on a starved CPU over a 100 KB/s link with a 16 KB burst): taken as
    /// device-bound, both made raw look fastest, and raw parts followed.
    static let keptUpTolerance = 0.1
    /// Codings that drain within this factor of the fastest count as equally fast.
    static let tolerance = 1.2

    /// `codings[0]` is raw; `initial` is used until the link is known (a compressing one: a device
    /// that starts on a slow link must not spend its first minutes sending raw).
    public init(codings: [Coding], initial: Int) {
        precondition(codings.count >= 2 && codings[0].secondsPerRawByte == 0 && codings[0].ratio == 1,
                     "codings[0] must be raw")
        self.codings = codings
        priors = codings
        choice = initial
    }

    /// A batch of `rawBytes` was coded with `coding` into `wireBytes` in `nanoseconds` of CPU.
    public mutating func encoded(coding: Int, rawBytes: Int, wireBytes: Int, nanoseconds: Int64) {
        guard coding > 0, rawBytes > 0 else { return }
        let w = Self.weight
        codings[coding].secondsPerRawByte += w * (Double(nanoseconds) / 1e9 / Double(rawBytes) - codings[coding].secondsPerRawByte)
        codings[coding].ratio += w * (Double(wireBytes) / Double(rawBytes) - codings[coding].ratio)
        decide()
    }

    /// Over the last `nanoseconds`, the broker acknowledged `wireBytes` of backlog parts; for
    /// `saturatedNanoseconds` of that time at least a quarter of a window of parts was in flight (the
    /// link had work queued), and the device spent `busyNanoseconds` coding and publishing.
    /// Saturated for most of the period means the link set the pace: its rate is measured.
    /// Otherwise, busy most of the period while the link acknowledged what was published in it
    /// (`publishedWireBytes`, within `keptUpTolerance`) means the device did: the link took
    /// everything it was given, so it is at least that fast. (Busy filling an empty window on a
    /// slow link, the acknowledgements lag far behind: that says nothing yet. And until a window's worth has been
    /// acknowledged on the connection — `warm` — buffers along the way may have swallowed what
    /// looked delivered.) The link is then assumed fast enough that the current
    /// coding's input rate would fit on it raw, with room to spare, so a faster coding is tried at
    /// once; its own periods measure the link (or show that the device still sets the pace).
    /// Neither (the backlog's tail, nothing left to send) tells nothing about the link.
    /// A period paced by the link before the connection is `warm` only bounds it, like a sounding:
    /// acknowledgements lag the first sends by what the path holds. To a local broker a sounding
    /// bounded the link at 198 MB/s (raw), the first period then acknowledged 1.15 MB of the 3.77 MB
    /// sent in 10.3 ms, 111 MB/s, and taken as a measurement it turned 24 parts to zstd-1 while the
    /// next periods carried 165–485 MB/s.
    public mutating func linkPeriod(wireBytes: Int, nanoseconds: Int64, saturatedNanoseconds: Int64, busyNanoseconds: Int64,
                                    publishedWireBytes: Int, warm: Bool = true) {
        guard wireBytes > 0, nanoseconds > 0 else { return }
        // Figures of codings not in use are from another time (a busier CPU, other data): let them
        // drift back to the priors, so a coding once measured slow is tried again later.
        for index in codings.indices where index != choice {
            codings[index].secondsPerRawByte += Self.forgetting * (priors[index].secondsPerRawByte - codings[index].secondsPerRawByte)
            codings[index].ratio += Self.forgetting * (priors[index].ratio - codings[index].ratio)
        }
        let rate = Double(wireBytes) / (Double(nanoseconds) / 1e9)
        if Double(saturatedNanoseconds) >= Self.linkBoundShare * Double(nanoseconds) {
            if !warm, linkAssumed {
                // The path is still filling: what it holds is not acknowledged yet, so the period
                // bounds the link from below like a sounding, and lowers no bound.
                linkBytesPerSecond = max(linkBytesPerSecond ?? 0, rate)
            } else {
                linkBytesPerSecond = linkAssumed ? rate : linkBytesPerSecond.map { $0 + Self.weight * (rate - $0) } ?? rate
                linkAssumed = false
            }
        } else if warm, Double(busyNanoseconds) >= Self.deviceBoundShare * Double(nanoseconds),
                  abs(Double(wireBytes - publishedWireBytes)) <= Self.keptUpTolerance * Double(publishedWireBytes) {
            let input = rate / codings[choice].ratio
            if Self.probeMargin * input > linkBytesPerSecond ?? 0 {
                linkBytesPerSecond = Self.probeMargin * input
                linkAssumed = true
            }
        }
        decide()
    }

    /// Wire bytes a link sounding sends at least (`sounded`): one compressed full part. A shaper's
    /// burst allowance (the test proxy's token bucket holds 16 KB) lets a sounding through faster
    /// than the link runs; twice the burst at most doubles the estimate, while a coding choice
    /// turns on factors of ten (a few MB/s over 4G, hundreds to a local broker). Over a real
    /// cellular link the round trip alone (tens of ms) keeps the estimate low.
    public static let soundingBytes = 32 << 10

    /// A sounding bound at least this fast (wire bytes per second) rules out a cellular uplink:
    /// LTE uplinks carry a few MB/s and 5G ones about 25 at their peak, so the link is a LAN or a
    /// broker on the same machine.
    public static let fastSoundingBound = 50e6
    /// Over such a link, a sounding's fixed part (a round trip, and the broker's handling of a new
    /// session's first message) outweighs its transfer, and the bound falls far short of the
    /// link: to a local broker here, 51.7 KB soundings bounded it at 80–190 MB/s while the
    /// drain's link periods then carried 300–700 MB/s. A fast bound is taken as this many times
    /// itself.
    public static let fastSoundingMargin = 2.0

    /// A new connection's first backlog part, `wireBytes` of it (at least `soundingBytes`), was
    /// published with nothing else in flight, and PUBACKed `nanoseconds` after its publish began.
    /// No buffer along the way makes a PUBACK come sooner than the broker has the bytes, so the
    /// link carried them at least that fast: until the link is measured, that lower bound stands
    /// in for its rate (as an assumption the first measurement replaces). Over a cellular uplink
    /// it is a few MB/s at most (a round trip is in it), and the next parts get the strongest
    /// coding at once instead of the initial one until the first period paced by the link. A
    /// bound of `fastSoundingBound` or more stands in as `fastSoundingMargin` times itself: to a
    /// local broker raw at once when that outruns the fast coding, instead of a window of
    /// zstd-1 parts before a device-bound period shows the link is faster. Wrong on a LAN just
    /// slower than the fast coding, it costs a link period or two: the first one paced by the
    /// link measures it and the fast coding returns.
    public mutating func sounded(wireBytes: Int, nanoseconds: Int64) {
        guard wireBytes > 0, nanoseconds > 0, linkBytesPerSecond == nil || linkAssumed else { return }
        let bound = Double(wireBytes) / (Double(nanoseconds) / 1e9)
        let assumed = bound >= Self.fastSoundingBound ? bound * Self.fastSoundingMargin : bound
        linkBytesPerSecond = max(linkBytesPerSecond ?? 0, assumed)
        linkAssumed = true
        soundings += 1
        decide()
    }

    /// Soundings a connection makes at most (`wantsSounding`).
    public static let maxSoundings = 3
    /// A bound at least this fast (wire bytes per second) is sounded again while it leaves the
    /// coding compressed. A cellular sounding, a round trip of tens of ms in it, stays far below
    /// (51.7 KB in 18 ms is 2.9 MB/s), and its first bound is final: each sounding holds the uplink
    /// for a round trip.
    public static let resoundingFloor = 10e6
    /// Soundings taken on this connection.
    private var soundings = 0

    /// Whether the next backlog part should sound the link again: the bound leaves the coding
    /// compressed, yet rules out a cellular uplink, and fewer than `maxSoundings` were made. A
    /// sounding can come out slower than the link, never faster (no PUBACK comes before the broker
    /// has the bytes), and the best of a few is kept (`sounded` keeps the fastest bound). A process
    /// preempted while its sounding is in flight is the slow case: to a local broker, two soundings
    /// in six came back after 1.72–1.82 ms instead of 0.34–0.50 ms, a bound of 28–30 MB/s instead
    /// of 103–154, and 26 parts then went zstd-1 until a link period showed raw faster (device CPU
    /// 0.092–0.120 s per 50 MB drain against 0.056–0.075 s).
    public var wantsSounding: Bool {
        guard linkAssumed, let link = linkBytesPerSecond else { return false }
        return soundings < Self.maxSoundings && choice != 0 && link >= Self.resoundingFloor
    }

    /// A new connection may run over another link (another cell, Wi-Fi): forget the link's rate.
    public mutating func linkChanged(initial: Int) {
        linkBytesPerSecond = nil
        linkAssumed = false
        soundings = 0
        choice = initial
    }

    /// Seconds per raw byte of draining with `coding` over a link of `link` bytes per second:
    /// the slower of coding and sending (they overlap).
    public static func drainTime(_ coding: Coding, link: Double) -> Double {
        max(coding.secondsPerRawByte, coding.ratio / link)
    }

    /// The strongest coding among those that drain within `tolerance` of the fastest: when the
    /// link is the bottleneck, every compressing coding drains at link speed and the one that
    /// sends fewest bytes wins (they cross a metered link); when the device is, the fastest one
    /// wins. (Strength is the order of `codings`, not the measured ratios: those come from
    /// different parts of the stream and would make a near tie flap.)
    private mutating func decide() {
        guard let link = linkBytesPerSecond else { return }
        let times = codings.map { Self.drainTime($0, link: link) }
        let fastest = times.min()!
        choice = codings.indices.last { times[$0] <= fastest * Self.tolerance }!
    }
}
