// Crash-safe file replacement with the final permission bits from the moment of creation, plus the
// directory lock that keeps two `daqctl pki` runs from losing each other's index updates.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore

public enum AtomicFile {
    /// Private keys: owner read/write only, from creation on (a key never exists world-readable).
    public static let privateKeyMode: mode_t = 0o600
    /// Certificates, CRL, index and broker configuration: readable by the broker and clients.
    public static let publicMode: mode_t = 0o644

    /// Writes `bytes` to a temporary file created with `mode`, fsyncs it, renames it over `path`,
    /// then fsyncs the directory so the rename itself survives a crash.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws {
        let directory = parent(of: path)
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw posixError("cannot create", temporary) }
        var renamed = false
        defer { if !renamed { unlink(temporary) } }
        do {
            // The umask may have narrowed `mode`; set it exactly (never wider than asked) before any byte lands.
            guard fchmod(fd, mode) == 0 else { throw posixError("cannot set mode of", temporary) }
            try writeAll(fd, bytes, path: temporary)
            guard fsync(fd) == 0 else { throw posixError("cannot fsync", temporary) }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw posixError("cannot close", temporary) }
        guard rename(temporary, path) == 0 else { throw posixError("cannot rename into place", path) }
        renamed = true
        syncDirectory(directory)
    }

    /// Reads a whole file.
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("cannot open", path) }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw posixError("cannot read", path) }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }

    /// True when something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// Creates `path` (one level) with `mode` unless it already is a directory.
    public static func makeDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode) == 0 || errno == EEXIST { return }
        throw posixError("cannot create directory", path)
    }

    /// Runs `body` holding an exclusive flock on `lockPath` (released when the descriptor closes).
    static func withLock<T>(_ lockPath: String, _ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, privateKeyMode)
        guard fd >= 0 else { throw posixError("cannot open lock", lockPath) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw posixError("cannot lock", lockPath) }
        }
        return try body()
    }

    public static func parent(of path: String) -> String { parentDirectory(of: path) }

    public static func posixError(_ action: String, _ path: String) -> DAQError {
        let reason = String(cString: strerror(errno))
        return DAQError(.io, "\(action): \(reason)", at: InputLocation(file: path))
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw posixError("cannot write", path) }
            offset += written
        }
    }

    // Best effort: a failed directory fsync leaves the data safe, only the rename's durability unsure.
    public static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
