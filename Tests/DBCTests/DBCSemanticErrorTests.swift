// DBC files that are well-formed line by line but wrong as a whole: a signal outside its message,
// two messages with one id, two signals with one name, a string that lost its closing quote.
// Each once went through silently (or was reported on the wrong line); cantools (strict) is the
// outside reference, and each test says which way it goes.
import DAQCore
import Testing
@testable import DBC

private let header = "VERSION \"\"\n\nBU_: ECU DAQ\n\n"   // lines 1–4

private func parseError(_ body: String) -> DAQError? {
    do {
        _ = try DBCDatabase.parse(text: header + body, file: "d.dbc")
        return nil
    } catch {
        return error
    }
}

private func signalLine(_ name: String, _ layout: String) -> String {
    " SG_ \(name) : \(layout) (1,0) [0|0] \"\" DAQ\n"
}

// cantools (strict): "The signal X does not fit in message Engine." — refused, for both byte orders.
@Test func aLittleEndianSignalPastTheMessageEndIsRefused() {
    let error = parseError("BO_ 100 Engine: 8 ECU\n" + signalLine("RPM", "0|16@1+") + signalLine("X", "60|16@1+"))
    #expect(error?.code == .malformedInput)
    #expect(error?.description == "d.dbc:7 [SG_ start bit]: signal X (start bit 60, 16 bits, little-endian) needs 10 bytes, "
        + "but message Engine is 8 bytes long")
}

/// Motorola start bits are the most significant bit in sawtooth numbering: `7|16@0` fills bytes 0–1,
/// `0|16@0` starts at the last bit of byte 0 and runs through byte 2, `15|16@0` fills bytes 1–2.
/// cantools (strict) refuses exactly the three that need more bytes than the message has.
@Test(arguments: [("7|16@0+", 2, nil), ("0|16@0+", 2, 3), ("15|16@0+", 2, 3), ("55|8@0+", 8, nil), ("56|8@0+", 8, 9)]
      as [(String, Int, Int?)])
func bigEndianSignalsAreMeasuredInSawtoothNumbering(layout: String, length: Int, needs: Int?) {
    let error = parseError("BO_ 200 Other: \(length) ECU\n" + signalLine("Y", layout))
    if let needs {
        let start = layout.prefix { $0 != "|" }
        let bits = layout.dropFirst(start.count + 1).prefix { $0 != "@" }
        #expect(error?.description == "d.dbc:6 [SG_ start bit]: signal Y (start bit \(start), \(bits) bits, big-endian) "
            + "needs \(needs) bytes, but message Other is \(length) bytes long")
    } else {
        #expect(error == nil, "\(error.map { "\($0)" } ?? "")")
    }
}

// cantools (strict and not) accepts this with only a logged warning, "Overwriting message 'A' with
// 'B' … identical masked frame ids", and then decodes id 200 as B. DAQLink refuses: one message
// would shadow the other.
@Test func aSecondMessageWithTheSameIdIsRefused() {
    let error = parseError("BO_ 200 A: 2 ECU\n" + signalLine("Y", "0|8@1+") + "\nBO_ 200 B: 2 ECU\n" + signalLine("Z", "0|8@1+"))
    #expect(error?.code == .malformedInput)
    #expect(error?.description == "d.dbc:8 [BO_ id]: message B has id 200, already used by message A on line 5")
}

@Test func aStandardAndAnExtendedIdWithTheSameNumberAreDifferentMessages() throws {
    let db = try DBCDatabase.parse(text: header + "BO_ 200 A: 2 ECU\n\nBO_ 2147483848 B: 2 ECU\n", file: "d.dbc")
    #expect(db.messages.map(\.name) == ["A", "B"])
}

// cantools (strict): "The signals Y and Y are overlapping in message A." here; non-strict it keeps
// both, and the decoded JSON then has the key twice. DAQLink refuses whatever the bits.
@Test(arguments: ["0|8@1+", "8|8@1+"])
func aSecondSignalWithTheSameNameIsRefused(secondLayout: String) {
    let error = parseError("BO_ 200 A: 2 ECU\n" + signalLine("Y", "0|8@1+") + signalLine("Y", secondLayout))
    #expect(error?.code == .malformedInput)
    #expect(error?.description == "d.dbc:7 [SG_ name]: message A already has a signal Y (line 6)")
}

@Test func theSameSignalNameInTwoMessagesIsFine() throws {
    let db = try DBCDatabase.parse(text: header + "BO_ 1 A: 1 ECU\n" + signalLine("Y", "0|8@1+")
                                   + "BO_ 2 B: 1 ECU\n" + signalLine("Y", "0|8@1+"), file: "d.dbc")
    #expect(db.messages.map { $0.signals.map(\.name) } == [["Y"], ["Y"]])
}

// A unit that lost its closing quote used to end at the next string's opening quote, and the error
// came from the next line (`d.dbc:7 [SG_ receivers]`). cantools also reports the next line
// ("Invalid syntax at line 7"); DAQLink names the line where the string starts.
@Test func anUnterminatedStringIsReportedWhereItStarts() {
    let error = parseError("BO_ 100 Engine: 8 ECU\n SG_ RPM : 0|16@1+ (1,0) [0|0] \"rpm DAQ\n" + signalLine("T", "16|8@1+"))
    #expect(error?.code == .malformedInput)
    #expect(error?.description == "d.dbc:6 [SG_ unit]: unterminated string: \"rpm DAQ has no closing '\"' on its line")
}

@Test func commentsMaySpanLines() throws {
    let db = try DBCDatabase.parse(text: header + "BO_ 100 Engine: 8 ECU\n" + signalLine("RPM", "0|16@1+")
                                   + "CM_ SG_ 100 RPM \"first line\nsecond line\";\nBA_DEF_ BO_ \"Note\" STRING ;\n"
                                   + "BA_ \"Note\" BO_ 100 \"a\nb\";\n", file: "d.dbc")
    #expect(db.messages[0].signals[0].comment == "first line\nsecond line")
}
