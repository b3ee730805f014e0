// `daqctl frames` against python-can: python-can's own test logs and logs generated here (by
// python-can's writers and by hand) are read by both and must agree frame for frame.
import Foundation
import Testing
import TestSupport

/// One frame reduced to what candump text can say, in a form both sides can produce.
private struct OracleFrame: Equatable, CustomStringConvertible {
    var micros: Int64
    /// nil when the oracle does not report an interface (python-can's candump reader, error frames).
    var interface: String?
    var id: UInt32
    var extended: Bool
    var remote: Bool
    var remoteDLC: Int
    var fd: Bool
    var brs: Bool
    var esi: Bool
    var error: Bool
    var data: String

    var description: String {
        if error { return "(\(micros)) \(interface ?? "?") ERROR" }
        return "(\(micros)) \(interface ?? "?") \(String(id, radix: 16))\(extended ? "x" : "")"
            + (remote ? " R\(remoteDLC)" : "") + (fd ? " FD brs=\(brs) esi=\(esi)" : "") + " [\(data)]"
    }

    /// Error frames compare by time and (when the oracle knows it) interface only: python-can keeps
    /// no error class bits or details for them.
    static func agree(_ ours: OracleFrame, _ theirs: OracleFrame) -> Bool {
        guard ours.micros == theirs.micros, ours.error == theirs.error else { return false }
        if let iface = theirs.interface, ours.interface != iface { return false }
        if ours.error { return true }
        return ours.id == theirs.id && ours.extended == theirs.extended && ours.remote == theirs.remote
            && ours.remoteDLC == theirs.remoteDLC && ours.fd == theirs.fd && ours.brs == theirs.brs
            && ours.esi == theirs.esi && ours.data == theirs.data
    }
}

/// Parses one line of `daqctl frames` output (candump -l text).
private func parseCandump(_ line: Substring) -> OracleFrame? {
    let parts = line.split(separator: " ")
    guard parts.count == 3, parts[0].hasPrefix("("), parts[0].hasSuffix(")") else { return nil }
    let time = parts[0].dropFirst().dropLast().split(separator: ".")
    guard time.count == 2, time[1].count == 6, let secs = Int64(time[0]), let frac = Int64(time[1]) else { return nil }
    let body = parts[2]
    guard let hash = body.firstIndex(of: "#") else { return nil }
    let idText = body[..<hash]
    var rest = body[body.index(after: hash)...]
    guard let rawID = UInt32(idText, radix: 16) else { return nil }
    var frame = OracleFrame(micros: secs * 1_000_000 + frac, interface: String(parts[1]), id: rawID,
                            extended: idText.count == 8, remote: false, remoteDLC: 0, fd: false, brs: false,
                            esi: false, error: false, data: "")
    if rawID & 0x2000_0000 != 0 && idText.count == 8 {
        frame.error = true
        return frame
    }
    frame.id = rawID & 0x1FFF_FFFF
    if rest.first == "R" {
        frame.remote = true
        frame.remoteDLC = Int(rest.dropFirst(), radix: 16) ?? 0
        return frame
    }
    if rest.first == "#" {
        guard let flags = rest.dropFirst().first?.hexDigitValue else { return nil }
        frame.fd = true
        frame.brs = flags & 1 != 0
        frame.esi = flags & 2 != 0
        rest = rest.dropFirst(2)
    }
    frame.data = String(rest).uppercased()
    return frame
}

/// python-can's reading of a log, one frame per output line.
private let oracleScript = #"""
import sys, can
kind, path = sys.argv[1], sys.argv[2]
reader = {"asc": can.ASCReader, "trc": can.TRCReader, "candump": can.CanutilsLogReader}[kind](path)
for m in reader:
    if kind == "trc":
        ch = m.channel - 1                     # python-can keeps the TRC bus number (1-based)
    elif kind == "asc":
        ch = m.channel                         # python-can already subtracted 1 from the ASC channel
    else:
        ch = m.channel
    iface = ch if isinstance(ch, str) else ("can%d" % ch if ch is not None else "-")
    print("%d %s %x %d %d %d %d %d %d %d %s" % (
        round(m.timestamp * 1e6), iface, m.arbitration_id, m.is_extended_id, m.is_remote_frame,
        m.dlc, m.is_fd, m.bitrate_switch, m.error_state_indicator, m.is_error_frame,
        bytes(m.data).hex().upper() or "-"))
