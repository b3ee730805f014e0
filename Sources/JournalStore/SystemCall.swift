// The one place errno is read and EINTR is retried; every syscall of JournalStore goes through
// here, and failures become DAQErrors naming the file (and byte offset when there is one).
import DAQCore
import Journal
internal import Glibc
internal import CLinux

/// A failed system call's errno.
struct SystemCallError: Error {
    let errno: Int32
    /// The filesystem (or its quota) has no room: the journal reports this as journal-full.
    var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT }
    var text: String { String(cString: strerror(errno)) }
}

/// Runs `call` until it does not fail with EINTR; a -1 result becomes a `SystemCallError`.
@inline(__always)
func systemCallResult<T: FixedWidthInteger>(_ call: () -> T) -> Result<T, SystemCallError> {
    while true {
        let result = call()
        if result != -1 { return .success(result) }
        let code = errno
        if code == EINTR { continue }
        return .failure(SystemCallError(errno: code))
    }
}

/// `systemCallResult` as a throwing call.
@inline(__always)
func systemCall<T: FixedWidthInteger>(_ call: () -> T) throws(SystemCallError) -> T {
    try systemCallResult(call).get()
}

extension SystemCallError {
    /// The DAQError for this failure: journal-full for ENOSPC/EDQUOT, io otherwise.
    func daqError(_ operation: String, path: String, offset: Int? = nil) -> DAQError {
        DAQError(isOutOfSpace ? .journalFull : .io, "\(operation) failed: \(text)",
                 at: InputLocation(file: path, field: offset.map { "offset \($0)" }))
    }
}

/// Thin file operations over a descriptor, each mapping its failure once.
enum FileOps {
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemCallError) -> Int32 {
        try systemCall { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// close(2) is not retried on EINTR: Linux has already released the descriptor.
    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Writes all of `bytes`, looping over short writes. On failure, `written` tells how far it got.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, written: inout Int) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            switch systemCallResult({ Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }) {
            case .success(let n): done += n
            case .failure(let error):
                written = done
                throw error
            }
        }
        written = done
    }

    /// `writeAll` of an array's bytes.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], written: inout Int) throws(SystemCallError) {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(SystemCallError) in try writeAll(fd, raw, written: &written) }
        }.get()
    }

    /// Reads up to `count` bytes at `offset` (fewer only at end of file).
    static func pread(_ fd: Int32, count: Int, at offset: Int) throws(SystemCallError) -> [UInt8] {
        var failed: SystemCallError?
        // Not zero-filled first: pread overwrites it, and only the bytes read are kept.
        let out = [UInt8](unsafeUninitializedCapacity: count) { raw, initialized in
            var got = 0
            reading: while got < count {
                switch systemCallResult({ Glibc.pread(fd, raw.baseAddress! + got, count - got, off_t(offset + got)) }) {
                case .success(let n):
                    if n == 0 { break reading }
                    got += n
                case .failure(let error):
                    failed = error
                    break reading
                }
            }
            initialized = got
        }
        if let failed { throw failed }
        return out
    }

    /// Writes all of `bytes` at `offset` (a descriptor opened without O_APPEND).
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int) throws(SystemCallError) {
        var failed: SystemCallError?
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count, failed == nil {
                switch systemCallResult({ Glibc.pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done)) }) {
                case .success(let n): done += n
                case .failure(let error): failed = error
                }
            }
        }
        if let failed { throw failed }
    }

    static func size(_ fd: Int32) throws(SystemCallError) -> Int {
        var info = stat()
        _ = try systemCall { fstat(fd, &info) }
        return Int(info.st_size)
    }

    static func truncate(_ fd: Int32, to length: Int) throws(SystemCallError) {
        _ = try systemCall { ftruncate(fd, off_t(length)) }
    }

    static func dataSync(_ fd: Int32) throws(SystemCallError) { _ = try systemCall { fdatasync(fd) } }
    static func fullSync(_ fd: Int32) throws(SystemCallError) { _ = try systemCall { fsync(fd) } }

    /// Drops the file's clean cached pages, so the next reads come from the medium (best effort).
    static func dropCachedPages(_ fd: Int32) { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }

    static func unlink(_ path: String) throws(SystemCallError) { _ = try systemCall { Glibc.unlink(path) } }

    static func rename(_ from: String, _ to: String) throws(SystemCallError) {
        _ = try systemCall { Glibc.rename(from, to) }
    }

    /// Creates `path` unless it exists; a directory it creates is synced into its parent (a
    /// power loss must not take a directory whose files were synced and acknowledged). Returns
    /// whether it created it.
    @discardableResult
    static func makeDirectory(_ path: String) throws(SystemCallError) -> Bool {
        do { _ = try systemCall { mkdir(path, 0o755) } } catch where error.errno == EEXIST { return false }
        let fd = try open(parentDirectory(of: path), O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fullSync(fd)
        return true
    }

    /// Takes the exclusive advisory lock; false when another process holds it.
    static func lockExclusive(_ fd: Int32) throws(SystemCallError) -> Bool {
        do {
            _ = try systemCall { flock(fd, LOCK_EX | LOCK_NB) }
            return true
        } catch where error.errno == EWOULDBLOCK {
            return false
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether the file system `fd` lies on keeps nothing across a power loss (tmpfs, ramfs).
    static func isVolatile(_ fd: Int32) -> Bool { daqlink_fd_on_volatile_fs(fd) == 1 }

    /// Names in a directory (without `.` and `..`).
    static func list(_ path: String) throws(SystemCallError) -> [String] {
        guard let dir = opendir(path) else { throw SystemCallError(errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The first `count` bytes of the file at `path` (fewer when it is shorter) and its size.
    static func readHead(_ path: String, count: Int) throws(SystemCallError) -> (bytes: [UInt8], size: Int) {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        let size = try size(fd)
        return (try pread(fd, count: min(count, size), at: 0), size)
    }

    /// The whole content of a file.
    static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        return try pread(fd, count: try size(fd), at: 0)
    }
}

/// Directories made durably (`FileOps.makeDirectory`) for the journal's users (the collector's
/// `<out>/<device>/…`).
public enum Directories {
    /// Creates `path` unless it exists, synced into its parent; returns whether it created it.
    @discardableResult
    public static func create(_ path: String) throws(DAQError) -> Bool {
        do { return try FileOps.makeDirectory(path) } catch { throw error.daqError("create directory", path: path) }
    }
}
