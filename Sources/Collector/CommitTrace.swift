// A hidden measurement aid for `daqctl bench uplink`: when DAQCTL_COMMIT_TRACE names a file, the
// collector appends "<device> <up to> <CLOCK_REALTIME ns>" each time it has committed (fsynced)
// a device's entries up to <up to> and is about to publish the ack. Off (nil) otherwise.
import Runtime
#if canImport(Glibc)
import Glibc
#endif

final class CommitTrace {
    private let fd: Int32

    /// The trace named by the environment, or nil.
    static func fromEnvironment() -> CommitTrace? {
        guard let value = getenv("DAQCTL_COMMIT_TRACE"), value.pointee != 0 else { return nil }
        let fd = open(value, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        return fd >= 0 ? CommitTrace(fd: fd) : nil
    }

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    func committed(device: String, upTo: UInt64) {
        let line = Array("\(device) \(upTo) \(SystemClock.realtime())\n".utf8)
        line.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
    }
}
