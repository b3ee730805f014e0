// A text file (or standard input) read line by line on demand: the caller pulls a few thousand
// lines at a time, so a cooperative loop can interleave reading with timers and other work.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// Pull-style line reader: `readLines(max:)` hands out up to `max` lines per call, without their
/// terminators (`\n` or `\r\n`), with 1-based line numbers; a last unterminated line counts too.
public final class LineStream {
    public let path: String
    private let fd: Int32
    private let ownsDescriptor: Bool
    private var buffer: [UInt8]
    private var start = 0
    private var filled = 0
    private var atEnd = false
    public private(set) var lineNumber = 0
    /// Bytes consumed so far (for progress).
    public private(set) var bytesRead: Int = 0
    /// Size of the file when known (nil for standard input).
    public let size: Int?
    /// What the file should be, for errors ("log file").
    private let contentName: String
    /// The longest line read (its terminator included); a longer one is malformed input.
    private let maxLineBytes: Int

    /// Opens `path`; `-` is standard input. `contentName` says what the file should be ("log file")
    /// in the error for a directory, which `open` accepts and `read` then fails on.
    public init(path: String, contentName: String = "text file", chunkSize: Int = 1 << 20,
                maxLineBytes: Int = 4 << 20) throws(DAQError) {
        precondition(chunkSize > 0 && maxLineBytes >= chunkSize, "a line may fill the first chunk")
        self.path = path
        self.contentName = contentName
        self.maxLineBytes = maxLineBytes
        if path == "-" {
            fd = 0
            ownsDescriptor = false
            size = nil
        } else {
            let opened = open(path, O_RDONLY | O_CLOEXEC)
            guard opened >= 0 else {
                throw DAQError(.io, "cannot open: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            var info = stat()
            let known = fstat(opened, &info) == 0
            if known && info.st_mode & S_IFMT == S_IFDIR {
                close(opened)
                throw DAQError(.io, "is a directory, not a \(contentName)", at: InputLocation(file: path))
            }
            fd = opened
            ownsDescriptor = true
            size = known ? Int(info.st_size) : nil
        }
        buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    deinit { if ownsDescriptor { close(fd) } }

    /// True once every line has been handed out.
    public var isFinished: Bool { atEnd && start == filled }

    /// Hands out up to `max` lines; `body` returns false to stop after the line it was given.
    /// Returns the number of lines handed out (0 only when finished). A failed read (EIO from a
    /// dying card or disk) throws, naming the line it stopped after: it is no end of the file.
    @discardableResult
    public func readLines(max: Int, _ body: (UnsafeBufferPointer<UInt8>, Int) throws(DAQError) -> Bool) throws(DAQError) -> Int {
        var handed = 0
        while handed < max {
            // Find the next terminator in the buffered bytes.
            var newline = -1
            buffer.withUnsafeBufferPointer { all in
                var index = start
                while index < filled {
                    if all[index] == 0x0A { newline = index; break }
                    index += 1
                }
            }
            if newline < 0 {
                if atEnd {
                    guard start < filled else { return handed }
                    newline = filled  // the last, unterminated line
                } else {
                    try refill()
                    continue
                }
            }
            var end = newline
            if end > start && buffer[end - 1] == 0x0D { end -= 1 }
            lineNumber += 1
            let lineStart = start
            start = min(newline + 1, filled)
            bytesRead += start - lineStart
            let more = try buffer.withUnsafeBufferPointer { (all) throws(DAQError) -> Bool in
                try body(UnsafeBufferPointer(rebasing: all[lineStart..<end]), lineNumber)
            }
            handed += 1
            if !more { return handed }
        }
        return handed
    }

    private func refill() throws(DAQError) {
        if start > 0 {
            buffer.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress!
                memmove(base, base + start, filled - start)
            }
            filled -= start
            start = 0
        }
        if filled == buffer.count {
            // A line longer than any log's (binary data, `/dev/zero`) is refused: the buffer grew
            // without bound looking for its end.
            guard buffer.count < maxLineBytes else {
                throw DAQError(.malformedInput, "no line end in \(maxLineBytes) bytes: is this a text \(contentName)?",
                               at: InputLocation(file: path, line: lineNumber + 1))
            }
            buffer.append(contentsOf: repeatElement(0, count: Swift.min(buffer.count, maxLineBytes - buffer.count)))
        }
        let (got, error) = buffer.withUnsafeMutableBytes { raw -> (Int, Int32) in
            var n: Int
            repeat { n = read(fd, raw.baseAddress! + filled, raw.count - filled) } while n < 0 && errno == EINTR
            return (n, n < 0 ? errno : 0)
        }
        guard got >= 0 else {
            throw DAQError(.io, "read failed after line \(lineNumber) (byte \(bytesRead + filled - start)): \(String(cString: strerror(error)))",
                           at: InputLocation(file: path, line: lineNumber + 1))
        }
        if got == 0 { atEnd = true } else { filled += got }
    }
}
