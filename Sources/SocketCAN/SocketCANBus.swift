// One CAN_RAW socket bound to one interface: non-blocking, CAN FD, kernel receive timestamps,
// the kernel's drop counter, error frames and id filters. A poll-able file descriptor, no thread.
internal import CSocketCAN
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// A SocketCAN interface (`can0`, `vcan0`) opened for raw frames.
///
/// The bus is driven from one thread: poll `fileDescriptor` (or use `SocketCANBusSet`), then call
/// `receive` until it returns no frames, and `send` until it reports `.wouldBlock`.
/// Not `Sendable`: it belongs to the loop that polls it.
public final class SocketCANBus {
    /// How the socket is set up.
    public struct Configuration: Sendable {
        /// Receive CAN FD frames as well as classic ones (CAN_RAW_FD_FRAMES); needed to send FD.
        public var canFD: Bool = true
        /// Error classes to receive as error frames (CAN_RAW_ERR_FILTER; linux/can/error.h bits).
        /// Default: all. 0 receives none.
        public var errorMask: UInt32 = CANFrame.extendedMask
        /// Acceptance filters (CAN_RAW_FILTER); nil accepts every frame, an empty list none.
        public var filters: [CANIDFilter]? = nil
        /// Receive buffer size to ask for (SO_RCVBUF, or SO_RCVBUFFORCE when allowed); nil keeps
        /// the system default. The kernel doubles the value for its bookkeeping.
        public var receiveBufferBytes: Int? = nil
        /// Use the controller's hardware receive timestamps when it delivers them. They are in
        /// the controller's clock domain, so the default is the kernel's software timestamp.
        public var preferHardwareTimestamps: Bool = false

        public init() {}
    }

    /// Whether a frame was handed to the kernel.
    public enum SendOutcome: Sendable, Equatable {
        case sent
        /// The socket's send buffer or the interface queue is full (EAGAIN/ENOBUFS): poll the
        /// file descriptor for writability (`SocketCANBusSet`) and send the same frame again.
        case wouldBlock
    }

    /// Running totals for this socket.
    public struct Counters: Sendable, Equatable {
        /// Data and remote frames received.
        public var framesReceived: UInt64 = 0
        /// Error frames received.
        public var errorFramesReceived: UInt64 = 0
        /// Frames the kernel dropped because this socket's receive queue was full (SO_RXQ_OVFL).
        /// The kernel reports the total with each received frame, so drops become visible
        /// here with the first frame queued after them.
        public var kernelDrops: UInt64 = 0
        /// Frames sent.
        public var framesSent: UInt64 = 0
        /// `send` calls that found the socket not ready.
        public var sendsDeferred: UInt64 = 0
        /// Times a read found the interface down (ENETDOWN: `ip link set … down`, a driver
        /// restarting after bus-off, an adapter pulled). The socket stays bound: frames come
        /// again when the interface is back up.
        public var interfaceDownReports: UInt64 = 0
    }

    /// Where receive timestamps come from.
    public enum TimestampSource: String, Sendable {
        /// SO_TIMESTAMPING: the controller's timestamp when present, else the kernel's.
        case timestamping = "SO_TIMESTAMPING"
        /// SO_TIMESTAMPNS: the kernel's software receive time.
        case timestampNS = "SO_TIMESTAMPNS"
    }

    /// The interface name the socket is bound to.
    public let interface: String
    /// The socket, non-blocking; poll it for POLLIN (frames) and POLLOUT (room to send).
    public let fileDescriptor: Int32
    /// Running totals.
    public private(set) var counters = Counters()
    /// The receive buffer size the kernel granted (as reported by SO_RCVBUF).
    public private(set) var receiveBufferBytes: Int = 0
    /// How receive timestamps are obtained.
    public let timestampSource: TimestampSource
    /// Whether FD frames can be received and sent.
    public let canFD: Bool

    private let preferHardware: Bool
    private var dropCount = KernelDropCount()
    private var isClosed = false
    // recvmmsg's buffers, allocated once: per message of a batch, the frame, its iovec, its
    // header and its control (cmsg) area.
    private static let batchSize = 64
    private let frameBuffers = UnsafeMutablePointer<canfd_frame>.allocate(capacity: batchSize)
    private let ioVectors = UnsafeMutablePointer<iovec>.allocate(capacity: batchSize)
    private let headers = UnsafeMutablePointer<daqlink_mmsghdr>.allocate(capacity: batchSize)
    private static let controlSize = 512
    private let controls = UnsafeMutableRawPointer.allocate(byteCount: controlSize * batchSize, alignment: 16)

