// Vector ASC lines: every line kind, hex and dec bases, absolute and relative timestamps, bad lines.
import Testing
import DAQCore
@testable import CANLogs

private let hexHeader = """
    date Mon Jan 15 10:00:00.000 2024
    base hex  timestamps absolute
    internal events logged
    // version 13.0.0
    Begin Triggerblock Mon Jan 15 10:00:00.000 2024
       0.000000 Start of measurement

    """

@Suite struct VectorASCTests {
    @Test(arguments: [
        ("   2.501000 2  C8              Tx   d 8 09 08 07 06 05 04 03 02", "(2.501000) can1 0C8#0908070605040302"),
        ("  17.876708 1  6F9             Rx   d 8 05 0C 00 00 00 00 00 00  Length = 240015 BitCount = 124 ID = 1785",
         "(17.876708) can0 6F9#050C000000000000"),
        ("   1.000000 1  1ABCDEF0x       Rx   d 2 AB cd", "(1.000000) can0 1ABCDEF0#ABCD"),
        ("   1.000000 1  7FF             Rx   d 0", "(1.000000) can0 7FF#"),
        ("   1.000000 1  7FF             Rx   d F 01 02 03 04 05 06 07 08", "(1.000000) can0 7FF#0102030405060708"),
        ("   2.510001 2 100 Rx r", "(2.510001) can1 100#R"),
        ("   2.584921 4 300 Rx r 8 Length = 1704000 BitCount = 145 ID = 88888888x", "(2.584921) can3 300#R8"),
        ("   3.000000 1 ErrorFrame", "(3.000000) can0 20000080#0000000000000000"),
        ("   3.000000 2 ErrorFrame ECC: 10100010", "(3.000000) can1 20000080#0000000000000000"),
        ("  30.005021 CANFD   1 Rx        300                                   1 0 8  8 11 c2 03 04 05 06 07 08   102203  133   303000 e0006659 46500250 4b140250 20011736 2001040d",
         "(30.005021) can0 300##111C2030405060708"),
        ("  30.005071 CANFD   3 Rx        30a  Generic_Name_12                  1 1 8  8 01 02 03 04 05 06 07 08   102203  133   303000 e0006659 46500250 4b140250 20011736 2001040d",
         "(30.005071) can2 30A##30102030405060708"),
        ("   1.000000 CANFD   1 Tx        1C4D80A7x  0 1 9 12 00 01 02 03 04 05 06 07 08 09 0A 0B",
         "(1.000000) can0 1C4D80A7##2000102030405060708090A0B"),
        // A classic frame logged in the CANFD form: the flags lack EDL (0x1000).
        ("   1.000000 CANFD   1 Rx        123  0 0 2 2 AA BB   0 0 2000 0 0 0 0 0", "(1.000000) can0 123#AABB"),
        // A remote request in the CANFD form: flags bit 0x10.
        ("   1.000000 CANFD   1 Rx        123  0 0 4 0   0 0 10 0 0 0 0 0", "(1.000000) can0 123#R4"),
        ("   1.000000 CANFD   2 Rx ErrorFrame 0 0 0 0", "(1.000000) can1 20000080#0000000000000000"),
    ])
    func hexLine(line: String, expected: String) throws {
        let frames = try readLog(.asc, hexHeader + line)
        #expect(frames.map(\.candumpLine) == [expected])
    }

    @Test(arguments: [
        "date Sam Sep 30 15:06:13.191 2017",
        "internal events logged",
        "no internal events logged",
        "// version 9.0.0",
        "Begin Triggerblock Sat Sep 30 10:06:13.191 PM 2017",
        "End TriggerBlock",
        "   0.000000 Start of measurement",
        "   1.000000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%",
        "   1.000000 CAN 1 Status:chip status error active",
        "   1.000000 1  123             TxRq d 1 00",
        "   1.000000 1  J1939TP FEE3p  6 0 0 - Rx d 23 A0 0F A6 60 3B D1 40 1F",
        "   1.000000 SV: 1 0 1 ::Node::Var = 1",
        "",
    ])
    func linesWithoutFrames(line: String) throws {
        #expect(try readLog(.asc, hexHeader + line).isEmpty)
    }

