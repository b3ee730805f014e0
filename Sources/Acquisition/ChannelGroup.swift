// What an experiment measures: channel groups (a trigger and its channels), independent of the DBC
// they were bound from. Pure values; the sampler and the record layout are built from these.

/// How one channel's value is stored in a record.
public enum ChannelStorage: Sendable, Hashable {
    /// The DBC raw integer, unsigned, in `bits` (8, 16, 32 or 64) bits.
    case unsigned(bits: Int)
    /// The DBC raw integer, two's complement, in `bits` (8, 16, 32 or 64) bits.
    case signed(bits: Int)
    /// The physical value as IEEE float32.
    case float32
    /// The physical value as IEEE float64.
    case float64

    /// Bytes the value occupies in a record.
    public var byteCount: Int {
        switch self {
        case .unsigned(let bits), .signed(let bits): return bits / 8
        case .float32: return 4
        case .float64: return 8
        }
    }

    /// The smallest integer storage holding a raw DBC value of `length` bits.
    public static func raw(length: Int, signed: Bool) -> ChannelStorage {
        let bits = length <= 8 ? 8 : length <= 16 ? 16 : length <= 32 ? 32 : 64
        return signed ? .signed(bits: bits) : .unsigned(bits: bits)
    }

    /// Stable code used in the journal's layout entry.
    public var code: UInt8 {
        switch self {
        case .unsigned: return 0
        case .signed: return 1
        case .float32: return 2
        case .float64: return 3
        }
    }
}

/// One measured channel: a DBC signal, stored raw or physical.
public struct ChannelSpec: Sendable, Hashable {
    /// `Message.Signal`.
    public var name: String
    public var unit: String
    public var storage: ChannelStorage
    /// For raw-stored channels: physical = raw × factor + offset (MDF linear conversion).
    public var factor: Double
    public var offset: Double
    /// Value table of the signal (raw value → text), for MDF value-to-text conversions.
    public var valueTable: [(key: Int64, text: String)]

    public init(name: String, unit: String = "", storage: ChannelStorage, factor: Double = 1, offset: Double = 0,
                valueTable: [(key: Int64, text: String)] = []) {
        self.name = name
        self.unit = unit
        self.storage = storage
        self.factor = factor
        self.offset = offset
        self.valueTable = valueTable
    }

    public static func == (lhs: ChannelSpec, rhs: ChannelSpec) -> Bool {
        lhs.name == rhs.name && lhs.unit == rhs.unit && lhs.storage == rhs.storage && lhs.factor == rhs.factor
            && lhs.offset == rhs.offset && lhs.valueTable.elementsEqual(rhs.valueTable) { $0 == $1 }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(storage)
    }
}

/// When a channel group records.
public enum GroupTrigger: Sendable, Hashable {
    /// A fixed time raster (period in nanoseconds), like an INCA/CANape measurement raster.
    case raster(periodNanoseconds: Int64)
    /// Every arrival of the named message (`bus/Message` key chosen by the binder).
    case message(String)
    /// Every change of the named channel's value (`Message.Signal`).
    case signalChange(String)
    /// Every data frame of the listed buses, raw (an MDF bus-logging group, `CAN_DataFrame`);
    /// a frame's `BusChannel` is its bus's position in the list + 1. Such a group has no channels:
    /// its record layout is `BusFrameRecord`, with 64 data bytes per frame when `fd` (CAN FD frames
    /// of any length are logged) and 8 otherwise (longer frames are counted, not logged).
    case busFrames(buses: [String], fd: Bool = false)

    /// Stable code used in the journal's layout entry.
    public var code: UInt8 {
        switch self {
        case .raster: return 0
        case .message: return 1
        case .signalChange: return 2
        case .busFrames(_, let fd): return fd ? 4 : 3
        }
    }
}

/// A channel group: a name ("Time 5ms"), a trigger and the channels it samples.
public struct ChannelGroup: Sendable, Hashable {
    public var name: String
    public var trigger: GroupTrigger
    public var channels: [ChannelSpec]

    public init(name: String, trigger: GroupTrigger, channels: [ChannelSpec]) {
        self.name = name
        self.trigger = trigger
        self.channels = channels
    }

    /// The buses of a raw bus-logging group, nil for a sampled group.
    public var loggedBuses: [String]? {
        if case .busFrames(let buses, _) = trigger { return buses }
        return nil
    }

    /// Whether this is a bus-logging group with CAN FD records (64 data bytes).
    public var logsFDFrames: Bool {
        if case .busFrames(_, let fd) = trigger { return fd }
        return false
    }
}