    /// Opens a raw CAN socket bound to `interface`.
    /// Throws `DAQError(.system)` naming the interface and the call that failed (for example
    /// `socket(AF_CAN)`: "Address family not supported" on a kernel without CAN).
    public init(interface: String, configuration: Configuration = Configuration()) throws(DAQError) {
        self.interface = interface
        guard !interface.isEmpty, interface.utf8.count < Int(IFNAMSIZ) else {
            throw DAQError(.system, "\(interface): not a valid interface name")
        }
        let fd = try checkedSystemCall("socket(AF_CAN, SOCK_RAW, CAN_RAW)", interface: interface) {
            daqlink_can_raw_socket()
        }
        do {
            canFD = configuration.canFD
            preferHardware = configuration.preferHardwareTimestamps
            timestampSource = try Self.configure(fd, interface: interface, configuration)
        } catch {
            Glibc.close(fd)
            throw error
        }
        fileDescriptor = fd
        for index in 0..<Self.batchSize {
            ioVectors[index] = iovec(iov_base: UnsafeMutableRawPointer(frameBuffers + index),
                                     iov_len: MemoryLayout<canfd_frame>.size)
        }
        receiveBufferBytes = (try? Self.getIntOption(fd, SO_RCVBUF, interface: interface)) ?? 0
    }

    deinit {
        close()
        frameBuffers.deallocate()
        ioVectors.deallocate()
        headers.deallocate()
        controls.deallocate()
    }

