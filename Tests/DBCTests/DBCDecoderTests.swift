// Decoder tests: byte orders, sign, floats, scaling, multiplexing, id kinds, FD and short frames.
import DAQCore
import Testing
import TestSupport
@testable import DBC

private let dbc = """
VERSION ""
BU_: ECU DAQ

BO_ 256 Layout: 8 ECU
 SG_ LE16 : 0|16@1+ (1,0) [0|0] "" DAQ
 SG_ BE16 : 23|16@0+ (1,0) [0|0] "" DAQ
 SG_ BE12S : 39|12@0- (1,0) [0|0] "" DAQ
 SG_ LE12S : 48|12@1- (0.5,-3) [0|0] "" DAQ
 SG_ Bit : 63|1@1+ (1,0) [0|0] "" DAQ

BO_ 257 Floats: 16 ECU
 SG_ F32 : 0|32@1- (2,1) [0|0] "" DAQ
 SG_ F64 : 32|64@1- (1,0) [0|0] "" DAQ
 SG_ F32BE : 103|32@0- (1,0) [0|0] "" DAQ

BO_ 2566914048 Extended: 8 ECU
 SG_ Value : 0|32@1+ (0.001,0) [0|0] "" DAQ

BO_ 258 FDFrame: 64 ECU
 SG_ First : 7|8@0+ (1,0) [0|0] "" DAQ
 SG_ Straddle : 3|64@0+ (1,0) [0|0] "" DAQ
 SG_ Last : 504|8@1+ (1,0) [0|0] "" DAQ
 SG_ LastWide : 448|64@1+ (1,0) [0|0] "" DAQ

BO_ 259 Simple: 8 ECU
 SG_ Mux M : 0|8@1+ (1,0) [0|0] "" DAQ
 SG_ A m0 : 8|8@1+ (1,0) [0|0] "" DAQ
 SG_ B m1 : 8|16@1+ (1,0) [0|0] "" DAQ
 SG_ Always : 56|8@1+ (1,0) [0|0] "" DAQ

BO_ 260 Nested: 8 ECU
 SG_ Leaf m0 : 8|8@1+ (1,0) [0|0] "" DAQ
 SG_ Other m1 : 8|8@1+ (1,0) [0|0] "" DAQ
 SG_ Inner m0M : 4|4@1+ (1,0) [0|0] "" DAQ
 SG_ Top M : 0|4@1+ (1,0) [0|0] "" DAQ

SIG_VALTYPE_ 257 F32 : 1;
SIG_VALTYPE_ 257 F64 : 2;
SIG_VALTYPE_ 257 F32BE : 1;
SG_MUL_VAL_ 260 Inner Top 0-0;
SG_MUL_VAL_ 260 Leaf Inner 2-3, 5-5;
SG_MUL_VAL_ 260 Other Top 1-4;
"""

private func decoder() throws -> DBCDecoder { DBCDecoder(try DBCDatabase.parse(text: dbc, file: "decode.dbc")) }

private func decode(_ name: String, _ bytes: [UInt8], _ decoder: DBCDecoder) throws -> [String: Double] {
    let index = try #require(decoder.database.messages.firstIndex { $0.name == name })
    var values = decoder.makeValues()
    decoder.decode(message: index, payload: CANPayload(bytes), into: &values)
    var result: [String: Double] = [:]
    for (i, signal) in decoder.database.messages[index].signals.enumerated() where values.isPresent[i] {
        result[signal.name] = values.physical[i]
    }
    return result
}

@Test func byteOrdersSignAndScaling() throws {
    let d = try decoder()
    // LE16 = 0x1234; BE16 (bytes 2,3) = 0xABCD; BE12S (byte 4, high nibble of 5) = 0xFFE = -2;
    // LE12S (bits 48…59) = 0x800 = -2048 → -2048 × 0.5 − 3; Bit 63 set.
    let values = try decode("Layout", [0x34, 0x12, 0xAB, 0xCD, 0xFF, 0xE0, 0x00, 0x88], d)
    #expect(values == ["LE16": 0x1234, "BE16": 0xABCD, "BE12S": -2, "LE12S": -1027, "Bit": 1])
}

@Test func floatSignals() throws {
    let d = try decoder()
    var bytes = [UInt8](repeating: 0, count: 16)
    withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    withUnsafeBytes(of: (-1234.5678e100).bitPattern.littleEndian) { bytes.replaceSubrange(4..<12, with: $0) }
    withUnsafeBytes(of: Float(-0.25).bitPattern.bigEndian) { bytes.replaceSubrange(12..<16, with: $0) }
    let values = try decode("Floats", bytes, d)
    #expect(values == ["F32": 4, "F64": -1234.5678e100, "F32BE": -0.25])
}

