// One simulated message: when it is due next, the value models of its signals, and how its
// multiplexers cycle, turned into one payload per frame.
import DAQCore
import DBC

/// How messages without a `GenMsgCycleTime` are timed.
public enum UncycledTiming: Sendable, Hashable {
    /// Sent every `microseconds`, like a cyclic message.
    case periodic(microseconds: Int64)
    /// Event-like: intervals drawn uniformly from 0.5…1.5 × `meanMicroseconds`.
    case jittered(meanMicroseconds: Int64)
}

/// The simulated state of one DBC message.
struct MessageModel: Sendable {
    let message: DBCMessage
    let interface: String
    /// Interval between frames (µs); for jittered messages the mean.
    let interval: Int64
    let jittered: Bool
    /// When the next frame is due, µs after the simulation start.
    var due: Int64
    var signals: [SignalModel]
    /// Signal indices, multiplexers before the signals they select.
    let order: [Int]
    /// Per signal: index of its multiplexer signal, -1 if none.
    let multiplexerOf: [Int]
    /// Per multiplexer signal: the raw values it cycles through (empty for other signals).
    let cycleValues: [[Int64]]
    var cyclePosition: [Int]
    /// Per signal: the payload bits it occupies (8 × 64 bits covers a 64-byte frame).
    let bitMasks: [[UInt64]]
    /// The payload length sent (the message length, grown to a valid CAN FD length).
    let payloadLength: Int
    var random: SimulationRandom

    init(_ message: DBCMessage, index: Int, interface: String, seed: UInt64, timing: UncycledTiming) {
        self.message = message
        self.interface = interface
        var random = SimulationRandom(seed: seed, stream: UInt64(index) &* 2 &+ 1)
        if let cycle = message.cycleTime, cycle > 0 {
            interval = Int64(cycle) * 1_000
            jittered = false
        } else {
            switch timing {
            case .periodic(let micros): interval = max(1, micros); jittered = false
            case .jittered(let mean): interval = max(1, mean); jittered = true
            }
        }
        // A random phase within the first interval, as independent ECUs' timers would have.
        due = Int64(random.unit() * Double(interval))
        signals = message.signals.enumerated().map { offset, signal in
            SignalModel(signal, random: SimulationRandom(seed: seed, stream: (UInt64(index) << 20) | UInt64(offset + 1) << 1))
        }
        let names = Dictionary(message.signals.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        multiplexerOf = message.signals.map { signal in signal.multiplexedBy.flatMap { names[$0.multiplexer] } ?? -1 }
        order = Self.multiplexerFirstOrder(multiplexerOf)
        var cycles = [[Int64]](repeating: [], count: message.signals.count)
        for (i, signal) in message.signals.enumerated() {
            guard let selector = signal.multiplexedBy, multiplexerOf[i] >= 0 else { continue }
            for range in selector.values {
                // Wide SG_MUL_VAL_ ranges: both ends and the middle are enough to select the signal.
                let picks = range.count <= 16 ? Array(range) : [range.lowerBound, range.lowerBound / 2 + range.upperBound / 2, range.upperBound]
                cycles[multiplexerOf[i]] += picks
            }
        }
        for i in cycles.indices where !cycles[i].isEmpty {
            let signalRange = SignalRange(message.signals[i])
            cycles[i] = Set(cycles[i]).sorted().filter { Double($0) >= signalRange.rawLow && Double($0) <= signalRange.rawHigh }
        }
        cycleValues = cycles
        cyclePosition = [Int](repeating: 0, count: message.signals.count)
        payloadLength = message.isFD || message.length > 8
            ? CANFrame.length(forDLC: CANFrame.dlc(forLength: message.length), fd: true)
            : max(0, min(8, message.length))
        bitMasks = message.signals.map(Self.bitMask)
        self.random = random
    }

    /// The payload of the next frame at `seconds` since the start; advances the signal states.
    /// Signals not selected by their multiplexer are left out, and a signal whose bits overlap a
    /// signal already written (a DBC with overlapping definitions) is left to those bits.
    mutating func nextPayload(at seconds: Double) -> CANPayload {
        var payload = CANPayload(repeatElement(0, count: payloadLength))
        var occupied = [UInt64](repeating: 0, count: 8)
        var selected = [Int64?](repeating: nil, count: signals.count)
        for i in order {
            let mux = multiplexerOf[i]
            if mux >= 0 {
                guard let value = selected[mux], message.signals[i].multiplexedBy!.selects(value) else { continue }
            }
            guard signals[i].signal.requiredBytes <= payloadLength, !overlaps(bitMasks[i], occupied) else { continue }
            let raw: UInt64
            if !cycleValues[i].isEmpty {
                let values = cycleValues[i]
                let value = values[cyclePosition[i] % values.count]
                cyclePosition[i] &+= 1
                raw = UInt64(bitPattern: value)
                selected[i] = value
            } else {
                raw = signals[i].nextRaw(at: seconds)
                selected[i] = signals[i].signal.isSigned ? Self.signExtended(raw, bits: signals[i].signal.length) : Int64(bitPattern: raw)
            }
            signals[i].signal.encode(raw: raw, into: &payload)
            for w in 0..<8 { occupied[w] |= bitMasks[i][w] }
        }
        return payload
    }

    /// Moves `due` to the next frame's time.
    mutating func advance() {
        if jittered {
            due += max(1, Int64(random.uniform(0.5...1.5) * Double(interval)))
        } else {
            due += interval
        }
    }

    /// Signal indices ordered so every multiplexer comes before the signals it selects.
    static func multiplexerFirstOrder(_ multiplexerOf: [Int]) -> [Int] {
        var placed = [Bool](repeating: false, count: multiplexerOf.count)
        var order: [Int] = []
        // Each pass places the signals whose multiplexer is placed; a cycle (a broken DBC) ends it.
        var progress = true
        while order.count < multiplexerOf.count && progress {
            progress = false
            for i in multiplexerOf.indices where !placed[i] && (multiplexerOf[i] < 0 || placed[multiplexerOf[i]]) {
                placed[i] = true
                order.append(i)
                progress = true
            }
        }
        return order
    }

    /// The payload bits `signal` occupies, as encode(raw:into:) writes them.
    static func bitMask(_ signal: DBCSignal) -> [UInt64] {
        var mask = [UInt64](repeating: 0, count: 8)
        for bit in 0..<signal.length {
            let position: Int
            switch signal.byteOrder {
            case .littleEndian: position = signal.startBit + bit
            case .bigEndian:
                let stream = signal.streamStart + bit
                position = (stream / 8) * 8 + 7 - stream % 8
            }
            guard position >= 0 && position < 512 else { continue }
            mask[position / 64] |= 1 << UInt64(position % 64)
        }
        return mask
    }

    private func overlaps(_ a: [UInt64], _ b: [UInt64]) -> Bool {
        for w in 0..<8 where a[w] & b[w] != 0 { return true }
        return false
    }

    private static func signExtended(_ raw: UInt64, bits: Int) -> Int64 {
        guard bits < 64 else { return Int64(bitPattern: raw) }
        let unused = UInt64(64 - bits)
        return Int64(bitPattern: raw << unused) >> Int64(unused)
    }
}
