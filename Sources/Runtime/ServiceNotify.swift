// systemd's service notification protocol (sd_notify(3)), spoken by hand: one datagram per
// message to the AF_UNIX socket in $NOTIFY_SOCKET. With `WatchdogSec=` in the unit, systemd sets
// $WATCHDOG_USEC and kills a service that stops sending "WATCHDOG=1" for that long; the pings
// come from the cooperative loop, so a loop that hangs (a deadlocked trial firmware) stops them,
// systemd restarts the service, and `daqlink boot` counts the trial's attempt.
#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's notification socket, when there is one.
public final class ServiceNotify {
    private let fd: Int32
    private var address: sockaddr_un
    private let length: socklen_t
    /// Half the watchdog timeout (ns), when the unit has one for this process.
    public let pingInterval: Int64?

    /// Reads $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace) and $WATCHDOG_USEC
    /// (honoured only when $WATCHDOG_PID is unset or this process); nil without a socket.
    public convenience init?() {
        self.init(environment: { name in getenv(name).map { String(cString: $0) } })
    }

    /// As `init()`, with the variables from `environment` (tests).
    public init?(environment: (String) -> String?) {
        guard let path = environment("NOTIFY_SOCKET"), !path.isEmpty, path.utf8.count < 108 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
            if bytes.first == UInt8(ascii: "@") { buffer[0] = 0 }  // abstract namespace
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.address = address
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let forUs = environment("WATCHDOG_PID").map { pid_t($0) == getpid() } ?? true
        if forUs, let text = environment("WATCHDOG_USEC"), let usec = Int64(text), usec > 0 {
            pingInterval = usec * 1_000 / 2
        } else {
            pingInterval = nil
        }
    }

    deinit { close(fd) }

    /// Sends one message ("READY=1", "WATCHDOG=1", "STATUS=…", "STOPPING=1"); best effort, and
    /// never waits: a receiver that does not read (its queue holds 10 datagrams) held the loop,
    /// and with it acquisition, found with a test socket read only at the end.
    public func send(_ message: String) {
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), socketAddress, length) }
            }
        }
    }

    private var pingTimer: EventLoop.TimerID?

    /// Pings the watchdog from `loop` every `pingInterval` (nothing without a watchdog) until
    /// `stopping(on:)`.
    public func keepAlive(on loop: EventLoop) {
        guard let interval = pingInterval else { return }
        send("WATCHDOG=1")
        pingTimer = loop.schedule(at: loop.clock.now() + interval) { [weak self, unowned loop] in self?.keepAlive(on: loop) }
    }

    /// The service is stopping: no more pings (the loop may end), and systemd is told.
    public func stopping(on loop: EventLoop) {
        if let pingTimer { loop.cancel(pingTimer) }
        pingTimer = nil
        send("STOPPING=1")
    }
}
