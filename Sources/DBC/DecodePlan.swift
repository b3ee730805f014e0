// Each message compiled once into flat decode steps: byte window, shifts, mask, sign and scaling,
// plus the multiplexer each signal depends on. Decoding a frame then only reads these tables.
import DAQCore

/// How to pull one signal out of a payload: read 8 bytes at `baseByte` (little- or big-endian),
/// shift, take `extraBits` more from the byte after the window when the field straddles it, mask,
/// then sign-extend or reinterpret and scale.
struct SignalStep: Sendable {
    enum Kind: UInt8, Sendable { case unsigned, signed, float32, float64 }

    var baseByte: Int
    var shift: UInt64
    var length: UInt64
    var extraBits: UInt64
    var mask: UInt64
    var requiredBytes: Int
    var isBigEndian: Bool
    var kind: Kind
    var factor: Double
    var offset: Double
    /// Step index (absolute, in `DecodePlan.steps`) of the multiplexer selecting this signal; -1 if none.
    var multiplexer: Int
    /// This signal's selecting ranges in `DecodePlan.ranges` (when `multiplexer >= 0`).
    var selectorStart: Int
    var selectorCount: Int
    /// For a multiplexer: the union of its dependants' ranges (a value outside them selects nothing).
    var selectsStart: Int
    var selectsCount: Int

    init(_ signal: DBCSignal) {
        let stream = signal.streamStart
        let base = min(stream / 8, 56)
        baseByte = base
        shift = UInt64(stream - base * 8)
        length = UInt64(signal.length)
        extraBits = UInt64(max(0, Int(shift) + signal.length - 64))
        mask = signal.length == 64 ? ~0 : (1 << UInt64(signal.length)) - 1
        requiredBytes = signal.requiredBytes
        isBigEndian = signal.byteOrder == .bigEndian
        switch signal.valueType {
        case .integer: kind = signal.isSigned ? .signed : .unsigned
        case .float32: kind = .float32
        case .float64: kind = .float64
        }
        factor = signal.factor
        offset = signal.offset
        multiplexer = -1
        selectorStart = 0
        selectorCount = 0
        selectsStart = 0
        selectsCount = 0
    }

    /// The raw field: zero-extended, or sign-extended for signed integers.
    @inline(__always)
    func raw(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let window = bytes.loadUnaligned(fromByteOffset: baseByte, as: UInt64.self)
        var value: UInt64
        if isBigEndian {
            value = (UInt64(bigEndian: window) &<< shift) &>> (64 &- length)
            if extraBits > 0 { value |= UInt64(bytes[baseByte &+ 8]) &>> (8 &- extraBits) }
        } else {
            value = UInt64(littleEndian: window) &>> shift
            if extraBits > 0 { value |= UInt64(bytes[baseByte &+ 8]) &<< (64 &- shift) }
            value &= mask
        }
        if kind == .signed {
            let unused = 64 &- length
            value = UInt64(bitPattern: Int64(bitPattern: value &<< unused) &>> unused)
        }
        return value
    }

    /// raw × factor + offset, with the raw bits read as the signal's value type.
    @inline(__always)
    func physical(_ raw: UInt64) -> Double {
        let value: Double
        switch kind {
        case .unsigned: value = Double(raw)
        case .signed: value = Double(Int64(bitPattern: raw))
        case .float32: value = Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw)))
        case .float64: value = Double(bitPattern: raw)
        }
        return value * factor + offset
    }
}

/// Where one message's steps live in the flat tables.
struct MessageSteps: Sendable {
    var firstStep: Int
    var count: Int
    /// First entry in `DecodePlan.order`; multiplexed messages decode in multiplexer-first order.
    var firstOrder: Int
    var isMultiplexed: Bool
}

/// The decode steps of every message of a database, in flat arrays (no per-message allocation).
struct DecodePlan: Sendable {
    var steps: [SignalStep] = []
    var messages: [MessageSteps] = []
    /// Multiplexed messages: absolute step indices, multiplexers before the signals they select.
    var order: [Int] = []
    var rangeLows: [Int64] = []
    var rangeHighs: [Int64] = []

    init(_ database: DBCDatabase) {
        for message in database.messages {
            let first = steps.count
            let names = Dictionary(message.signals.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
            var messageSteps = message.signals.map(SignalStep.init)
            var depth = [Int](repeating: 0, count: message.signals.count)
            for (i, signal) in message.signals.enumerated() {
                guard let selector = signal.multiplexedBy, let mux = names[selector.multiplexer] else { continue }
                messageSteps[i].multiplexer = first + mux
                messageSteps[i].selectorStart = rangeLows.count
                messageSteps[i].selectorCount = selector.values.count
                appendRanges(selector.values)
                var current = i
                while let next = message.signals[current].multiplexedBy.flatMap({ names[$0.multiplexer] }),
                      depth[i] <= message.signals.count {
                    depth[i] += 1
                    current = next
                }
            }
            for (i, signal) in message.signals.enumerated() where signal.isMultiplexer {
                let dependants = message.signals.filter { $0.multiplexedBy?.multiplexer == signal.name }
                messageSteps[i].selectsStart = rangeLows.count
                messageSteps[i].selectsCount = dependants.reduce(0) { $0 + $1.multiplexedBy!.values.count }
                for dependant in dependants { appendRanges(dependant.multiplexedBy!.values) }
            }
            let isMultiplexed = message.isMultiplexed
            messages.append(MessageSteps(firstStep: first, count: messageSteps.count, firstOrder: order.count,
                                         isMultiplexed: isMultiplexed))
            if isMultiplexed {
                let sorted = message.signals.indices.sorted { (depth[$0], $0) < (depth[$1], $1) }
                order.append(contentsOf: sorted.map { first + $0 })
            }
            steps.append(contentsOf: messageSteps)
        }
    }

    private mutating func appendRanges(_ ranges: [ClosedRange<Int64>]) {
        for range in ranges {
            rangeLows.append(range.lowerBound)
            rangeHighs.append(range.upperBound)
        }
    }
}
