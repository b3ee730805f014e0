// The frame model shared by every source (SocketCAN, candump, ASC, TRC) and every consumer.

/// A point in time in nanoseconds. For live frames: the kernel's receive time since the Unix
/// epoch; for replayed frames: the log's own timestamp (absolute or relative, as the log holds it).
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public init(seconds: Int64, microseconds: Int64) {
        nanoseconds = seconds * 1_000_000_000 + microseconds * 1_000
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// Seconds as a Double (for JSON output and pacing).
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    /// `SECONDS.MICROSECONDS` with six decimals (candump's form); sub-microsecond digits are cut.
    public var candumpText: String {
        let negative = nanoseconds < 0
        let micros = (negative ? -nanoseconds : nanoseconds) / 1_000
        let whole = micros / 1_000_000
        let frac = micros % 1_000_000
        var fracText = String(frac)
        fracText = String(repeating: "0", count: 6 - fracText.count) + fracText
        return (negative ? "-" : "") + "\(whole).\(fracText)"
    }

    public var description: String { candumpText }
}

/// A classic CAN or CAN FD frame, a remote (RTR) request, or an error frame.
public struct CANFrame: Sendable, Hashable {
    /// What the frame is on the bus.
    public enum Kind: Sendable, Hashable {
        /// A data frame (classic or FD).
        case data
        /// A remote transmission request; `remoteLength` holds the requested DLC.
        case remote
        /// An error frame; `id` holds the error class bits (linux/can/error.h), `data` the details.
        case error
    }

    /// When the frame was received (or logged).
    public var timestamp: Timestamp
    /// The interface or bus it came from (`can0`, `vcan0`; `can<N-1>` for channel N of ASC/TRC).
    public var interface: String
    /// The identifier without flag bits (11 or 29 bits; error class bits for error frames).
    public var id: UInt32
    /// 29-bit extended identifier.
    public var isExtended: Bool
    public var kind: Kind
    /// CAN FD frame (data up to 64 bytes).
    public var isFD: Bool
    /// CAN FD bit-rate switch.
    public var bitRateSwitch: Bool
    /// CAN FD error state indicator.
    public var errorStateIndicator: Bool
    /// The data bytes (empty for RTR).
    public var data: CANPayload
    /// For RTR frames: the requested data length code.
    public var remoteLength: UInt8
    /// Received (`true`) or transmitted by this node (`false`), when the source knows.
    public var isReceived: Bool

    public init(
        timestamp: Timestamp, interface: String, id: UInt32, isExtended: Bool = false,
        kind: Kind = .data, isFD: Bool = false, bitRateSwitch: Bool = false,
        errorStateIndicator: Bool = false, data: CANPayload = CANPayload(), remoteLength: UInt8 = 0,
        isReceived: Bool = true
    ) {
        self.timestamp = timestamp
        self.interface = interface
        self.id = id
        self.isExtended = isExtended
        self.kind = kind
        self.isFD = isFD
        self.bitRateSwitch = bitRateSwitch
        self.errorStateIndicator = errorStateIndicator
        self.data = data
        self.remoteLength = remoteLength
        self.isReceived = isReceived
    }

    /// The flags nibble candump writes after `##` for CAN FD frames (BRS = 1, ESI = 2, FDF = 4).
    public var fdFlags: UInt8 {
        (bitRateSwitch ? CANFrame.flagBRS : 0) | (errorStateIndicator ? CANFrame.flagESI : 0)
    }

    public static let flagBRS: UInt8 = 0x01
    public static let flagESI: UInt8 = 0x02
    public static let flagFDF: UInt8 = 0x04

    /// SocketCAN's flag bits on `can_id`.
    public static let extendedFlag: UInt32 = 0x8000_0000
    public static let remoteFlag: UInt32 = 0x4000_0000
    public static let errorFlag: UInt32 = 0x2000_0000
    public static let standardMask: UInt32 = 0x7FF
    public static let extendedMask: UInt32 = 0x1FFF_FFFF

    /// Valid CAN FD data lengths (DLC 9…15 map to 12…64).
    public static let fdLengths: [Int] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]

    /// Data length code for a payload length (classic: 0…8; FD: the smallest DLC that fits).
    public static func dlc(forLength length: Int) -> Int {
        if length <= 8 { return length }
        return fdLengths.firstIndex { $0 >= length } ?? 15
    }

    /// Payload length for a DLC (0…15); classic frames clamp at 8.
    public static func length(forDLC dlc: Int, fd: Bool) -> Int {
        if dlc <= 8 { return max(0, dlc) }
        return fd ? fdLengths[min(dlc, 15)] : 8
    }
}
