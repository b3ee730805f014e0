// A signal of a DBC message: where its bits are, how they become a number, and its metadata.
import DAQCore

/// How a signal's bits are laid out in the payload.
public enum DBCByteOrder: Sendable, Hashable {
    /// `@1`: Intel. The start bit is the least significant bit; bits count upwards across bytes.
    case littleEndian
    /// `@0`: Motorola. The start bit is the most significant bit in DBC's sawtooth numbering
    /// (bit 7 of byte 0 is bit 7, the next bit down the stream is bit 6, …, then bit 15 of byte 1).
    case bigEndian
}

/// What the raw bits of a signal hold.
public enum DBCValueType: Sendable, Hashable {
    /// A two's complement or unsigned integer (`+` / `-` in `SG_`).
    case integer
    /// IEEE 754 single precision (`SIG_VALTYPE_ … : 1`); the signal is 32 bits long.
    case float32
    /// IEEE 754 double precision (`SIG_VALTYPE_ … : 2`); the signal is 64 bits long.
    case float64
}

/// Which multiplexer value(s) select a multiplexed signal.
public struct DBCMultiplexSelector: Sendable, Hashable {
    /// Name of the multiplexer signal (in the same message) whose raw value selects this one.
    public var multiplexer: String
    /// Raw multiplexer values that select the signal (`mN` gives one; `SG_MUL_VAL_` may give ranges).
    public var values: [ClosedRange<Int64>]

    public init(multiplexer: String, values: [ClosedRange<Int64>]) {
        self.multiplexer = multiplexer
        self.values = values
    }

    /// Whether `raw` selects the signal.
    public func selects(_ raw: Int64) -> Bool { values.contains { $0.contains(raw) } }
}

/// One signal of a message, as the DBC file defines it.
public struct DBCSignal: Sendable, Hashable {
    public var name: String
    /// DBC start bit: the least significant bit for little-endian, the most significant bit
    /// (sawtooth numbering) for big-endian signals.
    public var startBit: Int
    /// Length in bits (1…64).
    public var length: Int
    public var byteOrder: DBCByteOrder
    /// Whether the raw integer is two's complement (`-`).
    public var isSigned: Bool
    public var valueType: DBCValueType
    /// Physical value = raw × factor + offset.
    public var factor: Double
    public var offset: Double
    /// Physical range from `[min|max]` (both 0 in many files, meaning "not given").
    public var minimum: Double
    public var maximum: Double
    public var unit: String
    /// Receiving nodes.
    public var receivers: [String]
    /// This signal's raw value selects other signals (`M`, or the `M` of `mNM`).
    public var isMultiplexer: Bool
    /// For a multiplexed signal (`mN`, `mNM`): the multiplexer and values that select it.
    public var multiplexedBy: DBCMultiplexSelector?
    /// Raw value → text (`VAL_`); not applied by the decoder.
    public var valueTable: [Int64: String]
    /// The `CM_ SG_` comment, if any.
    public var comment: String?

    public init(
        name: String, startBit: Int, length: Int, byteOrder: DBCByteOrder, isSigned: Bool = false,
        valueType: DBCValueType = .integer, factor: Double = 1, offset: Double = 0,
        minimum: Double = 0, maximum: Double = 0, unit: String = "", receivers: [String] = [],
        isMultiplexer: Bool = false, multiplexedBy: DBCMultiplexSelector? = nil,
        valueTable: [Int64: String] = [:], comment: String? = nil
    ) {
        self.name = name
        self.startBit = startBit
        self.length = length
        self.byteOrder = byteOrder
        self.isSigned = isSigned
        self.valueType = valueType
        self.factor = factor
        self.offset = offset
        self.minimum = minimum
        self.maximum = maximum
        self.unit = unit
        self.receivers = receivers
        self.isMultiplexer = isMultiplexer
        self.multiplexedBy = multiplexedBy
        self.valueTable = valueTable
        self.comment = comment
    }

    /// Position of the signal's first bit in the payload's bit stream as the decoder reads it:
    /// for little-endian the least significant bit (byte × 8 + bit), for big-endian the most
    /// significant bit counted from the top of byte 0 (byte × 8 + 7 − bit).
    public var streamStart: Int {
        switch byteOrder {
        case .littleEndian: return startBit
        case .bigEndian: return (startBit / 8) * 8 + (7 - startBit % 8)
        }
    }

    /// Bytes of payload the signal needs: a frame shorter than this does not carry the signal.
    public var requiredBytes: Int {
        switch byteOrder {
        case .littleEndian: return (startBit + length + 7) / 8
        case .bigEndian: return (streamStart + length + 7) / 8
        }
    }

    /// The physical value of a raw value (raw × factor + offset).
    @inlinable
    public func physical(raw: Double) -> Double { raw * factor + offset }
}
