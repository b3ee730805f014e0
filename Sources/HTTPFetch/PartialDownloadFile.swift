// A download's file on disk and its validator sidecar (`FILE.validator`): the bytes in FILE always
// belong to the entity the sidecar names. Starting over removes the sidecar before truncating and
// writes the new one (atomically) before the first byte, so a crash at any point leaves either a
// consistent pair or a file without a sidecar, which is never resumed.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

final class PartialDownloadFile {
    let path: String
    var sidecarPath: String { path + ".validator" }
    private var fd: Int32
    /// Bytes in the file (the write position: writes only ever extend it).
    private(set) var length: Int
    /// The sidecar's validator, nil when there is none (or it is unusable).
    private(set) var validator: String?

    /// Opens (creates) `path` and reads its sidecar. Throws the errno and what failed.
    init(path: String) throws(FileFailure) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileFailure(errno: errno, what: "open \(path)") }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let failure = FileFailure(errno: errno, what: "fstat \(path)")
            close(fd)
            throw failure
        }
        length = Int(status.st_size)
        validator = Self.readValidator(path + ".validator")
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Starts over: forget the old validator, truncate, then remember `newValidator` (if any).
    func restart(validator newValidator: String?) throws(FileFailure) {
        if unlink(sidecarPath) == 0 {
            syncDirectory() // durable before any new byte, even when no new sidecar follows
        } else if errno != ENOENT {
            throw FileFailure(errno: errno, what: "unlink \(sidecarPath)")
        }
        validator = nil
        guard ftruncate(fd, 0) == 0 else { throw FileFailure(errno: errno, what: "truncate \(path)") }
        length = 0
        try sync()
        if let newValidator {
            try writeSidecar(newValidator)
            validator = newValidator
        }
    }

    /// Appends `bytes` at the end of the file.
    func append(_ bytes: UnsafeRawBufferPointer) throws(FileFailure) {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(length + written))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw FileFailure(errno: n < 0 ? errno : EIO, what: "write \(path) at \(length + written)") }
            written += n
        }
        length += written
    }

    func sync() throws(FileFailure) {
        guard fsync(fd) == 0 else { throw FileFailure(errno: errno, what: "fsync \(path)") }
    }

    /// Removes the file and its sidecar (a partial file that must never be resumed).
    func discard() {
        unlink(sidecarPath)
        unlink(path)
        length = 0
        validator = nil
    }

    private func writeSidecar(_ value: String) throws(FileFailure) {
        let temporary = sidecarPath + ".tmp"
        let out = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw FileFailure(errno: errno, what: "open \(temporary)") }
        let text = Array((value + "\n").utf8)
        let written = text.withUnsafeBytes { write(out, $0.baseAddress, $0.count) }
        let synced = fsync(out) == 0
        close(out)
        guard written == text.count, synced else { throw FileFailure(errno: errno, what: "write \(temporary)") }
        guard rename(temporary, sidecarPath) == 0 else { throw FileFailure(errno: errno, what: "rename \(temporary)") }
        syncDirectory()
    }

    private func syncDirectory() {
        let directory = parentDirectory(of: path)
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    private static func readValidator(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let value = String(decoding: buffer[..<count], as: UTF8.self).trimmingWhitespace()
        return ResumeRules.isSafeValidator(value) ? value : nil
    }
}

/// A failed file operation: errno and what was being done (naming the file).
struct FileFailure: Error {
    var errno: Int32
    var what: String

    var message: String { "\(what): \(String(cString: strerror(errno)))" }
}
