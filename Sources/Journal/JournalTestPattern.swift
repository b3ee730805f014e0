// Deterministic payloads for crash tests and benchmarks: the bytes of seq N under a seed can be
// re-derived by a checker that never saw the writer.

/// Pseudo-random payloads that are a pure function of (seed, sequence number).
public enum JournalTestPattern {
    /// The payload for `sequence`: length in `minLength...maxLength`, bytes from a SplitMix64 stream.
    public static func payload(sequence: UInt64, seed: UInt64, minLength: Int, maxLength: Int) -> [UInt8] {
        precondition(minLength >= 0 && maxLength >= minLength, "bad payload length range")
        var state = seed ^ (sequence &* 0x9E37_79B9_7F4A_7C15)
        let span = UInt64(maxLength - minLength + 1)
        let length = minLength + Int(splitMix(&state) % span)
        var out = [UInt8]()
        out.reserveCapacity(length + 8)
        while out.count < length {
            var word = splitMix(&state)
            for _ in 0..<8 where out.count < length {
                out.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return out
    }

    private static func splitMix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
