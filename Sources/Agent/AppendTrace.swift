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
/// uplink keeps every MQTT payload it publishes on the data topic and writes them to that file
/// when it stops (each as a u32 little-endian length, then the bytes), so the bench's bare
/// publisher can send exactly the same messages. Off (nil) otherwise; kept in memory until the
/// end so the measured drain does no extra I/O.
final class WireTrace {
    private let path: String
    private var bytes: [UInt8] = []

    static func fromEnvironment() -> WireTrace? {
        guard let value = getenv("DAQLINK_WIRE_TRACE"), value.pointee != 0 else { return nil }
        return WireTrace(path: String(cString: value))
    }

    private init(path: String) { self.path = path }

    func published(_ message: [UInt8]) {
        withUnsafeBytes(of: UInt32(message.count).littleEndian) { bytes += $0 }
        bytes += message
    }

    func write() { TraceFile.write(bytes, to: path) }
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
