// Frames from a recorded log, pulled a chunk at a time (replay). The format comes from the file
// name, else from the first non-blank line (standard input).
import CANLogs
import DAQCore
import SystemIO

/// A recorded log as a pull source of frames.
public final class LogFrameSource {
    private let stream: LineStream
    private var reader: CANLogReader?
    private let path: String
    /// Malformed lines skipped (only with `lenient`).
    public private(set) var malformedLines = 0
    public let lenient: Bool

    public init(path: String, format: CANLogFormat? = nil, lenient: Bool = false) throws(DAQError) {
        self.path = path
        self.lenient = lenient
        stream = try LineStream(path: path)
        if let format {
            reader = CANLogReader(format: format, file: path)
        } else if let byName = CANLogFormat.detect(fileName: path, head: []) {
            reader = CANLogReader(format: byName, file: path)
        }
    }

    public var isFinished: Bool { stream.isFinished }
    /// Fraction of the file read, when its size is known.
    public var progress: Double? { stream.size.map { $0 == 0 ? 1 : Double(stream.bytesRead) / Double($0) } }

    /// Reads up to `maxLines` lines, handing each frame to `body`; `body` returns false to stop
    /// early (the frame it was given is consumed). Returns false once the log is exhausted.
    public func read(maxLines: Int, _ body: (CANFrame) throws(DAQError) -> Bool) throws(DAQError) -> Bool {
        let handed = try stream.readLines(max: maxLines) { (line, number) throws(DAQError) -> Bool in
            if reader == nil {
                guard line.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { return true }
                guard let format = CANLogFormat.sniff(line) else {
                    throw DAQError(.malformedInput, "cannot tell the log format from this line",
                                   at: InputLocation(file: path, line: number, field: "format"))
                }
                reader = CANLogReader(format: format, file: path)
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
            return try body(frame)
        }
        return handed > 0 && !stream.isFinished
    }
}
