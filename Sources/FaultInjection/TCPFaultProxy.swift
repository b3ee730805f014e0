// A small TCP proxy for fault injection on loopback: forwards connections to a target and, on
// command, resets every connection (RST), blackholes them (bytes stop flowing both ways, like a
// 4G dead spot, until the peers' own timeouts fire), refuses new ones for a while, or limits the
// uplink (client → target) to a rate, like a cellular uplink.
// It runs its own poll loop on one thread; commands cross threads through a mutex.
import DAQCore
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The link's condition, as the proxy applies it.
public enum LinkCondition: Sendable, Equatable {
    /// Bytes flow.
    case up
    /// Existing connections stay open but nothing is forwarded; new connections are accepted and starved.
    case blackhole
    /// Existing connections are reset and new ones are refused (closed at once).
    case down
}

/// Forwards `listenPort` on 127.0.0.1 to `targetHost:targetPort`, with faults on demand.
public final class TCPFaultProxy: Sendable {
    public let listenPort: Int
    private let state = Mutex(State())

    private struct State {
        var targetPort = 0
        var condition: LinkCondition = .up
        var resetRequested = false
        var stopping = false
        var connectionsAccepted = 0
        var bytesForwarded = 0
        var uplinkBytesPerSecond: Int?
    }

    /// Starts listening on an ephemeral (or given) port and forwarding on a background thread.
    public init(targetPort: Int, listenPort: Int = 0) throws(DAQError) {
        let (fd, port) = try LoopbackTCP.listener(port: listenPort)
        self.listenPort = port
        state.withLock { $0.targetPort = targetPort }
        let thread = Thread { [self] in forward(listener: fd) }
        thread.name = "tcp-fault-proxy"
        thread.start()
    }

    /// Like `init(targetPort:)`, but the listen queue is held full, so SYNs are dropped, for at
    /// least `seconds` and until the kernel has dropped one (its ListenOverflows count rose; at
    /// most 30 s): a client's non-blocking connect is still under way when its call returns, as
    /// over any real network (on loopback the kernel completes it inside connect()); its kernel
    /// sends the SYN again after 1 s (then 3, 7 s), and one after the release is taken.
    public init(targetPort: Int, droppingSYNsFor seconds: Double) throws(DAQError) {
        let (fd, port) = try LoopbackTCP.listener(port: 0)
        // A backlog of 0 holds one connection: the filler that takes it makes the queue full.
        guard listen(fd, 0) == 0, let filler = LoopbackTCP.connect(port: port) else {
            close(fd)
            throw DAQError(.system, "cannot fill the listen queue of port \(port)")
        }
        self.listenPort = port
        state.withLock { $0.targetPort = targetPort }
        let overflowsBefore = Self.listenOverflows()
        let thread = Thread { [self] in
            let started = Date()
            // Unreadable counts: after `seconds` alone.
            while !state.withLock({ $0.stopping }), Date().timeIntervalSince(started) < seconds
                    || (overflowsBefore.map { before in (Self.listenOverflows() ?? .max) <= before } == true
                        && Date().timeIntervalSince(started) < 30) {
                usleep(10_000)
            }
            // The filler goes (its queued connection is accepted, forwarded and closed at once).
            close(filler)
            forward(listener: fd)
        }
        thread.name = "tcp-fault-proxy"
        thread.start()
    }

