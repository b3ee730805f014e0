// Parser tests: every DBC construct the decoder and later stages rely on, one small text each.
import DAQCore
import Foundation
import Testing
import TestSupport
@testable import DBC

private let header = """
VERSION "1.2"

NS_ :
\tNS_DESC_
\tCM_
\tBA_DEF_
\tSG_MUL_VAL_

BS_:

BU_: ECU DAQ Gateway

"""

private func parse(_ body: String, file: String = "test.dbc") throws(DAQError) -> DBCDatabase {
    try DBCDatabase.parse(text: header + body, file: file)
}

@Test func versionNodesAndMessage() throws {
    let db = try parse("""
    BO_ 291 Engine: 8 ECU
     SG_ Speed : 0|16@1+ (0.25,-10) [-10|16373.75] "rpm" DAQ,Gateway
     SG_ Temp : 23|12@0- (0.1,0) [-204.8|204.7] "°C" DAQ

    """)
    #expect(db.version == "1.2")
    #expect(db.nodes == ["ECU", "DAQ", "Gateway"])
    let message = try #require(db.message(named: "Engine"))
    #expect(message.id == 291 && !message.isExtended && message.length == 8 && message.sender == "ECU")
    #expect(!message.isFD && message.cycleTime == nil)
    let speed = message.signals[0]
    #expect(speed.startBit == 0 && speed.length == 16 && speed.byteOrder == .littleEndian && !speed.isSigned)
    #expect(speed.factor == 0.25 && speed.offset == -10 && speed.minimum == -10 && speed.maximum == 16373.75)
    #expect(speed.unit == "rpm" && speed.receivers == ["DAQ", "Gateway"])
    let temp = message.signals[1]
    #expect(temp.byteOrder == .bigEndian && temp.isSigned && temp.unit == "°C" && temp.receivers == ["DAQ"])
}

@Test func extendedIdAndFDAttributes() throws {
    let db = try parse("""
    BO_ 2147484000 Big: 64 ECU
     SG_ Last : 504|8@1+ (1,0) [0|255] "" DAQ

    BO_ 100 Classic: 8 ECU
     SG_ A : 0|8@1+ (1,0) [0|0] "" DAQ

    BA_DEF_ BO_  "GenMsgCycleTime" INT 0 10000;
    BA_DEF_ BO_  "VFrameFormat" ENUM  "StandardCAN","ExtendedCAN","StandardCAN_FD","ExtendedCAN_FD";
    BA_DEF_DEF_  "GenMsgCycleTime" 100;
    BA_DEF_DEF_  "VFrameFormat" "StandardCAN";
    BA_ "GenMsgCycleTime" BO_ 2147484000 20;
    BA_ "VFrameFormat" BO_ 2147484000 3;

    """)
    let big = try #require(db.message(named: "Big"))
    #expect(big.isExtended && big.id == 352 && big.length == 64 && big.isFD && big.cycleTime == 20)
    let classic = try #require(db.message(named: "Classic"))
    #expect(!classic.isFD && classic.cycleTime == 100)
    #expect(db.message(id: 352, isExtended: true)?.name == "Big")
    #expect(db.message(id: 352, isExtended: false) == nil)
}

@Test func valueTablesCommentsAndFloatTypes() throws {
    let db = try parse("""
    VAL_TABLE_ Gear 0 "Park" 1 "Drive" -1 "Reverse" ;

    BO_ 1 Values: 8 ECU
     SG_ Gear : 0|8@1- (1,0) [0|0] "" DAQ
     SG_ Ratio : 32|32@1- (1,0) [0|0] "" DAQ

    BO_ 2 Wide: 8 ECU
     SG_ Exact : 0|64@1- (1,0) [0|0] "" DAQ

    CM_ "database comment; with a semicolon";
    CM_ BO_ 1 "Multi-line
    comment with \\"quotes\\"";
    CM_ SG_ 1 Gear "Selected gear";
    CM_ BU_ ECU "the engine ECU";
    VAL_ 1 Gear 0 "Park" 1 "Drive" -1 "Reverse" ;
    SIG_VALTYPE_ 1 Ratio : 1;
    SIG_VALTYPE_ 2 Exact : 2;

    """)
    #expect(db.valueTables["Gear"] == [0: "Park", 1: "Drive", -1: "Reverse"])
    let values = try #require(db.message(named: "Values"))
    #expect(values.comment == "Multi-line\ncomment with \"quotes\"")
    #expect(values.signals[0].valueTable == [0: "Park", 1: "Drive", -1: "Reverse"])
    #expect(values.signals[0].comment == "Selected gear")
    #expect(values.signals[1].valueType == .float32)
    #expect(db.message(named: "Wide")?.signals[0].valueType == .float64)
}

