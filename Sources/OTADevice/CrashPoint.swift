// Crash injection for the OTA's "every persisted step" tests: with DAQLINK_OTA_CRASH_AT=N in the
// environment, the process dies (_exit, no cleanup: like a power cut after the kernel accepted
// the writes) right after the N-th durable OTA step, counted across the re-executions of one
// device run (the count lives beside the update directory). Unset, it costs one branch per step.
#if canImport(Glibc)
import Glibc
#endif
import PKI

enum CrashPoint {
    private static let target: Int? = getenv("DAQLINK_OTA_CRASH_AT").flatMap { Int(String(cString: $0)) }

    /// Marks a durable step in update directory `root`; dies here if it is the chosen one.
    static func reached(_ step: String, root: String) {
        guard let target else { return }
        let path = root + "/.crash-count"
        let count = ((try? AtomicFile.read(path)).flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0) + 1
        try? AtomicFile.write(Array(String(count).utf8), to: path, mode: AtomicFile.publicMode)
        if count == target {
            let message = Array("daqlink: injected crash after OTA step \(count) (\(step))\n".utf8)
            message.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
            _exit(99)
        }
    }
}
