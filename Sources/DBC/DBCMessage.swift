// A DBC message (`BO_`): its identifier, frame kind, length and signals.
import DAQCore

/// One message of a DBC file.
public struct DBCMessage: Sendable, Hashable {
    public var name: String
    /// The identifier without flag bits (11 or 29 bits).
    public var id: UInt32
    /// 29-bit identifier (bit 31 of the DBC id).
    public var isExtended: Bool
    /// CAN FD frame (`VFrameFormat` is a `…CAN_FD` format, or the length exceeds 8 bytes).
    public var isFD: Bool
    /// Data length in bytes (0…64).
    public var length: Int
    /// Transmitting node (`Vector__XXX` when none).
    public var sender: String
    /// `GenMsgCycleTime` in milliseconds (the message's value, else the attribute's default);
    /// nil when neither is given or the value is 0 (not cyclic).
    public var cycleTime: Int?
    /// Signals in file order.
    public var signals: [DBCSignal]
    /// The `CM_ BO_` comment, if any.
    public var comment: String?

    public init(name: String, id: UInt32, isExtended: Bool = false, isFD: Bool = false, length: Int,
                sender: String = "Vector__XXX", cycleTime: Int? = nil, signals: [DBCSignal] = [],
                comment: String? = nil) {
        self.name = name
        self.id = id
        self.isExtended = isExtended
        self.isFD = isFD
        self.length = length
        self.sender = sender
        self.cycleTime = cycleTime
        self.signals = signals
        self.comment = comment
    }

    /// Whether any signal is multiplexed.
    public var isMultiplexed: Bool { signals.contains { $0.multiplexedBy != nil } }

    /// The index of the signal named `name`.
    public func signalIndex(named name: String) -> Int? { signals.firstIndex { $0.name == name } }

    /// The signal named `name`.
    public func signal(named name: String) -> DBCSignal? { signalIndex(named: name).map { signals[$0] } }
}