    /// Closes the socket; later calls fail. Called by deinit if not before.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fileDescriptor)
    }

    /// Reads frames until the socket has none left or `limit` were read, appending them to
    /// `frames` with the kernel's receive timestamp (ns since the epoch) and this interface.
    /// Returns how many were appended (0: nothing pending).
    @discardableResult
    public func receive(into frames: inout [CANFrame], limit: Int = 256) throws(DAQError) -> Int {
        var appended = 0
        while appended < limit {
            let wanted = min(Self.batchSize, limit - appended)
            for index in 0..<wanted {
                var message = msghdr()
                message.msg_iov = ioVectors + index
                message.msg_iovlen = 1
                message.msg_control = controls + index * Self.controlSize
                message.msg_controllen = Self.controlSize
                headers[index] = daqlink_mmsghdr(msg_hdr: message, msg_len: 0)
            }
            // An error met after some frames of the batch (ENETDOWN) is kept by the kernel for
            // the next call.
            let outcome = try systemCall("recvmmsg", interface: interface, wouldBlockErrors: [EAGAIN, EWOULDBLOCK, ENETDOWN]) {
                daqlink_recvmmsg(fileDescriptor, headers, UInt32(wanted), Int32(MSG_DONTWAIT))
            }
            guard case .done(let count) = outcome else {
                // The interface went down: reported once per event (the error is the socket's,
                // cleared by this read), not a reason to stop (it ended the run).
                if errno == ENETDOWN { counters.interfaceDownReports += 1 }
                break
            }
            for index in 0..<Int(count) {
                let (timestamp, drops) = readControl(&headers[index].msg_hdr)
                if let drops { noteDropReport(drops) }
                // MSG_DONTROUTE marks frames that another socket on this host sent.
                let local = headers[index].msg_hdr.msg_flags & Int32(MSG_DONTROUTE) != 0
                guard let frame = CANFrameCodec.decode(frameBuffers[index], byteCount: Int(headers[index].msg_len),
                                                       timestamp: timestamp ?? Self.wallClockNow(),
                                                       interface: interface, isReceived: !local)
                else { continue }
                if frame.kind == .error { counters.errorFramesReceived += 1 } else { counters.framesReceived += 1 }
                frames.append(frame)
                appended += 1
            }
            if Int(count) < wanted { break }
        }
        return appended
    }

    /// Reads the frames that are pending now (at most `limit`).
    public func receive(limit: Int = 256) throws(DAQError) -> [CANFrame] {
        var frames: [CANFrame] = []
        try receive(into: &frames, limit: limit)
        return frames
    }

    /// Writes one classic, FD, remote or error frame. The frame's own interface is ignored:
    /// it goes out on this bus. An FD frame on a bus opened without `canFD` is an error.
    public func send(_ frame: CANFrame) throws(DAQError) -> SendOutcome {
        if frame.isFD && !canFD {
            throw DAQError(.unsupported, "\(interface): CAN FD frame on a socket opened without CAN FD")
        }
        var (raw, size) = CANFrameCodec.encode(frame)
        let outcome = try systemCall("write", interface: interface, wouldBlockErrors: [EAGAIN, EWOULDBLOCK, ENOBUFS]) {
            write(fileDescriptor, &raw, size)
        }
        switch outcome {
        case .wouldBlock:
            counters.sendsDeferred += 1
            return .wouldBlock
        case .done(let written):
            guard written == size else {
                throw DAQError(.system, "\(interface): write: short write (\(written) of \(size) bytes)")
            }
            counters.framesSent += 1
            return .sent
        }
    }

    // MARK: - Receive details

    private func readControl(_ message: inout msghdr) -> (Timestamp?, UInt32?) {
        var software: Timestamp?
        var hardware: Timestamp?
        var drops: UInt32?
        var header = daqlink_cmsg_firsthdr(&message)
        while let cmsg = header {
            let data = UnsafeRawPointer(daqlink_cmsg_data(cmsg)!)
            if cmsg.pointee.cmsg_level == SOL_SOCKET {
                switch cmsg.pointee.cmsg_type {
                case daqlink_scm_timestampns():
                    software = Self.timestamp(data.loadUnaligned(as: timespec.self))
                case daqlink_scm_timestamping():
                    // scm_timestamping: [0] software, [1] legacy (unused), [2] raw hardware.
                    software = Self.timestamp(data.loadUnaligned(as: timespec.self))
                    hardware = Self.timestamp(data.loadUnaligned(fromByteOffset: 2 * MemoryLayout<timespec>.stride,
                                                                 as: timespec.self))
                case SO_RXQ_OVFL:
                    drops = data.loadUnaligned(as: UInt32.self)
                default:
                    break
                }
            }
            header = daqlink_cmsg_nxthdr(&message, cmsg)
        }
        return ((preferHardware ? hardware ?? software : software ?? hardware), drops)
    }

    /// Reads the socket's drop counter now (SO_MEMINFO). SO_RXQ_OVFL tells it only with the next
    /// frame queued: the drops at the end of a burst were never counted.
    public func refreshDrops() {
        // Closed, its number may be another socket's by now.
        guard !isClosed else { return }
        // struct sk_meminfo: SK_MEMINFO_VARS (9) u32, SK_MEMINFO_DROPS at index 8 (linux/sock_diag.h).
        var values = [UInt32](repeating: 0, count: 9)
        var size = socklen_t(MemoryLayout<UInt32>.stride * values.count)
        let result = values.withUnsafeMutableBytes { getsockopt(fileDescriptor, SOL_SOCKET, SO_MEMINFO, $0.baseAddress, &size) }
        guard result == 0, size >= socklen_t(MemoryLayout<UInt32>.stride * 9) else { return }
        noteDropReport(values[8])
    }

    private func noteDropReport(_ total: UInt32) {
        dropCount.note(total)
        counters.kernelDrops = dropCount.total
    }

    private static func timestamp(_ time: timespec) -> Timestamp? {
        guard time.tv_sec != 0 || time.tv_nsec != 0 else { return nil }
        return Timestamp(nanoseconds: Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec))
    }

    private static func wallClockNow() -> Timestamp {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return timestamp(now) ?? Timestamp(nanoseconds: 0)
    }
}

/// The socket's drop counter (sk_drops): a wrapping 32-bit total, told with each frame
/// (SO_RXQ_OVFL: the total when that frame was queued) and on request (SO_MEMINFO: the total now).
struct KernelDropCount: Equatable {
    /// Drops since the socket was opened.
    private(set) var total: UInt64 = 0
    private var last: UInt32 = 0

    /// Takes one report. A frame queued before the last SO_MEMINFO reading carries an older total:
    /// no step back (taken as one, it added 2^32 - n: "drops: kernel 4295075594" on a saturated
    /// bus); a wrap of the counter is a step forward.
    mutating func note(_ reported: UInt32) {
        let step = reported &- last
        guard step != 0, Int32(bitPattern: step) > 0 else { return }
        total += UInt64(step)
        last = reported
    }
}
