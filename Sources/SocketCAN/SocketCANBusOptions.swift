// Socket options of a SocketCANBus, applied before bind so no frame arrives unfiltered.
internal import CSocketCAN
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

extension SocketCANBus {
    /// Applies `configuration` to the unbound socket `fd`, then binds it to `interface`.
    /// Returns the timestamp source that the kernel accepted.
    static func configure(_ fd: Int32, interface: String, _ configuration: Configuration) throws(DAQError) -> TimestampSource {
        let canRawLevel = Int32(SOL_CAN_BASE) + Int32(CAN_RAW)
        if configuration.canFD {
            try setIntOption(fd, level: canRawLevel, Int32(CAN_RAW_FD_FRAMES), 1, name: "CAN_RAW_FD_FRAMES", interface: interface)
        }
        var errorMask: UInt32 = configuration.errorMask & CAN_ERR_MASK
        try setOption(fd, level: canRawLevel, Int32(CAN_RAW_ERR_FILTER), &errorMask,
                      name: "CAN_RAW_ERR_FILTER", interface: interface)
        if let filters = configuration.filters {
            var kernelFilters = filters.map { filter -> can_filter in
                let words = filter.kernelWords
                return can_filter(can_id: words.id, can_mask: words.mask)
            }
            let size = socklen_t(MemoryLayout<can_filter>.stride * kernelFilters.count)
            _ = try checkedSystemCall("setsockopt(CAN_RAW_FILTER)", interface: interface) {
                kernelFilters.withUnsafeMutableBytes {
                    setsockopt(fd, canRawLevel, Int32(CAN_RAW_FILTER), $0.baseAddress, size)
                }
            }
        }
        try setIntOption(fd, level: SOL_SOCKET, SO_RXQ_OVFL, 1, name: "SO_RXQ_OVFL", interface: interface)
        if let bytes = configuration.receiveBufferBytes {
            let value = Int32(clamping: bytes)
            // SO_RCVBUFFORCE may exceed net.core.rmem_max but needs CAP_NET_ADMIN.
            do {
                try setIntOption(fd, level: SOL_SOCKET, SO_RCVBUFFORCE, value, name: "SO_RCVBUFFORCE", interface: interface)
            } catch {
                try setIntOption(fd, level: SOL_SOCKET, SO_RCVBUF, value, name: "SO_RCVBUF", interface: interface)
            }
        }
        let source = try enableTimestamps(fd, interface: interface)

        let index = if_nametoindex(interface)
        guard index != 0 else {
            throw systemError("if_nametoindex", interface: interface, errno: errno)
        }
        _ = try checkedSystemCall("bind", interface: interface) { daqlink_can_bind(fd, Int32(index)) }
        return source
    }

    /// SO_TIMESTAMPING with software and hardware receive stamps; SO_TIMESTAMPNS when the
    /// kernel refuses it.
    private static func enableTimestamps(_ fd: Int32, interface: String) throws(DAQError) -> TimestampSource {
        let flags = Int32(SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
                          | SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE)
        do {
            try setIntOption(fd, level: SOL_SOCKET, daqlink_so_timestamping(), flags,
                             name: "SO_TIMESTAMPING", interface: interface)
            return .timestamping
        } catch {
            try setIntOption(fd, level: SOL_SOCKET, daqlink_so_timestampns(), 1,
                             name: "SO_TIMESTAMPNS", interface: interface)
            return .timestampNS
        }
    }

    static func setIntOption(_ fd: Int32, level: Int32, _ option: Int32, _ value: Int32,
                             name: String, interface: String) throws(DAQError) {
        var value = value
        try setOption(fd, level: level, option, &value, name: name, interface: interface)
    }

    static func setOption<T: BitwiseCopyable>(_ fd: Int32, level: Int32, _ option: Int32, _ value: inout T,
                             name: String, interface: String) throws(DAQError) {
        let size = socklen_t(MemoryLayout<T>.size)
        _ = try checkedSystemCall("setsockopt(\(name))", interface: interface) {
            setsockopt(fd, level, option, &value, size)
        }
    }

    static func getIntOption(_ fd: Int32, _ option: Int32, interface: String) throws(DAQError) -> Int {
        var value: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        _ = try checkedSystemCall("getsockopt", interface: interface) {
            getsockopt(fd, SOL_SOCKET, option, &value, &size)
        }
        return Int(value)
    }
}
