// Converts between CANFrame and the kernel's struct can_frame / canfd_frame (one layout: the
// classic frame is the first 16 bytes of the FD frame, its data at the same offset).
internal import CSocketCAN
import DAQCore

enum CANFrameCodec {
    /// Bytes the kernel reads/writes for a classic frame and for an FD frame.
    static let classicSize = MemoryLayout<can_frame>.size
    static let fdSize = MemoryLayout<canfd_frame>.size

    /// The frame in `raw`, which the kernel filled with `byteCount` bytes.
    static func decode(_ raw: canfd_frame, byteCount: Int, timestamp: Timestamp,
                       interface: String, isReceived: Bool) -> CANFrame? {
        let canID = raw.can_id
        let isFD = byteCount == fdSize
        guard isFD || byteCount == classicSize else { return nil }
        let length = min(Int(raw.len), isFD ? 64 : 8)
        var frame = CANFrame(timestamp: timestamp, interface: interface, id: 0, isReceived: isReceived)
        if canID & CAN_ERR_FLAG != 0 {
            frame.kind = .error
            frame.id = canID & CAN_ERR_MASK
        } else {
            frame.isExtended = canID & CAN_EFF_FLAG != 0
            frame.id = canID & (frame.isExtended ? CAN_EFF_MASK : CAN_SFF_MASK)
            if !isFD && canID & CAN_RTR_FLAG != 0 {
                frame.kind = .remote
                frame.remoteLength = UInt8(min(Int(raw.len), 15))
                return frame
            }
        }
        if isFD {
            frame.isFD = true
            frame.bitRateSwitch = raw.flags & UInt8(CANFD_BRS) != 0
            frame.errorStateIndicator = raw.flags & UInt8(CANFD_ESI) != 0
        }
        var data = raw.data
        frame.data = withUnsafeBytes(of: &data) { CANPayload(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        return frame
    }

    /// The kernel struct for `frame` and how many bytes to write. FD payloads whose length is
    /// not a valid FD length are zero-padded to the next one, as a real controller would send.
    static func encode(_ frame: CANFrame) -> (raw: canfd_frame, byteCount: Int) {
        var raw = canfd_frame()
        switch frame.kind {
        case .error:
            raw.can_id = (frame.id & CAN_ERR_MASK) | CAN_ERR_FLAG
        case .data, .remote:
            raw.can_id = frame.isExtended ? (frame.id & CAN_EFF_MASK) | CAN_EFF_FLAG : frame.id & CAN_SFF_MASK
        }
        if frame.kind == .remote {
            raw.can_id |= CAN_RTR_FLAG
            raw.len = min(frame.remoteLength, 8)
            return (raw, classicSize)
        }
        let count = frame.data.count
        withUnsafeMutableBytes(of: &raw.data) { out in
            frame.data.withUnsafeBytes { out.copyMemory(from: $0) }
        }
        if frame.isFD && frame.kind == .data {
            raw.len = UInt8(CANFrame.length(forDLC: CANFrame.dlc(forLength: count), fd: true))
            raw.flags = UInt8(CANFD_FDF)
                | (frame.bitRateSwitch ? UInt8(CANFD_BRS) : 0)
                | (frame.errorStateIndicator ? UInt8(CANFD_ESI) : 0)
            return (raw, fdSize)
        }
        raw.len = UInt8(min(count, 8))
        return (raw, classicSize)
    }
}
