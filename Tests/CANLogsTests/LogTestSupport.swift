// Feeds text to a CANLogReader line by line, as LineStream would, for the reader tests.
import DAQCore
@testable import CANLogs

func readLog(_ format: CANLogFormat, _ text: String, file: String = "t.log") throws(DAQError) -> [CANFrame] {
    var reader = CANLogReader(format: format, file: file)
    var frames: [CANFrame] = []
    var number = 0
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        number += 1
        let bytes = Array(line.utf8)
        let frame = try bytes.withUnsafeBufferPointer { (buffer) throws(DAQError) -> CANFrame? in
            try reader.frame(fromLine: buffer, number: number)
        }
        if let frame { frames.append(frame) }
    }
    return frames
}

/// The error `body` throws (nil when it throws none).
func thrownError(_ body: () throws(DAQError) -> Void) -> DAQError? {
    do { try body() } catch { return error }
    return nil
}