    /// The kernel's count of SYNs dropped for a full listen queue (TcpExt ListenOverflows in
    /// /proc/net/netstat; the whole namespace's: a drop elsewhere may release the queue early;
    /// nil when unreadable).
    static func listenOverflows() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/net/netstat", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n")
        for (index, line) in lines.enumerated() where line.hasPrefix("TcpExt:") && index + 1 < lines.count {
            let names = line.split(separator: " "), values = lines[index + 1].split(separator: " ")
            guard let column = names.firstIndex(of: "ListenOverflows"), column < values.count else { return nil }
            return Int(values[column])
        }
        return nil
    }

    /// Sets the link condition; `.down` also resets every open connection.
    public func set(_ condition: LinkCondition) {
        state.withLock {
            $0.condition = condition
            if condition == .down { $0.resetRequested = true }
        }
    }

    /// Limits what all clients together send towards the target to `bytesPerSecond` (nil: no limit).
    /// The proxy then reads from clients only as fast as that, so their kernels' send buffers fill
    /// and their writes back up, as over a slow link; bursts are at most 16 KB.
    public func limitUplink(bytesPerSecond: Int?) { state.withLock { $0.uplinkBytesPerSecond = bytesPerSecond } }

    /// Resets every open connection once (RST), leaving the condition as it is.
    public func resetConnections() { state.withLock { $0.resetRequested = true } }

    public var bytesForwarded: Int { state.withLock { $0.bytesForwarded } }
    public var connectionsAccepted: Int { state.withLock { $0.connectionsAccepted } }

    /// Stops the proxy thread and closes everything.
    public func stop() { state.withLock { $0.stopping = true } }

    private func forward(listener: Int32) {
        var pairs: [(client: Int32, server: Int32)] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        // Token bucket of the uplink limit: bytes that may be read from clients now.
        let burst = 16 * 1024
        var credit = Double(burst)
        var refilled = DispatchTime.now().uptimeNanoseconds
        defer {
            for pair in pairs { close(pair.client); close(pair.server) }
            close(listener)
        }
        while true {
            let (condition, reset, stopping, rate) = state.withLock { s -> (LinkCondition, Bool, Bool, Int?) in
                defer { s.resetRequested = false }
                return (s.condition, s.resetRequested, s.stopping, s.uplinkBytesPerSecond)
            }
            let now = DispatchTime.now().uptimeNanoseconds
            if let rate {
                credit = min(Double(burst), credit + Double(rate) * Double(now - refilled) / 1e9)
            }
            refilled = now
            // Out of credit: leave clients unread until about 1 KB has accrued.
            let clientsMayRead = rate == nil || credit >= 1024
            let timeout: Int32 = clientsMayRead ? 50 : Int32(max(1, min(50, (1024 - credit) / Double(rate!) * 1000)))
            if stopping { return }
            if reset {
                for pair in pairs { abort(pair.client); abort(pair.server) }
                pairs.removeAll()
            }
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            if condition == .up {
                for pair in pairs {
                    fds.append(pollfd(fd: pair.client, events: clientsMayRead ? Int16(POLLIN) : 0, revents: 0))
                    fds.append(pollfd(fd: pair.server, events: Int16(POLLIN), revents: 0))
                }
            }
            _ = poll(&fds, nfds_t(fds.count), timeout)
            if fds[0].revents & Int16(POLLIN) != 0 {
                let client = accept(listener, nil, nil)
                if client >= 0 {
                    if condition == .down {
                        abort(client)
                    } else if let server = connectTarget() {
                        // Forward small packets at once: Nagle in the proxy would add up to 40 ms
                        // (the peer's delayed ACK) to every PUBACK, which no real link does.
                        for fd in [client, server] { noDelay(fd) }
                        pairs.append((client, server))
                        state.withLock { $0.connectionsAccepted += 1 }
                    } else {
                        abort(client)
                    }
                }
            }
            guard condition == .up else { continue }
            var closed: Set<Int32> = []
            for entry in fds.dropFirst() where entry.revents != 0 {
                guard let pair = pairs.first(where: { $0.client == entry.fd || $0.server == entry.fd }),
                      !closed.contains(pair.client) else { continue }
                let fromClient = entry.fd == pair.client
                let peer = fromClient ? pair.server : pair.client
                let limit = fromClient && rate != nil ? max(1, min(buffer.count, Int(credit))) : buffer.count
                let count = read(entry.fd, &buffer, limit)
                if count <= 0 || !writeAll(peer, buffer, count) {
                    close(pair.client)
                    close(pair.server)
                    closed.insert(pair.client)
                } else {
                    if fromClient && rate != nil { credit -= Double(count) }
                    state.withLock { $0.bytesForwarded += count }
                }
            }
            pairs.removeAll { closed.contains($0.client) }
        }
    }

    private func connectTarget() -> Int32? { LoopbackTCP.connect(port: state.withLock { $0.targetPort }) }

    /// New connections go to `port` from now on (a server restarted elsewhere; clients keep
    /// the proxy's address).
    public func retarget(port: Int) { state.withLock { $0.targetPort = port } }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], _ count: Int) -> Bool {
        var sent = 0
        while sent < count {
            // send(MSG_NOSIGNAL): a peer that went away must not raise SIGPIPE in the host process.
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    private func noDelay(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Closes with RST (SO_LINGER 0), as a dropped mobile link looks to the peer.
    private func abort(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
