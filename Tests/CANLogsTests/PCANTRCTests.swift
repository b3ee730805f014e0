// PCAN TRC lines: each version's layout, start times, message types, bad lines.
import Testing
import DAQCore
@testable import CANLogs

@Suite struct PCANTRCTests {
    // Headers use STARTTIME 45306.375 (2024-01-15 09:00:00 UTC, exact in binary) so that the
    // expected times read plainly; inexact start times are covered by `startTime` and the oracle.

    @Test(arguments: [
        // (version header, line, expected candump text)
        ("", "     1)      1841  0001  8  00 01 02 03 04 05 06 07", "(1.841000) can0 001#0001020304050607"),
        ("", "     4)      1844  0100  3  RTR", "(1.844000) can0 100#R3"),
        ("", "     5)      1845  1ABCDEF0  2  AA BB", "(1.845000) can0 1ABCDEF0#AABB"),
        ("", "     2)      1842  0008  4  ERROR  00 19 08 08", "(1.842000) can0 20000080#0000000000000000"),
        (";$FILEVERSION=1.1\n;$STARTTIME=45306.375",
         "     1)      1841.2  Rx         0001  8  00 00 00 00 00 00 00 00", "(1705309201.841200) can0 001#0000000000000000"),
        (";$FILEVERSION=1.1\n;$STARTTIME=45306.375",
         "     2)      1842.3  Tx     18EFC034  4  01 02 03 04", "(1705309201.842300) can0 18EFC034#01020304"),
        (";$FILEVERSION=1.1\n;$STARTTIME=45306.375",
         "     3)      1842.9  Error      0008  4  00 19 08 08", "(1705309201.842900) can0 20000080#0000000000000000"),
        (";$FILEVERSION=1.2\n;$STARTTIME=45306.375",
         "     1)      1841.200 2  Rx         0001  2  0A 0B", "(1705309201.841200) can1 001#0A0B"),
        (";$FILEVERSION=1.3\n;$STARTTIME=45306.375",
         "     1)      1841.200 3  Rx         0001 -  2  0A 0B", "(1705309201.841200) can2 001#0A0B"),
        (";$FILEVERSION=1.3\n;$STARTTIME=45306.375",
         "     3)      1844.900 1  Rx         0100 -  3  RTR", "(1705309201.844900) can0 100#R3"),
        (";$FILEVERSION=2.0\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,I,d,l,D",
         "      1      1059.900 DT     0300 Rx 7  00 00 00 00 04 00 00", "(1705309201.059900) can0 300#00000000040000"),
        (";$FILEVERSION=2.0\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,I,d,l,D",
         "      3      1298.945 FD 18EFC034 Tx 12 01 02 03 04 05 06 07 08 09 0A 0B 0C",
         "(1705309201.298945) can0 18EFC034##00102030405060708090A0B0C"),
        (";$FILEVERSION=2.0\n;$STARTTIME=45306.375",   // no $COLUMNS: the 2.0 default
         "      1      1.000 FB     0300 Rx 1  AA", "(1705309200.001000) can0 300##1AA"),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,B,I,d,R,L,D",
         "      2         1.250 FE  2  18EFC034 Tx -  9    01 02 03 04 05 06 07 08 09 0A 0B 0C",
         "(1705309200.001250) can1 18EFC034##30102030405060708090A0B0C"),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,B,I,d,R,L,D",
         "      5         4.001 BI  2  00000001 Rx -  0", "(1705309200.004001) can1 00000001##2"),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,B,I,d,R,L,D",
         "      6         5.000 RR  1      0100 Rx -  4", "(1705309200.005000) can0 100#R4"),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,T,B,I,d,R,L,D",
         "      9         7.000 ER  3      -    Rx -  5    04 00 02 00 00", "(1705309200.007000) can2 20000080#0000000000000000"),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375",   // no $COLUMNS: the 2.1 default
         "      8        10.123 DT  3      07FF Tx -  0", "(1705309200.010123) can2 7FF#"),
        // A different column order (bus before type) is honoured.
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.375\n;$COLUMNS=N,O,B,T,I,d,L,D",
         "      1         0.001 4 DT      0123 Rx 1 FF", "(1705309200.000001) can3 123#FF"),
    ])
    func versionLine(header: String, line: String, expected: String) throws {
        let frames = try readLog(.trc, header + "\n;\n" + line)
        #expect(frames.map(\.candumpLine) == [expected])
    }

    @Test(arguments: [
        ("", "     2)      1843  FFFFFFFF  4  00 00 00 04  BUSLIGHT"),
        (";$FILEVERSION=1.1", "     3)      1843.0  Warng  FFFFFFFF  4  00 00 00 08  BUSHEAVY"),
        (";$FILEVERSION=2.1", "      7         6.000 ST  1          Rx    -  4    00 00 00 04"),
        (";$FILEVERSION=2.1", "      7         6.000 EC  1          Rx    -  2    00 80"),
        (";$FILEVERSION=2.1", "      7         6.000 EV  1"),
        (";$FILEVERSION=2.1", ";   Message   Time    Type    ID     Rx/Tx"),
        (";$FILEVERSION=2.1", ""),
    ])
    func linesWithoutFrames(header: String, line: String) throws {
        #expect(try readLog(.trc, header + "\n" + line).isEmpty)
    }

    /// STARTTIME is decoded like python-can (and Python's timedelta): whole days, whole seconds, then
    /// microseconds rounded half-even from the double.
    @Test(arguments: [
        (45306.4166666667, 1_705_312_800_000_003_000 as Int64),
        (25569.0, 0),
        (45306.5000115741, 1_705_320_001_000_002_000),
    ])
    func startTime(days: Double, nanoseconds: Int64) {
        #expect(PCANTRCReader.unixNanoseconds(oleDays: days) == nanoseconds)
    }

    @Test(arguments: [
        (";$FILEVERSION=1.1", "     1)      1841.2  Rx         0001  8  00 00 ZZ 00 00 00 00 00",
         "data byte 2", "expected a hex byte, found 'ZZ'"),
        (";$FILEVERSION=1.1", "     1)      1841.2  Rx         0001  4  00 00", "data byte 2", "expected 4 data bytes, found 2"),
        (";$FILEVERSION=1.1", "     1)      1841.2  Qx         0001  0", "type", "unknown message type 'Qx'"),
        (";$FILEVERSION=1.1", "     1)      abc  Rx         0001  0", "time offset",
         "expected a time offset in milliseconds, found 'abc'"),
        (";$FILEVERSION=1.1", "     1      1841.2  Rx         0001  0", "message number", "expected a message number like '12)'"),
        (";$FILEVERSION=1.3", "     1)      1841.2  0  Rx  0001 - 0", "bus", "expected a bus number 1…255, found '0'"),
        (";$FILEVERSION=2.1", "      1         0.100 DT  1      0800 Rx -  0", "id", "expected an 11-bit hex CAN id, found '0800'"),
        (";$FILEVERSION=2.1", "      1         0.100 XX  1      0100 Rx -  0", "type", "unknown message type 'XX'"),
        // Classic DLC 9…15 means 8 bytes.
        (";$FILEVERSION=2.1", "      1         0.100 DT  1      0100 Rx -  9  00", "data byte 1",
         "expected 8 data bytes, found 1"),
        (";$FILEVERSION=2.0", "      1         0.100 DT      0100 Rx 9  00", "data length",
         "9 data bytes do not fit a classic CAN frame"),
        (";$FILEVERSION=2.1", "      1         0.100 DT  1      0100 Rx -  x", "dlc", "expected a DLC 0…15"),
        (";$FILEVERSION=2.0", "      1         0.100 DT      0100 Rx 65", "data length", "expected a data length 0…64"),
        (";$FILEVERSION=2.0", "      1         0.100 FD      0100 Rx 10 00 00 00 00 00 00 00 00 00 00", "data length",
         "10 data bytes do not fit a CAN FD frame"),
        (";$FILEVERSION=2.1\n;$COLUMNS=N,O,D,T", "      1         0.100", "COLUMNS",
         "expected a column list with O and T and with D last, found 'N,O,D,T'"),
        (";$STARTTIME=yesterday", "", "STARTTIME", "expected days since 1899-12-30 (before 2262-04-11, 132318), found 'yesterday'"),
        // Past what Int64 nanoseconds since 1970 hold: both trapped.
        (";$STARTTIME=200000", "", "STARTTIME", "expected days since 1899-12-30 (before 2262-04-11, 132318), found '200000'"),
        (";$FILEVERSION=1.1\n;$STARTTIME=100000", "     1)      3000000000000.0  Rx         0001  0", "time offset",
         "the start time plus this offset is past 2262, the last time this reader holds"),
    ])
    func badLine(header: String, line: String, field: String, message: String) {
        let text = header + "\n" + line
        let error = thrownError { () throws(DAQError) in _ = try readLog(.trc, text, file: "x.trc") }
        let lineNumber = text.split(separator: "\n", omittingEmptySubsequences: false).count
            - (field == "COLUMNS" || field == "STARTTIME" ? 1 : 0)
        #expect(error?.code == .malformedInput)
        #expect(error?.location == InputLocation(file: "x.trc", line: lineNumber, field: field))
        #expect(error?.message == message)
    }

    @Test func anUnknownVersionIsUnsupported() {
        let error = thrownError { () throws(DAQError) in _ = try readLog(.trc, ";$FILEVERSION=3.0", file: "v.trc") }
        #expect(error?.code == .unsupported)
        #expect(error?.description == "v.trc:1 [FILEVERSION]: unsupported TRC file version '3.0'")
    }
}

