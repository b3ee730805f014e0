// The simulator's only source of randomness: a seeded SplitMix64 stream. Each message and each
// signal gets its own stream derived from the seed, so adding a message to a DBC does not change
// the values of the others, and the output depends on nothing but the seed.

/// A small, fast, seedable pseudo-random generator (SplitMix64).
public struct SimulationRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A stream for `seed`; `stream` separates independent streams of the same seed.
    public init(seed: UInt64, stream: UInt64 = 0) {
        state = seed ^ (stream &* 0xD6E8_FEB8_6659_FD93)
        // Mix once so nearby seeds do not start with nearby outputs.
        _ = next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Double in [0, 1) from the top 53 bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform Double in `range`.
    public mutating func uniform(_ range: ClosedRange<Double>) -> Double {
        range.lowerBound + unit() * (range.upperBound - range.lowerBound)
    }
}
