// candump `-l` text for a frame: the exact form `daqctl frames` prints and the log reader accepts.

extension CANFrame {
    /// The frame in candump `-l` form: `(SECONDS.MICROSECONDS) IFACE ID#DATA`.
    /// 11-bit ids as 3 hex digits, 29-bit (and error frames) as 8; FD as `ID##F` + data; RTR as `ID#R`
    /// (with the DLC appended when it is not zero, as can-utils does; a DLC 9…F as `R8_9`…`R8_F`).
    public var candumpLine: String {
        "(\(timestamp.candumpText)) \(interface) \(candumpBody)"
    }

    /// The `ID#DATA` part of a candump line.
    public var candumpBody: String {
        switch kind {
        case .error:
            return hex(id | CANFrame.errorFlag, digits: 8) + "#" + data.hexString
        case .remote:
            let idText = hex(id, digits: isExtended ? 8 : 3)
            // A DLC 9…F is the length 8 and that code after '_' (can-utils' len8_dlc form).
            let length = remoteLength > 8 ? "8_" + String(remoteLength, radix: 16, uppercase: true)
                : remoteLength > 0 ? String(remoteLength, radix: 16, uppercase: true) : ""
            return idText + "#R" + length
        case .data:
            let idText = hex(id, digits: isExtended ? 8 : 3)
            if isFD {
                return idText + "##" + String(fdFlags, radix: 16, uppercase: true) + data.hexString
            }
            return idText + "#" + data.hexString
        }
    }
}

private func hex(_ value: UInt32, digits: Int) -> String {
    let text = String(value, radix: 16, uppercase: true)
    return text.count >= digits ? text : String(repeating: "0", count: digits - text.count) + text
}