extension PCANTRCTests {
    // A trace without `;$FILEVERSION` is read as version 1.0 (`N) OFFSET ID DLC …`). A 1.2 trace that
    // lost its header then has its bus where 1.0 has the id and its type (`Rx`) where the DLC goes:
    // the error says what it found and why the file was read as 1.0. python-can 4.6 (the outside
    // reference) also falls back to 1.0 and stops with a bare "invalid literal for int() with base
    // 16: 'Rx'", naming neither line nor version.
    @Test(arguments: [
        ("     1)      1841.2  1  Rx         0001  8  00 01", "dlc", "expected a DLC 0…8, found 'Rx'"),
        ("     1)      1841.2  Rx         0001  8  00 01", "id", "expected an 11-bit hex CAN id, found 'Rx'"),
    ])
    func anErrorWithoutAFileVersionSaysTheFileWasReadAsVersionOne(line: String, field: String, message: String) {
        let error = thrownError { () throws(DAQError) in
            _ = try readLog(.trc, ";   Start time: 15.01.2024 09:00:00.000\n" + line, file: "t5.trc")
        }
        #expect(error?.description == "t5.trc:2 [\(field)]: \(message) "
            + "(read as TRC version 1.0 because no ;$FILEVERSION line came before this one)")
    }

    @Test func aDeclaredVersionOneErrorHasNoSuchNote() {
        let error = thrownError { () throws(DAQError) in
            _ = try readLog(.trc, ";$FILEVERSION=1.0\n     1)      1841  0001  9  00", file: "t.trc")
        }
        #expect(error?.description == "t.trc:2 [dlc]: expected a DLC 0…8, found '9'")
    }
}
