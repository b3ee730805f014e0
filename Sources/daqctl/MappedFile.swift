// A file's contents mapped read-only for the length of one call (`daqctl inspect`).
import DAQCore
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

enum MappedFile {
    /// Calls `body` with the contents of `path` mapped read-only; errors say "cannot read: <the
    /// system's reason>", naming the path.
    static func withContents<R>(of path: String, _ body: (UnsafeRawBufferPointer) throws(DAQError) -> R) throws(DAQError) -> R {
        func failure(_ code: Int32) -> DAQError {
            DAQError(.io, "cannot read: \(String(cString: strerror(code)))", at: InputLocation(file: path))
        }
        if FileProblem.isDirectory(path) { throw DAQError(.io, "cannot read: \(FileProblem.directory)", at: InputLocation(file: path)) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(errno) }
        // A pipe or a FIFO (`… | daqctl inspect /dev/stdin`) has no size to map: read it whole.
        guard info.st_mode & S_IFMT == S_IFREG else {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count >= 0 else { throw failure(errno) }
                if count == 0 { break }
                bytes += chunk[..<count]
            }
            return try bytes.withUnsafeBytes { raw in Result { () throws(DAQError) in try body(raw) } }.get()
        }
        let length = Int(info.st_size)
        guard length > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        guard let base = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { throw failure(errno) }
        defer { munmap(base, length) }
        return try body(UnsafeRawBufferPointer(start: base, count: length))
    }
}
