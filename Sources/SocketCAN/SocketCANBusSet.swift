// Waits on several buses' sockets at once with one poll(2): no thread per bus. The cooperative
// loop of the next stage calls this with its next timer deadline as the timeout.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// Which buses are ready after a wait.
public struct BusReadiness: Sendable, Equatable {
    /// Indices (into `SocketCANBusSet.buses`) of buses with frames to receive.
    public var readable: [Int] = []
    /// Indices of buses that asked for writability and can take frames again.
    public var writable: [Int] = []
    /// The wait was cut short by a signal (for example SIGINT); check your stop condition.
    public var interrupted = false

    public init() {}
}

/// A group of open buses polled together.
public struct SocketCANBusSet {
    /// The buses, in the order given.
    public let buses: [SocketCANBus]

    public init(_ buses: [SocketCANBus]) { self.buses = buses }

    /// Opens one bus per interface with the same configuration.
    public init(interfaces: [String], configuration: SocketCANBus.Configuration = .init()) throws(DAQError) {
        var opened: [SocketCANBus] = []
        for name in interfaces { opened.append(try SocketCANBus(interface: name, configuration: configuration)) }
        buses = opened
    }

    /// Waits until a bus has frames (or, for the indices in `wantWritable`, room to send), or
    /// `timeoutNanoseconds` pass (nil: no timeout; 0: just check).
    ///
    /// EINTR is not retried here, unlike every other call of this module: a signal must be
    /// able to end a wait, so it returns with `interrupted` set.
    public func wait(timeoutNanoseconds: Int64?, wantWritable: Set<Int> = []) throws(DAQError) -> BusReadiness {
        var fds = buses.enumerated().map { index, bus in
            pollfd(fd: bus.fileDescriptor,
                   events: Int16(POLLIN) | (wantWritable.contains(index) ? Int16(POLLOUT) : 0), revents: 0)
        }
        // Millisecond resolution, rounded up so a wait never ends before its deadline.
        let timeoutMilliseconds: Int32 = timeoutNanoseconds.map {
            Int32(clamping: (max(0, $0) + 999_999) / 1_000_000)
        } ?? -1
        let result = fds.withUnsafeMutableBufferPointer { buffer in
            poll(buffer.baseAddress, nfds_t(buffer.count), timeoutMilliseconds)
        }
        var readiness = BusReadiness()
        if result < 0 {
            let code = errno
            if code == EINTR { readiness.interrupted = true; return readiness }
            let names = buses.map(\.interface).joined(separator: ",")
            throw systemError("poll", interface: names, errno: code)
        }
        for (index, entry) in fds.enumerated() where entry.revents != 0 {
            if entry.revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                let bus = buses[index]
                throw DAQError(.system, "\(bus.interface): socket error or hang-up while polling (revents 0x\(String(entry.revents, radix: 16)))")
            }
            if entry.revents & Int16(POLLIN) != 0 { readiness.readable.append(index) }
            if entry.revents & Int16(POLLOUT) != 0 { readiness.writable.append(index) }
        }
        return readiness
    }
}
