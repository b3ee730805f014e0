// `daqctl frames LOG`: every frame of a candump, ASC or TRC log, printed as candump `-l` text.
import ArgumentParser
import CANLogs
import DAQCore
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

struct FramesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frames",
        abstract: "Print every frame of a recorded CAN log as candump -l text.",
        discussion: """
            Prints the frames of LOG in order, one per line, as candump -l writes them:
              (SECONDS.MICROSECONDS) IFACE ID#DATA
            ID: 3 hex digits (11-bit) or 8 (29-bit). CAN FD: ID##F then the data, where
            F is the flags digit (1 = BRS, 2 = ESI). Remote request: ID#R (then the DLC
            when it is not 0). Error frame: the id with the SocketCAN error flag, e.g.
            20000080#0000000000000000 for a bare error frame.

            Formats, by extension, else sniffed from the first line (--format forces):
              candump  can-utils candump -l (.log); IFACE as logged
              asc      Vector ASCII (.asc): hex/dec base, absolute/relative times,
                       classic, CAN FD, remote and error frames; channel N -> can<N-1>
              trc      PEAK PCAN trace (.trc) 1.0, 1.1, 1.2, 1.3, 2.0, 2.1;
                       bus N -> can<N-1>, can0 when the version has no bus column

            Timestamps are the log's own: candump and ASC seconds as written (ASC
            "timestamps relative" offsets are summed, as Vector defines them); TRC
            millisecond offsets added to $STARTTIME from version 1.1 on.

            A line that cannot be read stops the command with a non-zero status and
            FILE:LINE [FIELD]: MESSAGE on stderr. --lenient skips such lines instead
            and prints how many it skipped.

            Examples:
              daqctl frames drive.asc
              daqctl frames candump-2024-01-01_120000.log | grep ' 7E8#'
              cat trace.trc | daqctl frames -
              daqctl frames --format asc --lenient - < export.txt
            """
    )

    @Argument(help: "The log file to read, or - for standard input.")
    var log: String

    @Option(help: "Read the log as this format instead of detecting it (candump, asc, trc).")
    var format: CANLogFormat?

    @Flag(help: "Skip lines that cannot be read instead of stopping; print their count to stderr.")
    var lenient = false

    func run() throws {
        var output = FrameOutput()
        var skipped = 0
        do {
            let source = try LogFrameSource(path: log, format: format, lenient: lenient, formatOption: "--format")
            do {
                try source.forEachFrame { frame in output.append(frame) }
            } catch {
                skipped = source.malformedLines
                throw error
            }
            skipped = source.malformedLines
        } catch {
            output.flush()
            FrameOutput.writeError("\(error)\n")
            throw ExitCode(1)
        }
        output.flush()
        if skipped > 0 {
            FrameOutput.writeError("daqctl frames: skipped \(skipped) line\(skipped == 1 ? "" : "s") that could not be read\n")
        }
    }
}

extension CANLogFormat: ExpressibleByArgument {}

/// Standard output through one large buffer: a frame is a few dozen bytes, a syscall per frame
/// would dominate the run time on million-frame logs.
private struct FrameOutput {
    private var buffer: [UInt8] = []
    private static let flushThreshold = 1 << 20

    init() { buffer.reserveCapacity(Self.flushThreshold + 256) }

    mutating func append(_ frame: CANFrame) {
        buffer.append(contentsOf: frame.candumpLine.utf8)
        buffer.append(0x0A)
        if buffer.count >= Self.flushThreshold { flush() }
    }

    mutating func flush() {
        buffer.withUnsafeBytes { Self.writeAll(1, $0) }
        buffer.removeAll(keepingCapacity: true)
    }

    static func writeError(_ text: String) {
        var text = text
        text.withUTF8 { writeAll(2, UnsafeRawBufferPointer($0)) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return   // a closed pipe (| head): nothing more can be delivered
            }
            offset += written
        }
    }
}
