// Bus state, bitrate and error counters of a CAN interface through libsocketcan (netlink).
// Virtual interfaces (vcan) have none of these: every field is then unknown, not an error.
internal import CSocketCAN
#if canImport(Glibc)
import Glibc
#endif

/// The CAN controller's error state (ISO 11898-1 fault confinement), as the driver reports it.
public enum CANBusState: String, Sendable {
    case errorActive = "error-active"
    case errorWarning = "error-warning"
    case errorPassive = "error-passive"
    case busOff = "bus-off"
    case stopped
    case sleeping
    /// The interface reports no CAN state (vcan, or not a CAN interface).
    case unknown
}

/// What libsocketcan can tell about an interface; nil fields are unknown.
public struct CANLinkInfo: Sendable, CustomStringConvertible {
    public var interface: String
    public var state: CANBusState
    /// Nominal (arbitration) bitrate in bit/s.
    public var bitrate: Int?
    /// Sample point in tenths of a percent (875 = 87.5 %).
    public var samplePoint: Int?
    /// Transmit and receive error counters.
    public var transmitErrors: Int?
    public var receiveErrors: Int?

    /// Reads the interface's state, bit timing and error counters; never fails.
    public static func read(interface: String) -> CANLinkInfo {
        withStandardErrorSilenced { query(interface) }
    }

    private static func query(_ interface: String) -> CANLinkInfo {
        var info = CANLinkInfo(interface: interface, state: .unknown)
        var rawState: Int32 = 0
        if can_get_state(interface, &rawState) == 0 {
            info.state = switch UInt32(bitPattern: rawState) {
            case CAN_STATE_ERROR_ACTIVE.rawValue: .errorActive
            case CAN_STATE_ERROR_WARNING.rawValue: .errorWarning
            case CAN_STATE_ERROR_PASSIVE.rawValue: .errorPassive
            case CAN_STATE_BUS_OFF.rawValue: .busOff
            case CAN_STATE_STOPPED.rawValue: .stopped
            case CAN_STATE_SLEEPING.rawValue: .sleeping
            default: .unknown
            }
        }
        var timing = can_bittiming()
        if can_get_bittiming(interface, &timing) == 0, timing.bitrate > 0 {
            info.bitrate = Int(timing.bitrate)
            info.samplePoint = Int(timing.sample_point)
        }
        var counters = can_berr_counter()
        if can_get_berr_counter(interface, &counters) == 0 {
            info.transmitErrors = Int(counters.txerr)
            info.receiveErrors = Int(counters.rxerr)
        }
        return info
    }

    /// `state=… bitrate=… berr=tx/rx` with `unknown` for what the interface does not report.
    public var description: String {
        let rate = bitrate.map(String.init) ?? "unknown"
        let berr = transmitErrors.map { "\($0)/\(receiveErrors ?? 0)" } ?? "unknown"
        return "state=\(state.rawValue) bitrate=\(rate) berr=\(berr)"
    }
}

/// libsocketcan prints "no link data found" to stderr for every query on an interface without
/// CAN link data (vcan); that is an expected "unknown" here, so fd 2 points at /dev/null for the
/// duration of the queries. This briefly affects every thread's stderr: call it from the loop
/// thread at start-up or shutdown, not from a hot path.
private func withStandardErrorSilenced<T>(_ body: () -> T) -> T {
    let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
    let saved = dup(STDERR_FILENO)
    guard null >= 0, saved >= 0 else {
        if null >= 0 { close(null) }
        if saved >= 0 { close(saved) }
        return body()
    }
    dup2(null, STDERR_FILENO)
    close(null)
    defer {
        dup2(saved, STDERR_FILENO)
        close(saved)
    }
    return body()
}
