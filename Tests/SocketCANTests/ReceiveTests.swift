// Real SocketCAN receive paths, on vcan in the UML guest (or on the host's vcan): every frame
// kind with kernel timestamps, the kernel drop counter under overload, id and error filters.
import DAQCore
import Foundation
import Testing

@Suite("SocketCAN receive on vcan", .enabled(if: CANRig.isAvailable, "needs a kernel with CAN or linux.uml (user-mode-linux)"))
struct ReceiveTests {
    @Test("classic, extended, FD (BRS/ESI, 64 bytes) and RTR frames arrive intact, in order, on both buses")
    func everyFrameKind() throws {
        let run = try scenarioRun()
        #expect(run.text("frames/listen.rc").hasPrefix("0"), "listen status: \(run.text("frames/listen.err"))")
        let frames = try run.frames("frames/listen.log")
        let sixtyFour = (0..<64).map { String(format: "%02X", $0) }.joined()
        #expect(frames.map(\.candumpBody) == [
            "123#DEADBEEF", "000#", "1ABCDEF0#0102030405060708",
            "321##100112233445566778899AABB", "322##20011", "12345678##3" + sixtyFour,
            "7FF#R", "0000ABCD#R5", "456##01122334455667788",
        ])
        #expect(frames.map(\.interface) == Array(repeating: "vcan0", count: 8) + ["vcan1"])
        guard frames.count == 9 else { return }

        #expect(frames[2].isExtended && frames[2].id == 0x1ABC_DEF0 && frames[2].kind == .data && !frames[2].isFD)
        #expect(frames[3].isFD && frames[3].bitRateSwitch && !frames[3].errorStateIndicator && frames[3].data.count == 12)
        #expect(frames[4].isFD && !frames[4].bitRateSwitch && frames[4].errorStateIndicator)
        #expect(frames[5].isFD && frames[5].bitRateSwitch && frames[5].errorStateIndicator
                && frames[5].isExtended && frames[5].data.count == 64)
        #expect(frames[6].kind == .remote && !frames[6].isExtended && frames[6].id == 0x7FF && frames[6].data.isEmpty)
        #expect(frames[7].kind == .remote && frames[7].isExtended && frames[7].remoteLength == 5)
        #expect(frames[8].isFD && frames[8].fdFlags == 0 && frames[8].data.count == 8)
    }

    @Test("kernel timestamps are non-decreasing and fall inside the scenario's wall-clock window")
    func kernelTimestamps() throws {
        let run = try scenarioRun()
        let frames = try run.frames("frames/listen.log")
        try #require(frames.count == 9)
        let stamps = frames.map(\.timestamp.nanoseconds)
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 <= $1 }, "timestamps: \(stamps)")
        // The guest's `date` before the listener started and after it ended bracket every stamp
        // (microsecond resolution in the candump text, hence the 1 µs allowance).
        let before = Int64(run.text("frames/before-ns").trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
        let after = Int64(run.text("frames/after-ns").trimmingCharacters(in: .whitespacesAndNewlines)) ?? .min
        #expect(stamps.allSatisfy { $0 >= before - 1_000 && $0 <= after }, "window \(before)…\(after), stamps \(stamps)")
        // And they are real wall-clock times: within ten minutes of the host's clock now.
        let hostNow = Int64(Date().timeIntervalSince1970 * 1e9)
        #expect(stamps.allSatisfy { abs($0 - hostNow) < 600 * 1_000_000_000 })
    }

    @Test("a stopped listener with a tiny receive buffer reports the kernel's drops (SO_RXQ_OVFL)")
    func kernelDropCounter() throws {
        let run = try scenarioRun()
        #expect(run.text("drops/listen.rc").hasPrefix("0"), "listen status after SIGINT: \(run.text("drops/listen.err"))")
        let summary = run.summary("drops/listen.err", interface: "vcan0")
        let received = try #require(summary["frames"].flatMap { Int($0) }, "no summary in: \(run.text("drops/listen.err"))")
        let drops = try #require(summary["drops"].flatMap { Int($0) })
        #expect(drops > 0)
        // Every one of the 2000 flood frames and the marker was either queued or dropped.
        #expect(received + drops == 2001, "received \(received) + dropped \(drops)")
        let frames = try run.frames("drops/listen.log")
        #expect(frames.count == received)
        #expect(frames.last?.candumpBody == "7FF#AA")
        #expect(summary["state"] == "unknown" && summary["bitrate"] == "unknown", "vcan has no CAN link data")
    }

    @Test("id filters pass only matching ids (11/29-bit, inverted); error mask 0 hides error frames")
    func filters() throws {
        let run = try scenarioRun()
        #expect(try run.frames("filters/accept.log").map(\.candumpBody) == ["100#01", "12345678#03"])
        #expect(try run.frames("filters/invert.log").map(\.candumpBody) == ["200#02", "12345678#03", "00000100#04"])
        let withErrors = try run.frames("filters/errors-all.log")
        #expect(withErrors.map(\.candumpBody) == ["20000004#0001000000000000", "7FF#EE"])
        #expect(withErrors.first?.kind == .error)
        #expect(run.summary("filters/errors-all.err", interface: "vcan1")["errors"] == "1")
        #expect(try run.frames("filters/errors-none.log").map(\.candumpBody) == ["7FF#EE"])
    }
}
