// Format detection: by extension, and by content for standard input.
import Testing
@testable import CANLogs

@Suite struct LogFormatDetectionTests {
    @Test(arguments: [
        ("drive.ASC", CANLogFormat.asc), ("trace.trc", .trc), ("candump-2024.log", .candump), ("x.candump", .candump),
    ])
    func byExtension(name: String, format: CANLogFormat) {
        #expect(CANLogFormat.detect(fileName: name, head: []) == format)
    }

    @Test(arguments: [
        ("date Sam Sep 30 15:06:13.191 2017\nbase hex  timestamps absolute\n", CANLogFormat?.some(.asc)),
        ("\u{FEFF}date Mon Jan 15 10:00:00.000 2024\n", .asc),
        ("\r\n\nbase dec timestamps relative\r\n", .asc),
        ("// version 9.0.0\n", .asc),
        ("Begin Triggerblock\n", .asc),
        ("   0.012345 1  123  Rx   d 8 01 02 03 04 05 06 07 08\n", .asc),
        ("   0.012345 CANFD 1 Rx 123 1 0 8 8 01 02 03 04 05 06 07 08\n", .asc),
        (";$FILEVERSION=2.1\n;$STARTTIME=45306.4\n", .trc),
        (";##########\n;   C:\\TraceFile.trc\n", .trc),
        ("     1)      1841  0001  8  00 00 00 00 00 00 00 00\n", .trc),
        ("(1700000000.123456) can0 123#DEADBEEF\n", .candump),
        ("\n  \n(0.000000) vcan0 7FF#R\n", .candump),
        ("hello world\n", nil),
        ("", nil),
        // An ASC event that is no frame (a log without header): ASC too. It told no format, so
        // such a log read from standard input was refused.
        ("   1.5 Start of measurement\n", .asc),
        ("1984 was a year\n", nil),
    ])
    func byContent(text: String, format: CANLogFormat?) {
        #expect(CANLogFormat.detect(fileName: "-", head: Array(text.utf8)) == format)
    }
}