@Test func simpleAndExtendedMultiplexing() throws {
    let db = try parse("""
    BO_ 10 Simple: 8 ECU
     SG_ Mux M : 0|8@1+ (1,0) [0|0] "" DAQ
     SG_ A m0 : 8|8@1+ (1,0) [0|0] "" DAQ
     SG_ B m1 : 8|16@1+ (1,0) [0|0] "" DAQ

    BO_ 11 Nested: 8 ECU
     SG_ Top M : 0|4@1+ (1,0) [0|0] "" DAQ
     SG_ Inner m0M : 4|4@1+ (1,0) [0|0] "" DAQ
     SG_ Leaf m0 : 8|8@1+ (1,0) [0|0] "" DAQ
     SG_ Other m1 : 8|8@1+ (1,0) [0|0] "" DAQ

    SG_MUL_VAL_ 11 Inner Top 0-0;
    SG_MUL_VAL_ 11 Leaf Inner 2-3, 5-5;
    SG_MUL_VAL_ 11 Other Top 1-4;

    """)
    let simple = try #require(db.message(named: "Simple"))
    #expect(simple.signals[0].isMultiplexer && simple.signals[0].multiplexedBy == nil)
    #expect(simple.signals[1].multiplexedBy == DBCMultiplexSelector(multiplexer: "Mux", values: [0...0]))
    #expect(simple.signals[2].multiplexedBy == DBCMultiplexSelector(multiplexer: "Mux", values: [1...1]))
    let nested = try #require(db.message(named: "Nested"))
    #expect(nested.signals[1].isMultiplexer)
    #expect(nested.signals[1].multiplexedBy == DBCMultiplexSelector(multiplexer: "Top", values: [0...0]))
    #expect(nested.signals[2].multiplexedBy == DBCMultiplexSelector(multiplexer: "Inner", values: [2...3, 5...5]))
    #expect(nested.signals[3].multiplexedBy == DBCMultiplexSelector(multiplexer: "Top", values: [1...4]))
}

@Test func unknownSectionsAreSkipped() throws {
    let db = try parse("""
    BO_ 5 Known: 2 ECU
     SG_ X : 0|8@1+ (1,0) [0|0] "" DAQ

    BO_TX_BU_ 5 : ECU,Gateway;
    EV_ EnvVar: 0 [0|100] "" 0 1 DUMMY_NODE_VECTOR0 Vector__XXX;
    ENVVAR_DATA_ EnvVar: 4;
    SIG_GROUP_ 5 Group 1 : X;
    BA_DEF_REL_ BU_SG_REL_ "Rel" INT 0 1;
    BA_REL_ "Rel" BU_SG_REL_ ECU SG_ 5 X 1;
    VAL_ EnvVar 0 "off" 1 "on" ;
    SGTYPE_ T : 8@1+ (1,0) [0|0] "" 0;
    BA_DEF_ SG_  "SigNote" STRING ;
    BA_ "SigNote" SG_ 5 X "text; with semicolon";
    CM_ EV_ EnvVar "env";
    BA_ "DBName" "db";

    """)
    #expect(db.messages.map(\.name) == ["Known"])
}

@Test(arguments: ["abs", "choices", "floating_point", "motohawk", "multiplex", "multiplex_2", "signed",
                  "toyota_prius_2010_pt", "vehicle", "vw_mqb"])
func realFilesParse(name: String) throws {
    let url = PackagePaths.shared.appendingPathComponent("public-data/dbc/\(name).dbc")
    let bytes = try [UInt8](Data(contentsOf: url))
    let db = try DBCDatabase.parse(bytes: bytes, file: "\(name).dbc")
    #expect(!db.messages.isEmpty)
    #expect(db.messages.allSatisfy { !$0.name.isEmpty && $0.length <= 64 })
}

/// Some tools write the NS_ list at column 0; its entries are keywords (`CM_` alone was read as a
/// comment statement and refused the file; cantools loads it).
@Test func newSymbolsAtColumnZeroAreSkipped() throws {
    let text = "VERSION \"\"\n\nNS_ :\nCM_\nBA_DEF_\nVAL_\n\nBS_:\n\nBU_: ECU\n\nBO_ 100 M: 1 ECU\n SG_ S : 0|8@1+ (1,0) [0|0] \"\" ECU\n\nCM_ SG_ 100 S \"a signal\";\n"
    let db = try parse(text)
    #expect(db.messages.first?.signals.first?.comment == "a signal")
}
