// The shapes simulated signal values follow over time. A waveform yields a position in [0, 1]
// across the signal's range; SignalModel turns it into a physical and then a raw value.

/// How one simulated signal moves.
public enum SignalWaveform: Sendable, Hashable {
    /// A sawtooth from the bottom to the top of the range every `period` seconds.
    case ramp(period: Double, phase: Double)
    /// A sine around the middle of the range spanning 90 % of it.
    case sine(period: Double, phase: Double)
    /// A bounded random walk: each frame moves at most `step` (a fraction of the range).
    case noise(step: Double)
    /// A rolling counter: +1 raw per frame, wrapping at the top of the range.
    case counter
    /// The raw values of the signal's value table, each held for `dwell` seconds in turn.
    case states(values: [Int64], dwell: Double)

    /// Whether a signal name reads like a rolling / alive counter.
    public static func isCounterName(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.contains("counter") || lower.contains("cnt") || lower.contains("alive")
    }

    /// A waveform for a signal, chosen and parameterised by `random`.
    static func choose(for name: String, isInteger: Bool, length: Int, states: [Int64],
                       random: inout SimulationRandom) -> SignalWaveform {
        if isInteger && isCounterName(name) { return .counter }
        if isInteger && !states.isEmpty && states.count <= 64 {
            return .states(values: states, dwell: random.uniform(0.3...2.0))
        }
        switch random.next() % 3 {
        case 0: return .ramp(period: random.uniform(2...20), phase: random.unit())
        case 1: return .sine(period: random.uniform(1...10), phase: random.unit())
        default: return .noise(step: length <= 2 ? 0.5 : random.uniform(0.005...0.03))
        }
    }
}
