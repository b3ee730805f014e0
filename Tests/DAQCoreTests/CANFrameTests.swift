// The frame model and its candump text form.
import Testing
@testable import DAQCore

@Suite struct CANFrameTests {
    @Test func classicStandardFrameText() {
        let frame = CANFrame(timestamp: Timestamp(seconds: 1_700_000_000, microseconds: 123_456),
                             interface: "can0", id: 0x123, data: CANPayload([0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(frame.candumpLine == "(1700000000.123456) can0 123#DEADBEEF")
    }

    @Test func extendedFDAndRemoteText() {
        let ts = Timestamp(nanoseconds: 5_000)
        let fd = CANFrame(timestamp: ts, interface: "vcan0", id: 0x1ABCDE, isExtended: true, isFD: true,
                          bitRateSwitch: true, data: CANPayload([UInt8](repeating: 0x11, count: 12)))
        #expect(fd.candumpLine == "(0.000005) vcan0 001ABCDE##1" + String(repeating: "11", count: 12))
        let rtr = CANFrame(timestamp: ts, interface: "can1", id: 0x7FF, kind: .remote)
        #expect(rtr.candumpBody == "7FF#R")
        let err = CANFrame(timestamp: ts, interface: "can0", id: 0x4, kind: .error, data: CANPayload([0, 8, 0, 0, 0, 0, 0, 0]))
        #expect(err.candumpBody == "20000004#0008000000000000")
    }

    @Test func payloadIsInlineAndBounded() {
        var payload = CANPayload()
        for i in 0..<64 {
            let appended = payload.append(UInt8(i))
            #expect(appended)
        }
        let overflowed = !payload.append(0)
        #expect(overflowed)
        #expect(payload.count == 64)
        #expect(payload[63] == 63)
        #expect(CANPayload([1, 2]) == CANPayload([1, 2]))
        #expect(CANPayload([1, 2]) != CANPayload([1, 2, 0]))
    }

    @Test(arguments: [(0, 0), (8, 8), (9, 12), (12, 12), (13, 16), (33, 48), (64, 64)])
    func fdLengthRoundsUpToADLC(length: Int, expected: Int) {
        #expect(CANFrame.length(forDLC: CANFrame.dlc(forLength: length), fd: true) == expected)
    }

    @Test func negativeAndSmallTimestamps() {
        #expect(Timestamp(nanoseconds: 1_999).candumpText == "0.000001")
        #expect(Timestamp(nanoseconds: -1_500_000_000).candumpText == "-1.500000")
    }
}
