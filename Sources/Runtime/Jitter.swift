// Jitter for retry and poll timers: a seeded xorshift64 stream, so devices started at the same
// moment spread their reconnects and polls, and a test with a fixed seed sees fixed delays.

/// Uniform fractions in [0, 1) (steps of 1e-6) from a seeded xorshift64.
public struct Jitter: Sendable {
    private var state: UInt64

    /// A stream for `seed` (any value; 0 is made odd).
    public init(seed: UInt64) { state = seed | 1 }

    /// The next fraction in [0, 1).
    public mutating func next() -> Double {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Double(state % 1_000_000) / 1_000_000
    }
}
