// Where the CLIs take a recorded log (`daqctl frames`, `daqctl decode`, `daqlink run --source
// replay:`): a directory is refused by name, the hint for an unknown format names only options the
// command has, and a truncated ASC line stops the run (or, with --lenient, is skipped and counted).
import Foundation
import SystemIO
import Testing
import TestSupport
import DAQCore

@Suite struct LogInputCommandTests {
    private static let daqctl = PackagePaths.executable("daqctl").path
    private static let daqlink = PackagePaths.executable("daqlink").path
    private static let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
    private static let experiment = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path

    /// A read that fails (EIO from a dying SD card; /proc/self/mem at address 0 fails so) is an
    /// error naming where it stopped: it used to end the log there, a short replay with rc 0.
    @Test func aFailedReadIsNotTheEndOfTheLog() throws {
        let stream = try LineStream(path: "/proc/self/mem", contentName: "log file")
        #expect {
            try stream.readLines(max: 10) { _, _ in true }
        } throws: { error in
            (error as? DAQError)?.description == "/proc/self/mem:1: read failed after line 0 (byte 0): Input/output error"
        }
    }

    /// A line with no end (binary data, `/dev/zero`) is refused once it passes the longest line
    /// read: the buffer grew until memory ran out. Lines up to that length still read whole.
    @Test func aLineWithNoEndIsRefused() throws {
        let work = try PackagePaths.temporaryDirectory("long-line")
        let file = work.appendingPathComponent("long.log")
        try Data((String(repeating: "a", count: 63) + "\n" + String(repeating: "b", count: 200)).utf8).write(to: file)
        let stream = try LineStream(path: file.path, contentName: "log file", chunkSize: 16, maxLineBytes: 64)
        var lines: [Int] = []
        #expect {
            try stream.readLines(max: 10) { line, _ in lines.append(line.count); return true }
        } throws: { error in
            (error as? DAQError)?.description == "\(file.path):2: no line end in 64 bytes: is this a text log file?"
        }
        #expect(lines == [63])
        let zero = try runProcess(Self.daqctl, ["frames", "--format", "candump", "/dev/zero"])
        #expect(zero.status == 1 && zero.stderr == "/dev/zero:1: no line end in 4194304 bytes: is this a text log file?\n", "\(zero.stderr)")
    }

    /// `daqctl replay` names a missing log before it opens any bus (it used to say the kernel has
    /// no CAN support, here, and nothing of the log).
    @Test func replayNamesAMissingLogFirst() throws {
        let run = try runProcess(Self.daqctl, ["replay", "--to", "vcan0", "/nonexistent/none.log"])
        #expect(run.status != 0 && run.stderr.contains("/nonexistent/none.log: cannot open: No such file or directory"), "\(run.stderr)")
    }

    // `open(2)` accepts a directory and `read(2)` then fails with EISDIR, which used to read as an
    // empty log: rc 0, "0 frames decoded", "journal: 0 bytes".
    /// A log saved under another format's extension: the first line decides when it names a
    /// format (a candump log named .asc read as an empty ASC log), and a file that is no log at
    /// all under .asc is named (a DBC named .asc gave no frames and exit 0).
    @Test func theFirstLineDecidesOverTheExtension() throws {
        let work = try PackagePaths.temporaryDirectory("log-extension")
        let candump = "(1700000000.000001) can0 123#DEADBEEF\n(1700000000.000002) can0 124#00\n"
        let misnamed = work.appendingPathComponent("c.asc")
        try candump.write(to: misnamed, atomically: true, encoding: .utf8)
        let frames = try runProcess(Self.daqctl, ["frames", misnamed.path])
        #expect(frames.status == 0 && frames.stdout == candump, "\(frames.stdout)\(frames.stderr)")

        let notALog = work.appendingPathComponent("engine.asc")
        try FileManager.default.copyItem(atPath: Self.dbc, toPath: notALog.path)
        let refused = try runProcess(Self.daqctl, ["frames", notALog.path])
        #expect(refused.status == 1 && refused.stderr.contains("engine.asc:1 [format]: no frames, and its first line is none of an ASC log's"),
                "\(refused.status) \(refused.stderr)")
    }

    /// `--format asc` on a file that is no ASC log is refused (it printed no frame and exited 0),
    /// whether its lines start with words or with numbers.
    @Test func aFileThatIsNoASCLogIsRefusedUnderFormatASC() throws {
        let words = try runProcess(Self.daqctl, ["frames", "--format", "asc", "-"], stdin: Data("hello\nworld\n".utf8))
        #expect(words.status == 1 && words.stderr.contains("-:1 [format]: no frames, and its first line is none of an ASC log's"),
                "\(words.status) \(words.stderr)")
        // An ASC log with no frame at all, from standard input: no error (its first line is ASC).
        let empty = try runProcess(Self.daqctl, ["frames", "-"], stdin: Data("date Mon Jan 15 10:00:00.000 2024\n0.000000 Start of measurement\nEnd TriggerBlock\n".utf8))
        #expect(empty.status == 0 && empty.stdout.isEmpty, "\(empty.status) \(empty.stderr)")
        let numbers = try runProcess(Self.daqctl, ["frames", "--format", "asc", "-"], stdin: Data("1984 was a year\n2001 came after\n".utf8))
        #expect(numbers.status == 1 && numbers.stderr.contains("-:1 [format]: no frames, and its first line is none of an ASC log's"),
                "\(numbers.status) \(numbers.stderr)")
        #expect(numbers.stdout.isEmpty)
        // A CRLF log's blank lines stay blank (the line reader drops the carriage return).
        let crlf = "date Mon Jan 15 10:00:00.000 2024\r\n\r\nbase hex timestamps absolute\r\n\r\n   1.0 1  123 Rx d 1 01\r\nEnd TriggerBlock\r\n"
        let read = try runProcess(Self.daqctl, ["frames", "--format", "asc", "-"], stdin: Data(crlf.utf8))
        #expect(read.status == 0 && read.stdout == "(1.000000) can0 123#01\n", "\(read.stderr)")
    }

    @Test func aDirectoryIsNotALogFile() throws {
        let dir = try PackagePaths.temporaryDirectory("log-dir")
        #expect {
            _ = try LogFrameSource(path: dir.path)
        } throws: { error in
            (error as? DAQError)?.description == "\(dir.path): is a directory, not a log file"
        }
        let frames = try runProcess(Self.daqctl, ["frames", dir.path])
        #expect(frames.status != 0)
        #expect(frames.stderr == "\(dir.path): is a directory, not a log file\n")

        let decode = try runProcess(Self.daqctl, ["decode", "--dbc", Self.dbc, dir.path])
        #expect(decode.status != 0)
        #expect(decode.stderr.contains("\(dir.path): is a directory, not a log file"))
        #expect(!decode.stderr.contains("frames decoded"))
        // A DBC without a message decodes nothing: said, not "0 frames decoded" and exit 0.
        let empty = dir.appendingPathComponent("empty.dbc")
        try Data("VERSION \"\"\n".utf8).write(to: empty)
        let none = try runProcess(Self.daqctl, ["decode", "--dbc", empty.path, PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path])
        #expect(none.status == 1 && none.stderr.contains("\(empty.path): the DBC has no messages to decode with"), "\(none.stderr)")

        let run = try runProcess(Self.daqlink, ["run", "--experiment", Self.experiment, "--source", "replay:\(dir.path)",
                                                "--speed", "max", "--journal", dir.appendingPathComponent("journal").path,
                                                "--quiet"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("\(dir.path): is a directory, not a log file"))
    }

    // `daqlink run` has no --format: its hint names the file extensions the format is taken from.
    @Test func daqlinkRunsHintNamesNoOptionItLacks() throws {
        let dir = try PackagePaths.temporaryDirectory("log-hint")
        let run = try runProcess(Self.daqlink, ["run", "--experiment", Self.experiment, "--source", "replay:\(Self.dbc)",
                                                "--speed", "max", "--journal", dir.appendingPathComponent("journal").path,
                                                "--quiet"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("\(Self.dbc):1 [format]: cannot tell the log format from this line; "
                                    + "name the file *.log (candump -l), *.asc or *.trc"))
        #expect(!run.stderr.contains("--format"))
    }

    // `daqctl frames` and `decode` have --format, and their hint says so.
    @Test(arguments: [["frames", "-"], ["decode", "--dbc", dbc, "-"]])
    func daqctlsHintNamesItsFormatOption(arguments: [String]) throws {
        let result = try runProcess(Self.daqctl, arguments, stdin: Data("hello\n".utf8))
        #expect(result.status != 0)
        #expect(result.stderr.contains("-:1 [format]: cannot tell the log format from this line; use --format candump|asc|trc"))
    }

    @Test func aTruncatedASCLineStopsTheRunUnlessLenient() throws {
        let text = "base hex timestamps absolute\n   1.0 1  123 Rx d 1 AA\n2.5010 2   C8\n   3.0 1  124 Rx d 1 FF\n"
        let strict = try runProcess(Self.daqctl, ["frames", "--format", "asc", "-"], stdin: Data(text.utf8))
        #expect(strict.status != 0)
        #expect(strict.stderr == "-:3 [direction]: the line ends after the id 'C8'; expected Rx or Tx, then 'd' DLC and the data bytes\n")
        let lenient = try runProcess(Self.daqctl, ["frames", "--format", "asc", "--lenient", "-"], stdin: Data(text.utf8))
        #expect(lenient.status == 0)
        #expect(lenient.stdout == "(1.000000) can0 123#AA\n(3.000000) can0 124#FF\n")
        #expect(lenient.stderr.contains("skipped 1 line"))
    }
}
