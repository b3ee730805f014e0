// Streaming reader of recorded CAN logs: feed it lines, get frames. Pure: no I/O.
import DAQCore

/// Turns the lines of a candump, ASC or TRC log into frames, one line at a time.
/// Header and comment lines update the reader's state and yield no frame.
public struct CANLogReader: Sendable {
    public let format: CANLogFormat
    /// The file name used in error messages.
    public let file: String
    // Per-format header state: ASC number base and timestamp mode, TRC version and columns.
    private var asc = VectorASCReader()
    private var trc = PCANTRCReader()

    public init(format: CANLogFormat, file: String) {
        self.format = format
        self.file = file
    }

    /// The frame on `line` (1-based `number`), nil for lines that carry no frame.
    /// Throws a malformed-input error naming file, line and field for a line it cannot read.
    public mutating func frame(fromLine line: UnsafeBufferPointer<UInt8>, number: Int) throws(DAQError) -> CANFrame? {
        switch format {
        case .candump:
            return try CandumpLine.parse(line, number: number, file: file)
        case .asc:
            return try asc.frame(fromLine: line, number: number, file: file)
        case .trc:
            return try trc.frame(fromLine: line, number: number, file: file)
        }
    }
}
