// Host-only checks of the adapter's pure parts (filter parsing, frame ↔ kernel struct) and of
// its error reporting; these need no CAN bus.
import DAQCore
@testable import SocketCAN
import Testing

@Suite("SocketCAN adapter without a bus")
struct AdapterUnitTests {
    @Test("--filter arguments", arguments: [
        ("123:7FF", CANIDFilter(id: 0x123, mask: 0x7FF)),
        ("100~700", CANIDFilter(id: 0x100, mask: 0x700, isInverted: true)),
        ("00000100:1FFFFFFF", CANIDFilter(id: 0x100, mask: 0x1FFF_FFFF, isExtended: true)),
        ("18FEF100:1FFFF00", CANIDFilter(id: 0x18FE_F100, mask: 0x1FF_FF00, isExtended: true)),
    ])
    func filterParsing(text: String, filter: CANIDFilter) {
        #expect(CANIDFilter(argument: text) == filter)
    }

    @Test("malformed --filter arguments are refused", arguments: ["", "123", "123:", ":7FF", "XYZ:7FF", "123:7FF:1", "3FFFFFFFF:1", "20000000:1"])
    func filterRejects(text: String) {
        #expect(CANIDFilter(argument: text) == nil)
    }

    @Test("filters keep 11- and 29-bit ids apart in the kernel words")
    func filterKernelWords() {
        let standard = CANIDFilter(id: 0x100, mask: 0x7FF).kernelWords
        #expect(standard.id == 0x100 && standard.mask == 0x8000_07FF)
        let extended = CANIDFilter(id: 0x100, mask: 0x7FF, isExtended: true, isInverted: true).kernelWords
        #expect(extended.id == 0xA000_0100 && extended.mask == 0x8000_07FF)
    }

    @Test("the kernel's drop total: an older total told by a frame read late is no step back; a wrap is a step on")
    func dropCount() {
        var count = KernelDropCount()
        count.note(0)        // a frame queued before any drop
        count.note(19_077)   // SO_MEMINFO after a burst
        count.note(0)        // a frame queued before that burst, read after the reading
        count.note(19_000)
        #expect(count.total == 19_077)
        count.note(19_080)
        #expect(count.total == 19_080)
        var wrapping = KernelDropCount()
        for total: UInt32 in [0x7000_0000, 0xE000_0000, .max - 5, 10] { wrapping.note(total) }
        #expect(wrapping.total == UInt64(UInt32.max) + 11)
    }

    static let roundTripFrames: [CANFrame] = [
        CANFrame(timestamp: .init(nanoseconds: 1), interface: "vcan0", id: 0x123, data: CANPayload([0xDE, 0xAD])),
        CANFrame(timestamp: .init(nanoseconds: 1), interface: "vcan0", id: 0x1ABC_DEF0, isExtended: true, data: CANPayload([1, 2, 3, 4, 5, 6, 7, 8])),
        CANFrame(timestamp: .init(nanoseconds: 1), interface: "vcan0", id: 0x7FF, kind: .remote, remoteLength: 3),
        CANFrame(timestamp: .init(nanoseconds: 1), interface: "vcan0", id: 0x321, isFD: true, bitRateSwitch: true,
                 errorStateIndicator: true, data: CANPayload((0..<64).map { UInt8($0) })),
        CANFrame(timestamp: .init(nanoseconds: 1), interface: "vcan0", id: 0x004, kind: .error, data: CANPayload([0, 1, 0, 0, 0, 0, 0, 0])),
    ]

    @Test("frames survive encoding to and decoding from the kernel struct", arguments: roundTripFrames)
    func codecRoundTrip(frame: CANFrame) throws {
        let (raw, size) = CANFrameCodec.encode(frame)
        #expect(size == (frame.isFD ? 72 : 16))
        let decoded = try #require(CANFrameCodec.decode(raw, byteCount: size, timestamp: frame.timestamp,
                                                        interface: frame.interface, isReceived: true))
        #expect(decoded == frame)
    }

    @Test("an FD payload of a length the bus cannot carry is padded to the next FD length")
    func fdPadding() throws {
        let frame = CANFrame(timestamp: .init(nanoseconds: 0), interface: "x", id: 1, isFD: true, data: CANPayload(Array(repeating: 0xAA, count: 10)))
        let (raw, size) = CANFrameCodec.encode(frame)
        let decoded = try #require(CANFrameCodec.decode(raw, byteCount: size, timestamp: frame.timestamp, interface: "x", isReceived: true))
        #expect(Array(decoded.data) == Array(repeating: 0xAA, count: 10) + [0, 0])
    }

    @Test("opening a bus that cannot exist names the interface and the failing call")
    func openError() {
        // Here (no CAN in the kernel) socket(AF_CAN) fails; on a CAN kernel the name lookup does.
        do {
            _ = try SocketCANBus(interface: "nosuchcan9")
            Issue.record("opening nosuchcan9 succeeded")
        } catch {
            #expect(error.code == .system)
            #expect(error.message.hasPrefix("nosuchcan9: "))
            #expect(error.message.contains("socket(AF_CAN") || error.message.contains("if_nametoindex"), "\(error.message)")
        }
    }

    @Test("vcan-free link info is all unknown, not an error")
    func linkInfoUnknown() {
        let info = CANLinkInfo.read(interface: "nosuchcan9")
        #expect(info.state == .unknown && info.bitrate == nil && info.transmitErrors == nil)
        #expect(info.description == "state=unknown bitrate=unknown berr=unknown")
    }
}