    @Test func fieldsOfAnFDFrame() throws {
        let frame = try #require(try readLog(.asc, hexHeader + """
               0.5 CANFD 2 Tx 1C4D80A7x Name 1 1 f 64 \((0..<64).map { _ in "EE" }.joined(separator: " "))
            """).first)
        #expect(frame.isFD && frame.bitRateSwitch && frame.errorStateIndicator && frame.isExtended)
        #expect(frame.id == 0x1C4D_80A7 && frame.data.count == 64 && !frame.isReceived && frame.interface == "can1")
        #expect(frame.timestamp.nanoseconds == 500_000_000)
    }

    @Test func decimalBase() throws {
        let frames = try readLog(.asc, """
            base dec timestamps absolute
               0.001000 1  291             Rx   d 8 1 2 3 4 5 6 7 255
               0.002500 2  486539264x      Tx   d 3 16 32 48
               0.004000 1  100             Rx   r 4
               0.005000 CANFD   1 Rx        768   1 0 9 12 1 2 3 4 5 6 7 8 9 10 11 12
            """)
        #expect(frames.map(\.candumpLine) == [
            "(0.001000) can0 123#01020304050607FF",
            "(0.002500) can1 1D000000#102030",
            "(0.004000) can0 064#R4",
            "(0.005000) can0 300##10102030405060708090A0B0C",
        ])
    }

    /// Vector: with `timestamps relative` each event's time is the offset from the preceding
    /// event, frame or not. (python-can ignores the mode and reports the raw offsets.)
    @Test func relativeTimestampsAccumulateOverEveryEvent() throws {
        let frames = try readLog(.asc, """
            base hex timestamps relative
            Begin Triggerblock
               0.000000 Start of measurement
               1.000100 1  123             Rx   d 1 01
               0.250000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%
               0.000001 1  124             Rx   d 1 02
               0.5 1 ErrorFrame
            """)
        #expect(frames.map(\.timestamp.nanoseconds) == [1_000_100_000, 1_250_101_000, 1_750_101_000])
    }

    /// Relative offsets that add up past Int64 nanoseconds are named (the sum trapped).
    @Test func relativeTimestampsThatAddUpPastTheLimitAreNamed() {
        let error = thrownError { () throws(DAQError) in
            _ = try readLog(.asc, "base hex timestamps relative\n9000000000.0 1 123 Rx d 1 00\n9000000000.0 1 123 Rx d 1 00", file: "r.asc")
        }
        #expect(error?.location == InputLocation(file: "r.asc", line: 3, field: "timestamp"))
        #expect(error?.message == "the relative timestamps add up past 292 years, the longest time this reader holds")
    }

    @Test func absoluteTimestampsAreTakenAsWritten() throws {
        let frames = try readLog(.asc, hexHeader + """
               5.000000 1  123 Rx d 0
               4.000000 1  123 Rx d 0
               4.123456789 1  123 Rx d 0
            """)
        #expect(frames.map(\.timestamp.nanoseconds) == [5_000_000_000, 4_000_000_000, 4_123_456_789])
    }

    @Test(arguments: [
        ("   1.000000 1  123 Rx d 4 01 02 G1 04", "data byte 2", "expected a hex byte, found 'G1'"),
        ("   1.000000 1  123 Rx d 4 01 02", "data byte 2", "expected 4 data bytes, found 2"),
        ("   1.000000 1  123 Rx d 4 01 02 100 04", "data byte 2", "expected a hex byte, found '100'"),
        ("   1.000000 1  800 Rx d 0", "id", "expected an 11-bit hex CAN id, found '800'"),
        ("   1.000000 1  20000000x Rx d 0", "id", "expected a 29-bit hex CAN id, found '20000000x'"),
        ("   1.000000 1  123 Rx q 0", "type", "expected 'd' (data) or 'r' (remote), found 'q'"),
        ("   1.000000 1  123 Rx d G", "dlc", "expected a hex DLC 0…15, found 'G'"),
        ("   1.000000 0  123 Rx d 0", "channel", "expected a channel number 1…255, found '0'"),
        ("   1.0.0 1  123 Rx d 0", "timestamp", "expected a timestamp in seconds, found '1.0.0'"),
        ("   1.0 CANFD 1 Rx 123 2 0 8 8 00 00 00 00 00 00 00 00", "BRS", "expected 0 or 1, found '2'"),
        ("   1.0 CANFD 1 Rx 123 1 0 9 10 00 00 00 00 00 00 00 00 00 00", "data length", "10 is not a CAN FD data length"),
        ("base hex timestamps sideways", "timestamps", "expected 'absolute' or 'relative', found 'sideways'"),
        ("base oct", "base", "expected 'hex' or 'dec', found 'oct'"),
        // A frame line cut short after its id or channel used to be skipped without a word. python-can
        // 4.6 skips it too (its line pattern does not match); DAQLink reports it like any other
        // malformed line, and --lenient skips and counts it (LogInputCommandTests).
        ("2.5010 2   C8", "direction", "the line ends after the id 'C8'; expected Rx or Tx, then 'd' DLC and the data bytes"),
        ("2.5010 2   1ABCDEF0x", "direction",
         "the line ends after the id '1ABCDEF0x'; expected Rx or Tx, then 'd' DLC and the data bytes"),
        ("2.5010 2", "id", "the line ends after the channel; expected a CAN id or ErrorFrame"),
    ])
    func badLine(line: String, field: String, message: String) {
        let error = thrownError { () throws(DAQError) in _ = try readLog(.asc, hexHeader + line, file: "x.asc") }
        #expect(error?.code == .malformedInput)
        #expect(error?.location == InputLocation(file: "x.asc", line: 7, field: field))
        #expect(error?.message == message)
    }

    @Test func decimalDataBytesAreBoundedAt255() {
        let error = thrownError { () throws(DAQError) in
            _ = try readLog(.asc, "base dec timestamps absolute\n 1.0 1 100 Rx d 2 255 256", file: "d.asc")
        }
        #expect(error?.description == "d.asc:2 [data byte 1]: expected a decimal byte, found '256'")
    }
}

extension VectorASCTests {
    // `base hex` makes `d 15` the DLC 0x15 = 21, not fifteen: the error says what it read and why.
    // python-can 4.6 (the outside reference) reads 0x15 too and, unchecked, builds a message with
    // DLC 64 from the three bytes that follow.
    @Test func aDLCAbove15SaysTheValueFoundAndItsBase() {
        let hex = thrownError { () throws(DAQError) in _ = try readLog(.asc, hexHeader + "   2.501 2  C8 Rx d 15 01 02 03", file: "a6.asc") }
        #expect(hex?.description == "a6.asc:7 [dlc]: expected a DLC 0…15, found '15', which is hex (the log says 'base hex'): 0x15 = 21")
        let dec = thrownError { () throws(DAQError) in
            _ = try readLog(.asc, "base dec timestamps absolute\n 1.0 1 100 Rx d 21 01", file: "d.asc")
        }
        #expect(dec?.description == "d.asc:2 [dlc]: expected a DLC 0…15, found 21")
    }

    /// A line among the events that is no event, comment or End TriggerBlock is refused (it was
    /// passed over: a damaged log read as fewer frames and exit 0).
    @Test func aLineThatIsNoEventIsRefused() throws {
        let inBlock = thrownError { () throws(DAQError) in
            _ = try readLog(.asc, hexHeader + "   1.0 1  123 Rx d 1 01\nxx 1.5 1 123 Rx d 1 02\n   2.0 1  123 Rx d 1 03", file: "b.asc")
        }
        #expect(inBlock?.location == InputLocation(file: "b.asc", line: 8, field: "event"))
        #expect(inBlock?.message == "'xx' starts no line of an ASC log's events (each starts with its timestamp in seconds; "
                + "between them only comments (//) and End TriggerBlock)")
        // Before the events, a writer's own header text is passed over (a file with no event at
        // all is named by LogFrameSource: LogInputCommandTests).
        let header = try readLog(.asc, "data Mon Jan 15 10:00:00 2024\n2024-01-15 export of bench 3\nno internal events logged\n   1.0 1  123 Rx d 1 01")
        #expect(header.count == 1)
        #expect(try readLog(.asc, "hello\nworld").isEmpty)
    }

    // Channel events that are not frames still carry no frame and no error.
    @Test(arguments: ["   1.0 1 Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%", "   1.0 1 Status:chip status error active"])
    func channelEventsStillCarryNoFrame(line: String) throws {
        #expect(try readLog(.asc, hexHeader + line).isEmpty)
    }
}