"""#

private func oracleFrames(_ format: String, _ path: String) throws -> [OracleFrame] {
    let result = try runPython(oracleScript, [format, path])
    try #require(result.status == 0, "python-can failed on \(path): \(result.stderr)")
    return result.stdout.split(separator: "\n").map { line in
        let f = line.split(separator: " ").map(String.init)
        let remote = f[4] == "1"
        // candump text has no FD flags or data on a remote request, so neither side reports them.
        return OracleFrame(micros: Int64(f[0])!, interface: f[1] == "-" ? nil : f[1], id: UInt32(f[2], radix: 16)!,
                           extended: f[3] == "1", remote: remote, remoteDLC: remote ? Int(f[5])! : 0,
                           fd: !remote && f[6] == "1", brs: !remote && f[7] == "1", esi: !remote && f[8] == "1",
                           error: f[9] == "1", data: remote || f[10] == "-" ? "" : f[10])
    }
}

private func daqctlFrames(_ path: String) throws -> [OracleFrame] {
    let result = try runProcess(PackagePaths.executable("daqctl").path, ["frames", path])
    try #require(result.status == 0, "daqctl frames failed on \(path): \(result.stderr)")
    return try result.stdout.split(separator: "\n").map { line in
        try #require(parseCandump(line), "unparseable output line: \(line)")
    }
}

/// Reads `path` both ways and compares. `relative`: the ASC file says `timestamps relative`;
/// python-can ignores that and reports each raw offset as the time, while Vector defines it as the
/// offset from the preceding event, which DAQLink follows. The generated relative files give every
/// non-frame event a zero offset, so summing python-can's values yields the Vector times.
private func expectAgreement(_ format: String, _ path: String, relative: Bool = false,
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
    var theirs = try oracleFrames(format, path)
    if relative {
        var clock: Int64 = 0
        for index in theirs.indices {
            clock += theirs[index].micros
            theirs[index].micros = clock
        }
    }
    let ours = try daqctlFrames(path)
    #expect(ours.count == theirs.count, "frame count of \(path)", sourceLocation: sourceLocation)
    #expect(!ours.isEmpty, "no frames in \(path)", sourceLocation: sourceLocation)
    for (index, (mine, oracle)) in zip(ours, theirs).enumerated() where !OracleFrame.agree(mine, oracle) {
        Issue.record("\(path) frame \(index): daqctl \(mine) ≠ python-can \(oracle)", sourceLocation: sourceLocation)
    }
}

@Suite struct FramesOracleTests {
    static let publicLogs: [String] = {
        let dir = PackagePaths.shared.appendingPathComponent("public-data/logs")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".asc") || $0.hasSuffix(".trc") || $0.hasSuffix(".log") }.sorted()
            .map { dir.appendingPathComponent($0).path }
    }()

    @Test func thePublicLogsAreThere() {
        #expect(Self.publicLogs.count >= 3)
    }

    @Test(arguments: publicLogs)
    func publicLog(path: String) throws {
        let format = path.hasSuffix(".asc") ? "asc" : path.hasSuffix(".trc") ? "trc" : "candump"
        try expectAgreement(format, path)
    }

    @Test(arguments: GeneratedLog.all)
    func generatedLog(log: GeneratedLog) throws {
        let dir = try PackagePaths.temporaryDirectory("frames-oracle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(log.name).path
        if let text = log.text {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        } else {
            let result = try runPython(log.writerScript!, [path])
            try #require(result.status == 0, "python-can writer failed: \(result.stderr)")
        }
        try expectAgreement(log.format, path, relative: log.relative)
    }

    /// Standard input with no extension to go by: the format is sniffed and the frames are the same.
    @Test(arguments: GeneratedLog.all.filter { $0.text != nil })
    func sniffedFromStandardInput(log: GeneratedLog) throws {
        let dir = try PackagePaths.temporaryDirectory("frames-stdin")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(log.name).path
        try Data(log.text!.utf8).write(to: URL(fileURLWithPath: path))
        let byName = try runProcess(PackagePaths.executable("daqctl").path, ["frames", path])
        let piped = try runProcess(PackagePaths.executable("daqctl").path, ["frames", "-"], stdin: Data(log.text!.utf8))
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(piped.stdout == byName.stdout)
    }
}

/// A log written for the oracle test: by hand (`text`) or by a python-can writer (`writerScript`,
/// given the output path as argv[1]).
struct GeneratedLog: Sendable, CustomTestStringConvertible {
    var name: String
    var format: String
    var relative = false
    var text: String?
    var writerScript: String?

    var testDescription: String { name }

    static let fd64 = (0..<64).map { String(format: "%02X", $0) }.joined(separator: " ")
    static let fd64Dec = (0..<64).map { String($0) }.joined(separator: " ")

    static let all: [GeneratedLog] = [
        // ASC, hex, absolute, from python-can's own writer.
        GeneratedLog(name: "writer-hex-absolute.asc", format: "asc", writerScript: #"""
            import sys, can
            w = can.ASCWriter(sys.argv[1])
            t = 1700000000.000100
            for m in [
                can.Message(timestamp=t, arbitration_id=0x123, data=[1, 2, 3], channel=0),
                can.Message(timestamp=t + 0.5, arbitration_id=0x1ABCDEF, is_extended_id=True,
                            data=bytes(range(8)), channel=1, is_rx=False),
                can.Message(timestamp=t + 0.75, arbitration_id=0x7FF, is_remote_frame=True, dlc=8,
                            is_extended_id=False, channel=0),
                can.Message(timestamp=t + 1.000001, arbitration_id=0x321, is_fd=True, bitrate_switch=True,
                            data=bytes(range(64)), is_extended_id=False, channel=2),
                can.Message(timestamp=t + 1.25, arbitration_id=0x18EFC034, is_fd=True, error_state_indicator=True,
                            data=bytes(range(12)), channel=0),
                can.Message(timestamp=t + 1.5, is_error_frame=True, channel=0),
                can.Message(timestamp=t + 2.0, arbitration_id=0x000, data=b"", is_extended_id=False, channel=3),
            ]:
                w.on_message_received(m)
            w.stop()
            """#),
        GeneratedLog(name: "hand-dec-absolute.asc", format: "asc", text: """
            date Mon Jan 15 10:00:00.000 2024
            base dec  timestamps absolute
            internal events logged
            // version 13.0.0
            Begin Triggerblock Mon Jan 15 10:00:00.000 2024
               0.000000 Start of measurement
               0.001000 1  291             Rx   d 8 1 2 3 4 5 6 7 255
               0.002500 2  486539264x      Tx   d 3 16 32 48  Length = 240015 BitCount = 124 ID = 486539264x
               0.003000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%
               0.004000 1  100             Rx   r 4
               0.005000 CANFD   1 Rx        768                                   1 0 9 12 1 2 3 4 5 6 7 8 9 10 11 12   102203  133   303000 e0006659 46500250 4b140250 20011736 2001040d
               0.006000 2  ErrorFrame
               0.007000 CANFD   2 Tx        419430400x  EngineData            0 1 15 64 \(fd64Dec)   102203  133   303000 e0006659 46500250 4b140250 20011736 2001040d
               0.008000 1  2047            Rx   d 0
            End TriggerBlock

            """),
        GeneratedLog(name: "hand-hex-relative.asc", format: "asc", relative: true, text: """
            date Mon Jan 15 10:00:00.000 2024
            base hex  timestamps relative
            no internal events logged
            Begin Triggerblock Mon Jan 15 10:00:00.000 2024
               0.000000 Start of measurement
               1.000100 1  123             Rx   d 2 AB CD
               0.250000 1  1ABCDEF0x       Rx   d 8 01 02 03 04 05 06 07 08
               0.000001 3  7FF             Tx   r
               0.500000 CANFD   2 Rx        1C4D80A7x                             1 1 f 64 \(fd64)   0    0   303000 0 0 0 0 0
               0.100000 1  ErrorFrame
               0.000000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%
               2.000000 2  0               Rx   d 1 FF
            End TriggerBlock

            """),
        GeneratedLog(name: "hand-dec-relative.asc", format: "asc", relative: true, text: """
            date Mon Jan 15 10:00:00.000 2024
            base dec  timestamps relative
            internal events logged
            Begin Triggerblock Mon Jan 15 10:00:00.000 2024
               0.000000 Start of measurement
               0.010000 1  1000            Rx   d 4 0 1 128 255
               0.010000 4  1000x           Tx   r 2
               0.123456 CANFD   1 Rx        300                                   0 0 8 8 8 7 6 5 4 3 2 1   0    0   303000 0 0 0 0 0
            End TriggerBlock

            """),
        // TRC 2.1, classic frames, from python-can's own writer.
        GeneratedLog(name: "writer-2.1.trc", format: "trc", writerScript: #"""
            import sys, can
            w = can.TRCWriter(open(sys.argv[1], "w"))
            t = 1700000000.123456
            for i, m in enumerate([
                can.Message(arbitration_id=0x123, data=[1, 2, 3], channel=0),
                can.Message(arbitration_id=0x1ABCDEF, is_extended_id=True, data=bytes(range(8)), channel=1, is_rx=False),
                can.Message(arbitration_id=0x7FF, data=b"", is_extended_id=False, channel=2),
                can.Message(arbitration_id=0x18EFC034, data=b"\xff" * 8, channel=0),
            ]):
                m.timestamp = t + i * 0.3217
                w.on_message_received(m)
            w.stop()
            """#),
        GeneratedLog(name: "hand-2.1.trc", format: "trc", text: """
            ;$FILEVERSION=2.1
            ;$STARTTIME=45306.4166666667
            ;$COLUMNS=N,O,T,B,I,d,R,L,D
            ;
            ;   Message   Time    Type    ID     Rx/Tx
            ;---+-- ------+------ +- +- --+----- +- +- +--- +- -- -- -- -- -- -- --
                  1         0.100 DT  1      0300 Rx -  8    00 01 02 03 04 05 06 07
                  2         1.250 FD  2  18EFC034 Tx -  9    01 02 03 04 05 06 07 08 09 0A 0B 0C
                  3         2.000 FB  1      0123 Rx -  15   \(fd64)
                  4         3.500 FE  1      0124 Rx -  2    AA BB
                  5         4.001 BI  2  00000001 Rx -  0
                  6         5.000 RR  1      0100 Rx -  4
                  7         6.000 ST  1          Rx    -  4    00 00 00 04
                  8        10.123 DT  3      07FF Tx -  0

            """),
        GeneratedLog(name: "hand-2.0.trc", format: "trc", text: """
            ;$FILEVERSION=2.0
            ;$STARTTIME=45306.5000115741
            ;$COLUMNS=N,O,T,I,d,l,D
            ;
                  1      1059.900 DT     0300 Rx 7  00 00 00 00 04 00 00
                  2      1283.231 DT     0300 Rx 7  00 00 00 00 04 00 00
                  3      1298.945 FD 18EFC034 Tx 12 01 02 03 04 05 06 07 08 09 0A 0B 0C
                  4      1301.002 FB     0123 Rx 64 \(fd64)
                  5      1400.000 RR     0100 Rx 3

            """),
        GeneratedLog(name: "hand-1.3.trc", format: "trc", text: """
            ;$FILEVERSION=1.3
            ;$STARTTIME=45306.7281943287
            ;
                 1)      1841.200 1  Rx         0001 -  8  00 00 00 00 00 00 00 00
                 2)      1842.300 2  Tx     18EFC034 -  4  01 02 03 04
                 3)      1844.900 1  Rx         0100 -  3  RTR

            """),
        GeneratedLog(name: "hand-1.1.trc", format: "trc", text: """
            ;$FILEVERSION=1.1
            ;$STARTTIME=45306.7281943287
            ;
            ;   Message Number
            ;   |         Time Offset (ms)
            ;---+--   ----+----  --+--  ----+---  +  -+ -- -- -- -- -- -- --
                 1)      1841.2  Rx         0001  8  00 00 00 00 00 00 00 00
                 2)      1842.3  Tx     18EFC034  4  01 02 03 04
                 3)      1843.0  Warng  FFFFFFFF  4  00 00 00 08  BUSHEAVY
                 4)      1844.9  Rx         0100  3  RTR

            """),
        GeneratedLog(name: "hand-1.0.trc", format: "trc", text: """
            ;##########################################################################
            ;   C:\\TraceFile.trc
            ;
            ;   Start time: 11.09.2002 16:00:20.682
            ;----+- ---+--- ----+--- + -+ -- -- ...
                 1)      1841  0001  8  00 00 00 00 00 00 00 00
                 2)      1843  FFFFFFFF  4  00 00 00 04  BUSLIGHT
                 3)      1844  0100  3  RTR
                 4)      1845  1ABCDEF0  2  AA BB

            """),
        // candump, from python-can's writer and by hand.
        GeneratedLog(name: "writer.log", format: "candump", writerScript: #"""
            import sys, can
            w = can.CanutilsLogWriter(sys.argv[1])
            t = 1700000000.000001
            for m in [
                can.Message(timestamp=t, arbitration_id=0x123, data=[1, 2, 3], channel="vcan0", is_extended_id=False),
                can.Message(timestamp=t + 0.5, arbitration_id=0x1ABCDEF, is_extended_id=True, data=bytes(range(8)),
                            channel="can1", is_rx=False),
                can.Message(timestamp=t + 0.75, arbitration_id=0x7FF, is_remote_frame=True, is_extended_id=False,
                            channel="can0"),
                can.Message(timestamp=t + 1.0, arbitration_id=0x321, is_fd=True, bitrate_switch=True,
                            data=bytes(range(64)), is_extended_id=False, channel="can0"),
                can.Message(timestamp=t + 1.25, arbitration_id=0x18EFC034, is_fd=True, error_state_indicator=True,
                            data=bytes(range(12)), channel="can0"),
                can.Message(timestamp=t + 1.5, is_error_frame=True, channel="can0"),
            ]:
                w.on_message_received(m)
            w.stop()
            """#),
        GeneratedLog(name: "hand.log", format: "candump", text: """
            (1700000000.000001) can0 123#DEADBEEF
            (1700000000.100000) can1 12345678#0102030405060708
            (1700000000.200000) can0 7FF#R8
            (1700000000.300000) can0 1FFFFFFF##3\(fd64.replacingOccurrences(of: " ", with: ""))
            (1700000000.400000) can0 321##0
            (1700000000.500000) can0 20000080#0000000000000000
            (1700000000.600000) vcan0 000#

            """),
    ]
}

/// The command's contract around bad input: exact error line, exit status, --lenient, --format.
@Suite struct FramesCommandTests {
    static let badASC = """
        base hex timestamps absolute
           1.000000 1  123 Rx d 2 01 02
           2.000000 1  123 Rx d 4 01 02 G1 04
           3.000000 1  124 Rx d 1 FF

        """

    private func run(_ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
        try runProcess(PackagePaths.executable("daqctl").path, ["frames"] + arguments, stdin: stdin.map { Data($0.utf8) })
    }

    @Test func aBadLineStopsWithItsPlace() throws {
        let dir = try PackagePaths.temporaryDirectory("frames-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.asc").path
        try Data(Self.badASC.utf8).write(to: URL(fileURLWithPath: path))
        let result = try run([path])
        #expect(result.status != 0)
        #expect(result.stderr == "\(path):3 [data byte 2]: expected a hex byte, found 'G1'\n")
        #expect(result.stdout == "(1.000000) can0 123#0102\n")
    }

    @Test func lenientSkipsAndCounts() throws {
        let result = try run(["--lenient", "-"], stdin: Self.badASC)
        #expect(result.status == 0)
        #expect(result.stdout == "(1.000000) can0 123#0102\n(3.000000) can0 124#FF\n")
        #expect(result.stderr.contains("skipped 1 line"))
    }

    @Test func formatCanBeForced() throws {
        // Headerless ASC lines sniff as ASC; forced as candump they are malformed.
        let text = "   1.000000 1  123 Rx d 1 AA\n"
        #expect(try run(["-"], stdin: text).stdout == "(1.000000) can0 123#AA\n")
        let forced = try run(["--format", "candump", "-"], stdin: text)
        #expect(forced.status != 0 && forced.stderr.hasPrefix("-:1 [timestamp]:"))
    }

    @Test func unknownContentAsksForAFormat() throws {
        let result = try run(["-"], stdin: "hello\n")
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("-:1 [format]: cannot tell the log format"))
    }

    @Test func aMissingFileIsReported() throws {
        let result = try run(["/nonexistent/x.asc"])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("/nonexistent/x.asc: cannot open"))
    }

    @Test func helpTeaches() throws {
        let result = try run(["--help"])
        #expect(result.status == 0)
        for word in ["candump", "asc", "trc", "--lenient", "Examples", "can<N-1>"] {
            #expect(result.stdout.contains(word), "help lacks \(word)")
        }
    }
}
