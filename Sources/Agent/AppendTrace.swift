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
/// uplink records every MQTT payload it publishes on the data topic there, so the bench's bare
/// publisher can send exactly the same messages. Off (nil) otherwise. One record per message:
/// - `0`, u32 length, the bytes: a coded part, verbatim;
/// - `1`, u32 header length, the header, u64 first, u64 last: a raw part, whose body is the
///   journal's framed entries first…last, byte for byte (the bench reads them back from the
///   journal and checks them against the header's checksum).
/// All little-endian. Raw parts go by reference because writing them out cost the measured
/// device CPU it does not spend without the trace: a 47 MB write (~16 ms by `perf`; before that,
/// keeping them in memory cost more than the drain itself: docs/benchmarks.md, "Uplink").
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
    /// `rawEntries`: the message is a header of `headerLength` bytes, then entries first…last as framed in the journal.
    func published(_ message: [UInt8], rawEntries: (first: UInt64, last: UInt64, headerLength: Int)?) {
        var record: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { record += $0 } }
        if let raw = rawEntries {
            append(UInt8(1))
            append(UInt32(raw.headerLength))
            record += message[0..<raw.headerLength]
            append(raw.first)
            append(raw.last)
            _ = record.withUnsafeBytes { TraceFile.writeAll(fd, $0) }
        } else {
            append(UInt8(0))
            append(UInt32(message.count))
            if record.withUnsafeBytes({ TraceFile.writeAll(fd, $0) }) { message.withUnsafeBytes { _ = TraceFile.writeAll(fd, $0) } }
        }
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
