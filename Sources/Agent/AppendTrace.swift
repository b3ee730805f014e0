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
/// messages. Off (nil) otherwise. Each payload is written as it is published (into the page
/// cache, no fsync): keeping them in memory instead cost the measured drain more CPU
/// than the drain itself (a growing array copied 47 MB twice over and faulted in fresh pages
/// for every message; docs/benchmarks.md, "Uplink", first of the current figures).
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
        let written = withUnsafeBytes(of: UInt32(message.count).littleEndian) { TraceFile.writeAll(fd, $0) }
        if written { message.withUnsafeBytes { _ = TraceFile.writeAll(fd, $0) } }
    }
}

/// Best-effort writes for the traces.
enum TraceFile {
    /// Writes `bytes` to a new file at `path`.
    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { writeAll(fd, $0) }
    }

    /// Writes all of `raw` to `fd` (going on after short writes); false if a write failed.
    static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < raw.count {
            let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}
