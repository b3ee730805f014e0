// The epoch of the stream a device's first copy holds (`<out>/<device>/`), recorded beside its
// journal. A copy beside the first is named after its epoch (`epoch-<E>/`); the first copy could
// hold any of the device's streams, and a copy of one segment whose header is damaged past repair
// (more than one bit, no other segment) has no other source of it.
import DAQCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum FirstStreamEpoch {
    static let fileName = "stream-epoch"

    /// The recorded epoch in `directory` (`<out>/<device>`), nil if none is (a copy from before
    /// it was recorded, or an unreadable record).
    static func read(in directory: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: "\(directory)/\(fileName)", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { UInt64($0) }
    }

    /// Records `epoch` in `directory`, durably (a new file renamed over the old, both synced).
    static func record(_ epoch: UInt64, in directory: String) throws(DAQError) {
        let path = "\(directory)/\(fileName)"
        let temporary = path + ".new"
        func failed(_ what: String) -> DAQError {
            DAQError(.io, "cannot \(what): \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failed("create \(temporary)") }
        let text = Array("\(epoch)\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == text.count, fsync(fd) == 0 else {
            close(fd)
            unlink(temporary)
            throw failed("write \(temporary)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw failed("rename \(temporary)") }
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw failed("open \(directory)") }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw failed("sync \(directory)") }
    }
}