@Test func extendedIdLookup() throws {
    let d = try decoder()
    let message = try #require(d.database.message(named: "Extended"))
    #expect(message.isExtended && message.id == 0x1900_0000)
    var values = d.makeValues()
    let frame = CANFrame(timestamp: Timestamp(nanoseconds: 0), interface: "can0", id: 0x1900_0000, isExtended: true,
                         data: CANPayload([0x10, 0x27, 0, 0]))
    let index = try #require(d.decode(frame, into: &values))
    #expect(d.database.messages[index].name == "Extended")
    #expect(abs(values.physical[0] - 10) < 1e-12)
    var standard = frame
    standard.isExtended = false
    #expect(d.decode(standard, into: &values) == nil)
    #expect(d.messageIndex(id: 256, isExtended: false) == 0)
    #expect(d.messageIndex(id: 256, isExtended: true) == nil)
}

@Test func fdFrameOf64Bytes() throws {
    let d = try decoder()
    var bytes = [UInt8](repeating: 0, count: 64)
    bytes[0] = 0xA5
    for i in 56..<64 { bytes[i] = UInt8(i) }
    bytes[63] = 0xEE
    let values = try decode("FDFrame", bytes, d)
    #expect(values["First"] == 0xA5 && values["Last"] == 0xEE)
    let wide = UInt64(56) | UInt64(57) << 8 | UInt64(58) << 16 | UInt64(59) << 24 | UInt64(60) << 32
        | UInt64(61) << 40 | UInt64(62) << 48 | UInt64(0xEE) << 56
    #expect(values["LastWide"] == Double(wide))
    // Straddle: 64 bits from the low nibble of byte 0 into the high nibble of byte 8 (a 9-byte field).
    #expect(values["Straddle"] == Double(UInt64(0x5) << 60))
}

@Test func simpleMultiplexing() throws {
    let d = try decoder()
    #expect(try decode("Simple", [0, 7, 8, 0, 0, 0, 0, 9], d) == ["Mux": 0, "A": 7, "Always": 9])
    #expect(try decode("Simple", [1, 7, 8, 0, 0, 0, 0, 9], d) == ["Mux": 1, "B": 0x807, "Always": 9])
    let index = try #require(d.messageIndex(id: 259, isExtended: false))
    var values = d.makeValues()
    d.decode(message: index, payload: CANPayload([9, 7, 8, 0, 0, 0, 0, 9]), into: &values)
    #expect(values.hasUnselectedMultiplexer)
    d.decode(message: index, payload: CANPayload([1, 7, 8, 0, 0, 0, 0, 9]), into: &values)
    #expect(!values.hasUnselectedMultiplexer)
}

@Test func extendedMultiplexingChains() throws {
    let d = try decoder()
    // Top = 0 selects Inner; Inner = 3 selects Leaf (range 2-3).
    #expect(try decode("Nested", [0x30, 0x42, 0, 0, 0, 0, 0, 0], d) == ["Top": 0, "Inner": 3, "Leaf": 0x42])
    // Inner = 4 selects nothing.
    #expect(try decode("Nested", [0x40, 0x42, 0, 0, 0, 0, 0, 0], d) == ["Top": 0, "Inner": 4])
    // Top = 3 selects Other (range 1-4), not Inner or Leaf.
    #expect(try decode("Nested", [0x33, 0x42, 0, 0, 0, 0, 0, 0], d) == ["Top": 3, "Other": 0x42])
}

@Test func shortPayloadDecodesOnlyWholeSignals() throws {
    let d = try decoder()
    #expect(try decode("Layout", [0x34, 0x12, 0xAB], d) == ["LE16": 0x1234])
    #expect(try decode("Layout", [], d) == [:])
}

/// The decoder's shift/mask plan against the bit-by-bit encoder, over random layouts.
@Test(arguments: [1, 2, 3, 4])
func randomLayoutsRoundTrip(seed: UInt64) throws {
    var rng = SeededGenerator(seed: seed)
    for _ in 0..<2000 {
        let length = Int(rng.next() % 64) + 1
        let bigEndian = rng.next() % 2 == 0
        let signed = rng.next() % 2 == 0
        let streamStart = Int(rng.next() % UInt64(512 - length + 1))
        let startBit = bigEndian ? (streamStart / 8) * 8 + (7 - streamStart % 8) : streamStart
        let signal = DBCSignal(name: "S", startBit: startBit, length: length,
                               byteOrder: bigEndian ? .bigEndian : .littleEndian, isSigned: signed)
        let db = DBCDatabase(messages: [DBCMessage(name: "M", id: 1, isFD: true, length: 64, signals: [signal])])
        let d = DBCDecoder(db)
        var payload = CANPayload((0..<64).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        let rawValue = rng.next() & (length == 64 ? ~0 : (1 << UInt64(length)) - 1)
        signal.encode(raw: rawValue, into: &payload)
        var values = d.makeValues()
        d.decode(message: 0, payload: payload, into: &values)
        let unused = UInt64(64 - length)
        let expected = signed ? UInt64(bitPattern: Int64(bitPattern: rawValue << unused) >> unused) : rawValue
        #expect(values.raw[0] == expected, "start \(startBit) length \(length) \(bigEndian ? "BE" : "LE")")
    }
}

