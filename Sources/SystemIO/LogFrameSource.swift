// A recorded CAN log as a stream of frames, pulled a chunk at a time: the one place that turns a
// log file (or standard input) into frames for replay, `daqctl frames`, `decode` and `replay`.
// The format comes from --format, else the file name, else the first non-blank line.
import CANLogs
import DAQCore

/// A recorded log as a pull source of frames.
public final class LogFrameSource {
    private let stream: LineStream
    private var reader: CANLogReader?
    private let path: String
    /// Lines that could not be read and were skipped (only with `lenient`).
    public private(set) var malformedLines = 0
    public let lenient: Bool
    /// The caller's option that forces the format, named in the hint when the first line does not tell.
    private let formatOption: String?

    /// Opens `path` (`-` = standard input). `lenient` skips malformed lines (counted) instead of
    /// throwing. `formatOption` is the command's option that forces the format (`--format`), nil
    /// when it has none: then the hint for an unrecognised log names the file extensions instead.
    public init(path: String, format: CANLogFormat? = nil, lenient: Bool = false,
                formatOption: String? = nil) throws(DAQError) {
        self.path = path
        self.lenient = lenient
        self.formatOption = formatOption
        stream = try LineStream(path: path, contentName: "log file")
        if let format {
            reader = CANLogReader(format: format, file: path)
        } else if let byName = CANLogFormat.detect(fileName: path, head: []) {
            reader = CANLogReader(format: byName, file: path)
            formatFromName = true
        }
    }

    /// The format came from the file name: the first line may still tell another one.
    private var formatFromName = false
    /// Frames handed out; whether the first non-blank line was read, and was none of an ASC log's
    /// when the format is ASC.
    private var framesRead = 0
    private var firstLineSeen = false
    private var firstLineUnrecognised = false

    /// The log's format, once known (from the option, the name, or the first line read).
    public var format: CANLogFormat? { reader?.format }
    public var isFinished: Bool { stream.isFinished }
    /// Fraction of the file read, when its size is known.
    public var progress: Double? { stream.size.map { $0 == 0 ? 1 : Double(stream.bytesRead) / Double($0) } }

    /// Reads up to `maxLines` lines, handing each frame to `body`; `body` returns false to stop
    /// early (the frame it was given is consumed). Returns false once the log is exhausted.
    public func read(maxLines: Int, _ body: (CANFrame) throws(DAQError) -> Bool) throws(DAQError) -> Bool {
        let handed = try stream.readLines(max: maxLines) { (rawLine, number) throws(DAQError) -> Bool in
            var line = rawLine
            // A UTF-8 byte order mark (Windows tools) is not part of the first line's text.
            if number == 1, line.count >= 3, line[0] == 0xEF, line[1] == 0xBB, line[2] == 0xBF {
                line = UnsafeBufferPointer(rebasing: line[3...])
            }
            let blank = !line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D })
            if formatFromName, !blank {
                // The first line decides when it names another format (a candump log saved as
                // .asc read as an empty ASC log: the ASC reader passes over lines it does not know).
                formatFromName = false
                if let sniffed = CANLogFormat.sniff(line), sniffed != reader?.format {
                    reader = CANLogReader(format: sniffed, file: path)
                }
            }
            if reader == nil {
                // No extension to go by (standard input, say): the first non-blank line decides.
                guard line.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { return true }
                guard let format = CANLogFormat.sniff(line) else {
                    let hint = formatOption.map { "use \($0) candump|asc|trc" }
                        ?? "name the file *.log (candump -l), *.asc or *.trc"
                    throw DAQError(.malformedInput, "cannot tell the log format from this line; \(hint)",
                                   at: InputLocation(file: path, line: number, field: "format"))
                }
                reader = CANLogReader(format: format, file: path)
            }
            if !firstLineSeen, !blank {
                // Whatever told the format (--format, the name, this line): a file whose first line
                // is none of an ASC log's is named when it ends with no frame (its other lines may
                // all start with a number).
                firstLineSeen = true
                if reader?.format == .asc, CANLogFormat.sniff(line) != .asc { firstLineUnrecognised = true }
            }
            let frame: CANFrame?
            do throws(DAQError) {
                frame = try reader!.frame(fromLine: line, number: number)
            } catch {
                guard lenient, error.code == .malformedInput else { throw error }
                malformedLines += 1
                return true
            }
            guard let frame else { return true }
            framesRead += 1
            return try body(frame)
        }
        if stream.isFinished, framesRead == 0, firstLineUnrecognised, reader?.format == .asc {
            // A DBC, a README or binary data named .asc read as an empty log, exit 0.
            throw DAQError(.malformedInput, "no frames, and its first line is none of an ASC log's (date, base, //, "
                           + "Begin Triggerblock, an event): is it an ASC file?", at: InputLocation(file: path, line: 1, field: "format"))
        }
        return handed > 0 && !stream.isFinished
    }

    /// Every remaining frame, in order.
    public func forEachFrame(_ body: (CANFrame) throws(DAQError) -> Void) throws(DAQError) {
        while try read(maxLines: 8192, { (frame) throws(DAQError) -> Bool in try body(frame); return true }) {}
    }
}
