// One simulated signal: its range, its waveform and the state the waveform needs (the random
// walk's position, the counter), producing the raw bits to encode into each frame.
import DAQCore
import DBC

/// The value model of one signal: range + waveform + state.
public struct SignalModel: Sendable {
    /// The DBC definition.
    public let signal: DBCSignal
    /// Where the values stay.
    public let range: SignalRange
    /// How the values move.
    public let waveform: SignalWaveform
    private var random: SimulationRandom
    private var walk: Double
    private var count: UInt64 = 0

    /// A model for `signal`; `random` is this signal's own stream.
    public init(_ signal: DBCSignal, random: SimulationRandom) {
        self.signal = signal
        range = SignalRange(signal)
        var random = random
        let range = self.range
        let states = signal.valueTable.keys.sorted().filter {
            Double($0) >= range.rawLow && Double($0) <= range.rawHigh
        }
        waveform = SignalWaveform.choose(for: signal.name, isInteger: signal.valueType == .integer,
                                         length: signal.length, states: states, random: &random)
        walk = random.unit()
        self.random = random
    }

    /// The raw bits for the next frame at `seconds` since the simulation started.
    public mutating func nextRaw(at seconds: Double) -> UInt64 {
        switch waveform {
        case .counter:
            // Counters live in raw space: wrap over the allowed raw values (at most 2^32 of them).
            let span = min(range.rawHigh - range.rawLow, 4_294_967_295)
            let raw = range.rawLow + Double(count % (UInt64(span) + 1))
            count &+= 1
            return bits(ofRaw: raw)
        case .states(let values, let dwell):
            // `values` were filtered to the range when the waveform was chosen.
            let slot = Int((seconds / dwell).rounded(.down)) % values.count
            return bits(ofRaw: Double(values[slot]))
        case .ramp(let period, let phase):
            let turns = seconds / period + phase
            return bits(atFraction: turns - turns.rounded(.down))
        case .sine(let period, let phase):
            return bits(atFraction: 0.5 + 0.45 * sineOfTurns(seconds / period + phase))
        case .noise(let step):
            walk += random.uniform(-step...step)
            // Reflect at the edges so the walk stays bounded without sticking to them.
            if walk < 0 { walk = -walk }
            if walk > 1 { walk = 2 - walk }
            walk = min(1, max(0, walk))
            return bits(atFraction: walk)
        }
    }

    /// The raw bits of the physical value at `fraction` (0…1) of the physical range.
    private func bits(atFraction fraction: Double) -> UInt64 {
        let physical = range.physicalLow + fraction * (range.physicalHigh - range.physicalLow)
        let factor = signal.factor == 0 || !signal.factor.isFinite ? 1 : signal.factor
        // raw = (phys − offset) / factor, then kept inside the raw interval the range allows.
        let raw = (physical - signal.offset) / factor
        switch signal.valueType {
        case .integer:
            let rounded = raw.isFinite ? raw.rounded() : range.rawLow
            return bits(ofRaw: min(range.rawHigh, max(range.rawLow, rounded)))
        case .float32:
            var value = Float(min(range.rawHigh, max(range.rawLow, raw)))
            // Float rounding can land a hair outside [min, max]; step back inside.
            for _ in 0..<8 where !range.contains(physical: signal.physical(raw: Double(value))) {
                value = signal.physical(raw: Double(value)) > range.physicalHigh
                    ? (factor > 0 ? value.nextDown : value.nextUp) : (factor > 0 ? value.nextUp : value.nextDown)
            }
            return UInt64(value.bitPattern)
        case .float64:
            var value = min(range.rawHigh, max(range.rawLow, raw))
            for _ in 0..<8 where !range.contains(physical: signal.physical(raw: value)) {
                value = signal.physical(raw: value) > range.physicalHigh
                    ? (factor > 0 ? value.nextDown : value.nextUp) : (factor > 0 ? value.nextUp : value.nextDown)
            }
            return value.bitPattern
        }
    }

    /// Two's complement (signed) or plain (unsigned) bits of an integral raw value in range.
    private func bits(ofRaw raw: Double) -> UInt64 {
        signal.isSigned ? UInt64(bitPattern: Int64(raw)) : UInt64(raw)
    }
}
