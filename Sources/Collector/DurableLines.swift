// Append-only JSON-lines files at the collector (OTA history, security events): each line is
// written with one write(2) in O_APPEND mode and fsynced before the caller goes on.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

enum DurableLines {
    /// Appends `line` (which ends with a line feed) to `path`, creating the file, and syncs it.
    static func append(_ line: [UInt8], to path: String) throws(DAQError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DAQError(.io, "cannot open: \(String(cString: strerror(errno)))", at: InputLocation(file: path)) }
        defer { close(fd) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count, fsync(fd) == 0 else {
            throw DAQError(.io, "cannot append: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
    }
}
