// Reads a text file (or standard input) line by line in large chunks, without a String per line.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// A line-oriented input file read in 1 MiB chunks. Lines are handed out as byte buffers without
/// their line terminator (`\n` or `\r\n`); a last line without a terminator is handed out too.
public struct LineFile: ~Copyable {
    /// The path as given (`-` means standard input); used in error messages.
    public let path: String
    private let fd: Int32
    private let ownsDescriptor: Bool

    /// Opens `path` for reading; `-` reads standard input.
    public init(path: String) throws(DAQError) {
        self.path = path
        if path == "-" {
            fd = 0
            ownsDescriptor = false
        } else {
            let opened = open(path, O_RDONLY | O_CLOEXEC)
            guard opened >= 0 else {
                throw DAQError(.io, "cannot open: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            fd = opened
            ownsDescriptor = true
        }
    }

    deinit {
        if ownsDescriptor { close(fd) }
    }

    /// Calls `body` for every line with its 1-based line number. Errors thrown by `body` stop the scan.
    public func forEachLine<E: Error>(
        _ body: (UnsafeBufferPointer<UInt8>, Int) throws(E) -> Void
    ) throws(E) {
        let chunkSize = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var filled = 0
        var lineNumber = 0
        var atEnd = false
        while !atEnd {
            if filled == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let got = buffer.withUnsafeMutableBytes { raw -> Int in
                var n: Int
                repeat { n = read(fd, raw.baseAddress! + filled, raw.count - filled) } while n < 0 && errno == EINTR
                return n
            }
            if got <= 0 { atEnd = true } else { filled += got }
            var consumed = 0
            try buffer.withUnsafeBufferPointer { (all: UnsafeBufferPointer<UInt8>) throws(E) -> Void in
                var start = 0
                var index = 0
                while index < filled {
                    if all[index] == 0x0A {
                        var end = index
                        if end > start && all[end - 1] == 0x0D { end -= 1 }
                        lineNumber += 1
                        try body(UnsafeBufferPointer(rebasing: all[start..<end]), lineNumber)
                        start = index + 1
                    }
                    index += 1
                }
                if atEnd && start < filled {
                    var end = filled
                    if all[end - 1] == 0x0D { end -= 1 }
                    lineNumber += 1
                    try body(UnsafeBufferPointer(rebasing: all[start..<end]), lineNumber)
                    start = filled
                }
                consumed = start
            }
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    let base = raw.baseAddress!
                    memmove(base, base + consumed, filled - consumed)
                }
                filled -= consumed
            }
        }
    }

    /// The first up-to-`count` bytes of a regular file, for format detection (empty for stdin).
    public static func head(of path: String, count: Int = 4096) -> [UInt8] {
        guard path != "-" else { return [] }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress!, count) }
        return got > 0 ? Array(bytes[0..<got]) : []
    }
}
