// A small TCP proxy for fault injection on loopback: forwards connections to a target and, on
// command, resets every connection (RST), blackholes them (bytes stop flowing both ways, like a
// 4G dead spot, until the peers' own timeouts fire), or refuses new ones for a while.
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
    private let targetPort: Int
    private let state = Mutex(State())

    private struct State {
        var condition: LinkCondition = .up
        var resetRequested = false
        var stopping = false
        var connectionsAccepted = 0
        var bytesForwarded = 0
    }

    /// Starts listening on an ephemeral (or given) port and forwarding on a background thread.
    public init(targetPort: Int, listenPort: Int = 0) throws(DAQError) {
        self.targetPort = targetPort
        let (fd, port) = try LoopbackTCP.listener(port: listenPort)
        self.listenPort = port
        let thread = Thread { [self] in forward(listener: fd) }
        thread.name = "tcp-fault-proxy"
        thread.start()
    }

    /// Sets the link condition; `.down` also resets every open connection.
    public func set(_ condition: LinkCondition) {
        state.withLock {
            $0.condition = condition
            if condition == .down { $0.resetRequested = true }
        }
    }

    /// Resets every open connection once (RST), leaving the condition as it is.
    public func resetConnections() { state.withLock { $0.resetRequested = true } }

    public var bytesForwarded: Int { state.withLock { $0.bytesForwarded } }
    public var connectionsAccepted: Int { state.withLock { $0.connectionsAccepted } }

    /// Stops the proxy thread and closes everything.
    public func stop() { state.withLock { $0.stopping = true } }

    private func forward(listener: Int32) {
        var pairs: [(client: Int32, server: Int32)] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            for pair in pairs { close(pair.client); close(pair.server) }
            close(listener)
        }
        while true {
            let (condition, reset, stopping) = state.withLock { s -> (LinkCondition, Bool, Bool) in
                defer { s.resetRequested = false }
                return (s.condition, s.resetRequested, s.stopping)
            }
            if stopping { return }
            if reset {
                for pair in pairs { abort(pair.client); abort(pair.server) }
                pairs.removeAll()
            }
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            if condition == .up {
                for pair in pairs {
                    fds.append(pollfd(fd: pair.client, events: Int16(POLLIN), revents: 0))
                    fds.append(pollfd(fd: pair.server, events: Int16(POLLIN), revents: 0))
                }
            }
            _ = poll(&fds, nfds_t(fds.count), 50)
            if fds[0].revents & Int16(POLLIN) != 0 {
                let client = accept(listener, nil, nil)
                if client >= 0 {
                    if condition == .down {
                        abort(client)
                    } else if let server = connectTarget() {
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
                let peer = entry.fd == pair.client ? pair.server : pair.client
                let count = read(entry.fd, &buffer, buffer.count)
                if count <= 0 || !writeAll(peer, buffer, count) {
                    close(pair.client)
                    close(pair.server)
                    closed.insert(pair.client)
                } else {
                    state.withLock { $0.bytesForwarded += count }
                }
            }
            pairs.removeAll { closed.contains($0.client) }
        }
    }

    private func connectTarget() -> Int32? { LoopbackTCP.connect(port: targetPort) }

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

    /// Closes with RST (SO_LINGER 0), as a dropped mobile link looks to the peer.
    private func abort(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
