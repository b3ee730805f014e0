// Which raw values a signal may take so that its physical value stays inside the DBC's
// [min, max] and its raw value fits the signal's bits, signedness and value type.
import DBC

/// The raw interval a simulated signal is drawn from and the physical interval it maps to.
public struct SignalRange: Sendable, Hashable {
    /// Lowest and highest raw value (integers held as Double; exact up to 2^53).
    public var rawLow: Double
    public var rawHigh: Double
    /// The physical values of the raw bounds, lowest first (factor may be negative).
    public var physicalLow: Double
    public var physicalHigh: Double
    /// Whether the DBC's [min, max] was usable (given, and inside what the bits can hold).
    /// When false the interval is everything the bits can hold.
    public var followsDBC: Bool

    /// The range for `signal`.
    public init(_ signal: DBCSignal) {
        switch signal.valueType {
        case .integer: self = Self.integer(signal)
        case .float32, .float64: self = Self.float(signal)
        }
    }

    /// Whether the DBC gives a range at all (`[0|0]` is the usual "not given").
    static func hasDBCRange(_ signal: DBCSignal) -> Bool {
        signal.minimum.isFinite && signal.maximum.isFinite && signal.minimum <= signal.maximum
            && !(signal.minimum == 0 && signal.maximum == 0)
    }

    /// Everything the signal's bits can hold, as Double bounds that convert back without trapping.
    static func representable(_ signal: DBCSignal) -> (low: Double, high: Double) {
        let bits = max(1, min(64, signal.length))
        if signal.isSigned {
            let high = bits == 64 ? Int64.max : (Int64(1) << Int64(bits - 1)) - 1
            let low = bits == 64 ? Int64.min : -(Int64(1) << Int64(bits - 1))
            var top = Double(high)
            // Above 2^53 the Double rounds up past the maximum; step back to one that fits.
            if Int64(exactly: top) == nil || Int64(top) > high { top = top.nextDown }
            return (Double(low), top)
        }
        let high = bits == 64 ? UInt64.max : (UInt64(1) << UInt64(bits)) - 1
        var top = Double(high)
        if UInt64(exactly: top) == nil || UInt64(top) > high { top = top.nextDown }
        return (0, top)
    }

    private static func integer(_ signal: DBCSignal) -> SignalRange {
        let bits = representable(signal)
        let everything = SignalRange(rawLow: bits.low, rawHigh: bits.high, signal: signal, followsDBC: false)
        guard hasDBCRange(signal), signal.factor != 0, signal.factor.isFinite else { return everything }
        let a = (signal.minimum - signal.offset) / signal.factor
        let b = (signal.maximum - signal.offset) / signal.factor
        var low = max(bits.low, min(a, b).rounded(.up))
        var high = min(bits.high, max(a, b).rounded(.down))
        guard low <= high else { return everything }
        // Division rounding can leave a bound whose physical value is a hair outside [min, max].
        let inside = { (raw: Double) -> Bool in
            let value = signal.physical(raw: raw)
            return value >= signal.minimum && value <= signal.maximum
        }
        for _ in 0..<4 where !inside(low) && low < high { low += 1 }
        for _ in 0..<4 where !inside(high) && high > low { high -= 1 }
        guard inside(low), inside(high) else { return everything }
        return SignalRange(rawLow: low, rawHigh: high, signal: signal, followsDBC: true)
    }

    private static func float(_ signal: DBCSignal) -> SignalRange {
        // Floats without a range get a modest one: plausible numbers, not ±3.4e38.
        let given = hasDBCRange(signal)
        let low = given ? signal.minimum : -1000
        let high = given ? signal.maximum : 1000
        let factor = signal.factor == 0 || !signal.factor.isFinite ? 1 : signal.factor
        let a = (low - signal.offset) / factor, b = (high - signal.offset) / factor
        var range = SignalRange(rawLow: min(a, b), rawHigh: max(a, b), physicalLow: low, physicalHigh: high,
                                followsDBC: given)
        if signal.valueType == .float32 {
            // Keep the raw bounds representable as Float (beyond ±3.4e38 they would become inf).
            range.rawLow = max(range.rawLow, -Double(Float.greatestFiniteMagnitude))
            range.rawHigh = min(range.rawHigh, Double(Float.greatestFiniteMagnitude))
        }
        return range
    }

    private init(rawLow: Double, rawHigh: Double, signal: DBCSignal, followsDBC: Bool) {
        self.rawLow = rawLow
        self.rawHigh = rawHigh
        let p = signal.physical(raw: rawLow), q = signal.physical(raw: rawHigh)
        physicalLow = min(p, q)
        physicalHigh = max(p, q)
        self.followsDBC = followsDBC
    }

    private init(rawLow: Double, rawHigh: Double, physicalLow: Double, physicalHigh: Double, followsDBC: Bool) {
        self.rawLow = rawLow
        self.rawHigh = rawHigh
        self.physicalLow = physicalLow
        self.physicalHigh = physicalHigh
        self.followsDBC = followsDBC
    }

    /// Whether `physical` lies inside the interval.
    public func contains(physical value: Double) -> Bool { value >= physicalLow && value <= physicalHigh }
}
