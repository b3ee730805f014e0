// Bad DBC input: every error names the file, the line and the field, and says what was expected.
import DAQCore
import Testing
@testable import DBC

private struct BadInput: Sendable, CustomTestStringConvertible {
    var text: String
    var line: Int
    var field: String
    var message: String
    var testDescription: String { "\(field) @ line \(line)" }
}

private let badInputs: [BadInput] = [
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : x|8@1+ (1,0) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ start bit", message: "expected an integer, found 'x'"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@2+ (1,0) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ byte order", message: "expected 0 (big-endian) or 1 (little-endian), found '2'"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@1* (1,0) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ signedness", message: "expected + (unsigned) or - (signed), found '*'"),
    BadInput(text: "BO_ 1 M: 8 ECU\n\n SG_ S : 0|8@1+ (abc,0) [0|0] \"\" DAQ\n",
             line: 3, field: "SG_ factor", message: "expected a number, found 'abc'"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|0@1+ (1,0) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ length", message: "signal length 0 is not 1…64 bits"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1e400,0) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ factor", message: "factor is beyond the range of a double"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,-1e999) [0|0] \"\" DAQ\n",
             line: 2, field: "SG_ offset", message: "offset is beyond the range of a double"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] \"unit DAQ\n",
             line: 2, field: "SG_ unit", message: "string opened on line 2 is not closed before the end of the file"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 0|8@1+ (1,0) [0|0 \"\" DAQ\n",
             line: 2, field: "SG_ maximum", message: "expected ']', found '\"'"),
    BadInput(text: "BO_ 1 M: 65 ECU\n", line: 1, field: "BO_ length", message: "message length 65 is not 0…64 bytes"),
    BadInput(text: "BO_ 4096 M: 8 ECU\n", line: 1, field: "BO_ id",
             message: "standard (11-bit) id 4096 is above 2047; set bit 31 for a 29-bit id"),
    BadInput(text: "BO_ one M: 8 ECU\n", line: 1, field: "BO_ id", message: "expected an integer, found 'one'"),
    BadInput(text: " SG_ S : 0|8@1+ (1,0) [0|0] \"\" DAQ\n", line: 1, field: "SG_",
             message: "SG_ before any BO_: a signal must follow its message"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S m1 : 0|8@1+ (1,0) [0|0] \"\" DAQ\n", line: 2,
             field: "SG_ multiplexer indicator", message: "signal S is multiplexed (m1) but message M has no M signal"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S x1 : 0|8@1+ (1,0) [0|0] \"\" DAQ\n", line: 2,
             field: "SG_ multiplexer indicator", message: "expected M, mN or mNM, found 'x1'"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 60|8@1+ (1,0) [0|0] \"\" DAQ\n\nSIG_VALTYPE_ 1 S : 1;\n", line: 4,
             field: "SIG_VALTYPE_ type", message: "S is 8 bits long; a float32 signal needs 32"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S M : 0|8@1+ (1,0) [0|0] \"\" DAQ\n SG_ T m1 : 8|8@1+ (1,0) [0|0] \"\" DAQ\n"
                 + "SG_MUL_VAL_ 1 T Nope 1-1;\n", line: 4, field: "SG_MUL_VAL_ multiplexer",
             message: "message M has no multiplexer signal Nope for T"),
    BadInput(text: "BO_ 1 M: 8 ECU\nSG_MUL_VAL_ 1 T S 3-1;\n", line: 2, field: "SG_MUL_VAL_ range",
             message: "range 3-1 is empty"),
    BadInput(text: "BO_ 1 M: 8 ECU\n SG_ S : 510|8@1+ (1,0) [0|0] \"\" DAQ\n", line: 2, field: "SG_ start bit",
             message: "signal S (start bit 510, 8 bits) runs past a 64-byte payload"),
    BadInput(text: "VERSION \"\"\n\n123\n", line: 3, field: "statement",
             message: "expected a keyword such as BO_ or SG_, found '123'"),
]

@Test(arguments: badInputs)
private func malformedInputNamesFileLineAndField(_ input: BadInput) {
    #expect {
        try DBCDatabase.parse(text: input.text, file: "bad.dbc")
    } throws: { error in
        guard let error = error as? DAQError else { return false }
        #expect(error.code == .malformedInput)
        #expect(error.location == InputLocation(file: "bad.dbc", line: input.line, field: input.field))
        #expect(error.message == input.message)
        return true
    }
}

@Test func errorDescriptionReadsLikeACompilerMessage() {
    #expect {
        try DBCDatabase.parse(text: "VERSION \"\"\n\nBO_ 1 M: 8 ECU\n SG_ S : x|8@1+ (1,0) [0|0] \"\" DAQ\n", file: "vehicle.dbc")
    } throws: { error in
        "\(error)" == "vehicle.dbc:4 [SG_ start bit]: expected an integer, found 'x'"
    }
}
