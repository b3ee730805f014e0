// Placeholder for the SocketCAN adapter (raw sockets + libsocketcan).
internal import CSocketCAN
import DAQCore

/// libsocketcan is linked here.
public enum SocketCANLibrary {
    /// Reads the bus state of `interface` through libsocketcan; nil when it cannot be read.
    public static func state(of interface: String) -> Int32? {
        var state: Int32 = 0
        return can_get_state(interface, &state) == 0 ? state : nil
    }
}
