// SIGINT/SIGTERM as a readable file descriptor (signalfd), so shutdown is just another loop event.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore
internal import CLinux

/// Blocks SIGINT and SIGTERM for the process and delivers them through a signalfd.
public final class SignalWatch {
    public let fileDescriptor: Int32

    /// Watches SIGINT and SIGTERM.
    public convenience init() throws(DAQError) { try self.init(signals: [SIGINT, SIGTERM]) }

    public init(signals: [Int32]) throws(DAQError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        guard sigprocmask(SIG_BLOCK, &mask, nil) == 0 else {
            throw DAQError(.system, "sigprocmask failed: \(String(cString: strerror(errno)))")
        }
        let fd = daqlink_signalfd(&mask)
        guard fd >= 0 else { throw DAQError(.system, "signalfd failed: \(String(cString: strerror(errno)))") }
        fileDescriptor = fd
    }

    /// The signal numbers received since the last call.
    public func drain() -> [Int32] {
        var received: [Int32] = []
        var info = signalfd_siginfo()
        while read(fileDescriptor, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            received.append(Int32(info.ssi_signo))
        }
        return received
    }

    deinit { close(fileDescriptor) }
}
