// A hidden measurement aid for `daqctl bench uplink`: when DAQLINK_APPEND_TRACE names a file,
// the run remembers, for every journal entry it appends, the CLOCK_REALTIME (ns) of the append —
// in a replay that is the moment the frame that completed the record was ingested — and writes
// "<sequence> <realtime ns>" lines to that file when the run ends. Off (nil) otherwise.
import Runtime
#if canImport(Glibc)
import Glibc
#endif

final class AppendTrace {
    private let path: String
    private var lines: [UInt8] = []

    /// The trace named by the environment, or nil.
    static func fromEnvironment() -> AppendTrace? {
        guard let value = getenv("DAQLINK_APPEND_TRACE"), value.pointee != 0 else { return nil }
        return AppendTrace(path: String(cString: value))
    }

    private init(path: String) {
        self.path = path
        lines.reserveCapacity(1 << 20)
    }

    func appended(_ sequence: UInt64) {
        lines.append(contentsOf: "\(sequence) \(SystemClock.realtime())\n".utf8)
    }

    /// Writes the lines (best effort: a measurement aid must not fail the run).
    func write() { TraceFile.write(lines, to: path) }
}

/// A hidden measurement aid for `daqctl bench uplink`: when DAQLINK_WIRE_TRACE names a file, the
/// uplink writes every MQTT payload it publishes on the data topic to that file (each as a u32
/// little-endian length, then the bytes), so the bench's bare publisher can send exactly the same
/// messages. Off (nil) otherwise. Each payload is written as it is published (one writev into
/// the page cache, no fsync): keeping them in memory instead cost the measured drain more CPU
/// than the drain itself (a growing array copied 47 MB twice over and faulted in fresh pages
/// for every message; docs/benchmarks.md, "The bench's own tax").
final class WireTrace {
    private let fd: Int32

    static func fromEnvironment() -> WireTrace? {
        guard let value = getenv("DAQLINK_WIRE_TRACE"), value.pointee != 0 else { return nil }
        let fd = open(value, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        return fd >= 0 ? WireTrace(fd: fd) : nil
    }

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Best effort: a measurement aid must not fail the run (a short trace fails the bench instead).
    func published(_ message: [UInt8]) {
        var length = UInt32(message.count).littleEndian
        withUnsafeMutableBytes(of: &length) { prefix in
            message.withUnsafeBytes { body in
                var parts = [iovec(iov_base: prefix.baseAddress, iov_len: 4),
                             iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress), iov_len: body.count)]
                var left = 4 + body.count
                while left > 0 {
                    let n = writev(fd, &parts, Int32(parts.count))
                    if n <= 0 { return }
                    left -= n
                    // Rare (a short write): drop what went out and go on with the rest.
                    var done = n
                    for index in parts.indices {
                        let take = min(done, parts[index].iov_len)
                        parts[index].iov_base = parts[index].iov_base.map { $0 + take }
                        parts[index].iov_len -= take
                        done -= take
                    }
                }
            }
        }
    }
}

/// Best-effort whole-file writes for the traces.
enum TraceFile {
    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
