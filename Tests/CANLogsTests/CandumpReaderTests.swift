// candump -l lines: every frame kind, and bad lines reported with file, line and field.
import Testing
import DAQCore
@testable import CANLogs

func readCandump(_ text: String, file: String = "t.log") throws(DAQError) -> [CANFrame] {
    try readLog(.candump, text, file: file)
}

@Suite struct CandumpReaderTests {
    @Test(arguments: [
        "(1700000000.123456) can0 123#DEADBEEF",
        "(0.000001) vcan0 7FF#",
        "(12.500000) can1 1ABCDEF0#0102030405060708",
        "(1.000000) can0 123##1" + String(repeating: "AB", count: 64),
        "(1.000000) can0 123##3" + String(repeating: "01", count: 12),
        "(1.000000) can0 00000123##0",
        "(1.000000) can0 123#R",
        "(1.000000) can0 123#R8",
        // A remote DLC 9…F in can-utils' len8_dlc form (ASC and TRC logs carry them; `frames`
        // wrote R9…RF, which this reader refused).
        "(1.000000) can0 123#R8_9",
        "(1.000000) can0 123#R8_F",
        "(1.000000) can0 12345678#R",
        "(1.000000) can0 20000080#0000000000000000",
    ])
    func roundTripsThroughTheCandumpText(line: String) throws {
        let frames = try readCandump(line)
        #expect(frames.count == 1)
        #expect(frames.first?.candumpLine == line)
    }

    @Test func fieldsOfAClassicFrame() throws {
        let frame = try #require(try readCandump("(1700000000.123456) can0 123#DEADBEEF").first)
        #expect(frame.timestamp.nanoseconds == 1_700_000_000_123_456_000)
        #expect(frame.interface == "can0")
        #expect(frame.id == 0x123 && !frame.isExtended && !frame.isFD && frame.kind == .data)
        #expect(Array(frame.data) == [0xDE, 0xAD, 0xBE, 0xEF])
    }

    @Test func fdFlagsAndExtendedAndError() throws {
        let frames = try readCandump("""
            (1.5) can0 1FFFFFFF##2AA
            (2.25) can0 20000004#0008000000000000
            (3.0) can0 123#11.22.33 T
            """)
        #expect(frames.count == 3)
        #expect(frames[0].isExtended && frames[0].id == 0x1FFF_FFFF && frames[0].isFD)
        #expect(!frames[0].bitRateSwitch && frames[0].errorStateIndicator)
        #expect(frames[0].timestamp.nanoseconds == 1_500_000_000)
        #expect(frames[1].kind == .error && frames[1].id == 0x4 && frames[1].data.count == 8)
        #expect(Array(frames[2].data) == [0x11, 0x22, 0x33] && !frames[2].isReceived)
    }

    @Test func blankAndCommentLinesYieldNothing() throws {
        #expect(try readCandump("\n   \n# comment\n").isEmpty)
    }

    @Test(arguments: [
        ("1700000000.1 can0 123#00", "timestamp"),
        ("(1700000000.1 can0 123#00", "timestamp"),
        ("(1.0) can0 12#00", "id"),
        ("(1.0) can0 123400#00", "id"),
        ("(1.0) can0 800#00", "id"),
        ("(1.0) can0 FFFFFFFF#00", "id"),  // bits 30-31 set: no candump id (it read as 3FFFFFFF)
        ("(1.0) can0 123:00", "id"),
        ("(1.0) can0 123#0", "data byte 0"),
        ("(1.0) can0 123#00G1", "data byte 1"),
        ("(1.0) can0 123#001122334455667788", "data"),
        ("(1.0) can0 123##", "fd flags"),
        ("(1.0) can0 123##0" + String(repeating: "00", count: 9), "data"),
        ("(1.0)", "interface"),
        ("(1.0) can0 123#R9", "rtr dlc"),
        ("(1.0) can0 123#00 X", "data"),
        // '_' and a DLC only after 8 data bytes.
        ("(1.0) can0 123#112233_9", "len8 dlc"),
        ("(1.0) can0 123#R8_3", "len8 dlc"),
    ])
    func badLinesNameTheirField(line: String, field: String) {
        do {
            _ = try readCandump("(0.5) can0 100#00\n" + line, file: "bad.log")
            Issue.record("accepted a bad line: \(line)")
        } catch {
            #expect(error.code == .malformedInput)
            #expect(error.location == InputLocation(file: "bad.log", line: 2, field: field), "\(error)")
        }
    }

    /// A second digit that is not hex is named (it said "odd number of hex digits").
    @Test func aNonHexDigitIsNamed() {
        do {
            _ = try readCandump("(1.0) can0 123#0G", file: "bad.log")
            Issue.record("accepted 123#0G")
        } catch {
            #expect(error.message == "expected a hex digit, found 'G'" && error.location?.field == "data byte 0", "\(error)")
        }
    }

    @Test func aRemoteDLCAbove8IsKept() throws {
        #expect(try readCandump("(1.0) can0 123#R8_C").first?.remoteLength == 12)
    }
}
