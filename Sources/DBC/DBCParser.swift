// The DBC parser: statement dispatch, messages (`BO_`) and signals (`SG_`).
import DAQCore

/// An attribute value as written: a number or a quoted string.
enum DBCAttributeValue: Sendable, Hashable {
    case number(Double)
    case text(String)
}

/// A message while its file is being read: the message plus what later sections refer to.
struct PendingMessage {
    var message: DBCMessage
    /// The id as the file writes it (bit 31 = extended), the key of `VAL_`, `BA_`, `CM_` lines.
    var fileID: UInt32
    /// Line of the `BO_`.
    var line: Int
    /// Line of each signal's `SG_`, for errors found after the message was read.
    var signalLines: [Int] = []
    /// The `N` of `mN` / `mNM` per signal.
    var multiplexValues: [Int64?] = []
    /// `SG_MUL_VAL_` per signal index: multiplexer name, ranges, line.
    var explicitSelectors: [Int: (multiplexer: String, values: [ClosedRange<Int64>], line: Int)] = [:]
    var cycleTime: DBCAttributeValue?
    var frameFormat: DBCAttributeValue?
}

/// Reads a DBC file into a `DBCDatabase`. Unknown sections are skipped; errors name file, line
/// and the field that was wrong.
struct DBCParser {
    var scanner: DBCScanner
    var version = ""
    var nodes: [String] = []
    var messages: [PendingMessage] = []
    /// File id (with bit 31) → index in `messages`.
    var messageIndex: [UInt32: Int] = [:]
    /// Index of the message `SG_` lines belong to; nil before the first `BO_`.
    var currentMessage: Int?
    var valueTables: [String: [Int64: String]] = [:]
    /// `BA_DEF_` enum values by attribute name (an enum attribute's value is an index into them).
    var attributeEnums: [String: [String]] = [:]
    var attributeDefaults: [String: DBCAttributeValue] = [:]

    /// Statements the parser knows; an unknown statement is skipped up to its `;` or up to a
    /// line starting with one of these.
    static let keywords: Set<String> = [
        "VERSION", "NS_", "BS_", "BU_", "BO_", "SG_", "CM_", "BA_DEF_", "BA_DEF_DEF_", "BA_", "VAL_",
        "VAL_TABLE_", "SIG_VALTYPE_", "SG_MUL_VAL_", "EV_", "ENVVAR_DATA_", "BO_TX_BU_", "SIG_GROUP_",
        "SGTYPE_", "SGTYPE_VAL_", "SIG_TYPE_REF_", "SIGTYPE_VALTYPE_", "BA_DEF_REL_", "BA_REL_",
        "BA_DEF_DEF_REL_", "BA_DEF_SGTYPE_", "BA_SGTYPE_", "BU_SG_REL_", "BU_EV_REL_", "BU_BO_REL_",
        "CAT_DEF_", "CAT_", "FILTER", "EV_DATA_",
    ]

    /// The pseudo message Vector tools use to hold signals not sent in any frame.
    static let independentSignalsMessage = "VECTOR__INDEPENDENT_SIG_MSG"

    init(bytes: UnsafeBufferPointer<UInt8>, file: String) {
        scanner = DBCScanner(bytes: bytes, file: file)
    }

    mutating func parseDatabase() throws(DAQError) -> DBCDatabase {
        while true {
            scanner.skipSpace()
            if scanner.isAtEnd { break }
            if scanner.consume(UInt8(ascii: ";")) { continue }
            let startsWithDigit = scanner.peek.map { $0 >= 0x30 && $0 <= 0x39 } ?? false
            guard !startsWithDigit, let keyword = scanner.identifier() else {
                throw scanner.failure("expected a keyword such as BO_ or SG_, found \(scanner.nextTokenDescription())",
                                      field: "statement")
            }
            try parseStatement(keyword)
        }
        return try finish()
    }

    private mutating func parseStatement(_ keyword: String) throws(DAQError) {
        switch keyword {
        case "VERSION":
            version = try scanner.expectString(field: "VERSION")
        case "NS_":
            // The new-symbols list: one name per line, indented or not (some tools write them at
            // column 0, and they are keywords: `CM_` alone was read as a comment statement), up
            // to the next line with more on it than one name.
            scanner.skipLine()
            while !scanner.isAtEnd, scanner.atColumnZero, scanner.restOfLineIsOneWordAtMost() {
                scanner.skipLine()
            }
        case "BS_":
            scanner.skipLine()
        case "BU_":
            try scanner.expect(UInt8(ascii: ":"), field: "BU_")
            while !scanner.atLineEnd(), let node = scanner.identifier() { nodes.append(node) }
        case "BO_":
            try parseMessage()
        case "SG_":
            try parseSignal()
        case "VAL_TABLE_":
            let name = try scanner.expectIdentifier(field: "VAL_TABLE_ name")
            valueTables[name] = try parseValueDescriptions(statement: "VAL_TABLE_")
        case "VAL_":
            try parseSignalValueTable()
        case "CM_":
            try parseComment()
        case "BA_DEF_":
            try parseAttributeDefinition()
        case "BA_DEF_DEF_":
            try parseAttributeDefault()
        case "BA_":
            try parseAttribute()
        case "SIG_VALTYPE_":
            try parseSignalValueType()
        case "SG_MUL_VAL_":
            try parseExtendedMultiplexing()
        default:
            scanner.skipStatement(untilKeywordIn: Self.keywords)
        }
    }

    // MARK: BO_

    /// `BO_ <id> <name>: <length> <sender>`
    private mutating func parseMessage() throws(DAQError) {
        let line = scanner.line
        let rawID = try scanner.expectInteger(field: "BO_ id")
        guard rawID >= 0 && rawID <= 0xFFFF_FFFF else {
            throw scanner.failure("message id \(rawID) does not fit in 32 bits", field: "BO_ id")
        }
        let fileID = UInt32(rawID)
        let name = try scanner.expectIdentifier(field: "BO_ name")
        try scanner.expect(UInt8(ascii: ":"), field: "BO_ name")
        let length = try scanner.expectInteger(field: "BO_ length")
        guard length >= 0 && length <= 64 else {
            throw scanner.failure("message length \(length) is not 0…64 bytes", field: "BO_ length")
        }
        var sender = "Vector__XXX"
        if !scanner.atLineEnd() { sender = try scanner.expectIdentifier(field: "BO_ sender") }
        let isExtended = fileID & CANFrame.extendedFlag != 0
        let id = fileID & (isExtended ? CANFrame.extendedMask : 0x7FFF_FFFF)
        if !isExtended && id > CANFrame.standardMask && name != Self.independentSignalsMessage {
            throw DAQError.malformed("standard (11-bit) id \(id) is above 2047; set bit 31 for a 29-bit id",
                                     file: scanner.file, line: line, field: "BO_ id")
        }
        // A second `BO_` with the same id would shadow the first in every lookup by id.
        if let earlier = messageIndex[fileID] {
            throw DAQError.malformed(
                "message \(name) has id \(fileID), already used by message \(messages[earlier].message.name) on line \(messages[earlier].line)",
                file: scanner.file, line: line, field: "BO_ id")
        }
        let message = DBCMessage(name: name, id: id, isExtended: isExtended, isFD: length > 8,
                                 length: Int(length), sender: sender)
        messages.append(PendingMessage(message: message, fileID: fileID, line: line))
        currentMessage = messages.count - 1
        messageIndex[fileID] = messages.count - 1
    }

    // MARK: SG_

    /// `SG_ <name> [M|mN|mNM] : <start>|<length>@<order><sign> (<factor>,<offset>) [<min>|<max>] "<unit>" <receivers>`
    private mutating func parseSignal() throws(DAQError) {
        let line = scanner.line
        guard let messageIndex = currentMessage else {
            throw scanner.failure("SG_ before any BO_: a signal must follow its message", field: "SG_")
        }
        let name = try scanner.expectIdentifier(field: "SG_ name")
        var isMultiplexer = false
        var multiplexValue: Int64?
        if !scanner.consume(UInt8(ascii: ":")) {
            let indicator = try scanner.expectIdentifier(field: "SG_ multiplexer indicator")
            guard let parsed = Self.multiplexIndicator(indicator) else {
                throw scanner.failure("expected M, mN or mNM, found '\(indicator)'", field: "SG_ multiplexer indicator")
            }
            (isMultiplexer, multiplexValue) = parsed
            try scanner.expect(UInt8(ascii: ":"), field: "SG_ multiplexer indicator")
        }
        let start = try scanner.expectInteger(field: "SG_ start bit")
        try scanner.expect(UInt8(ascii: "|"), field: "SG_ start bit")
        let length = try scanner.expectInteger(field: "SG_ length")
        try scanner.expect(UInt8(ascii: "@"), field: "SG_ length")
        let byteOrder: DBCByteOrder
        switch scanner.peek {
        case UInt8(ascii: "0"): byteOrder = .bigEndian
        case UInt8(ascii: "1"): byteOrder = .littleEndian
        default:
            throw scanner.failure("expected 0 (big-endian) or 1 (little-endian), found \(scanner.nextByteDescription())",
                                  field: "SG_ byte order")
        }
        _ = scanner.consume(scanner.peek!)
        let isSigned: Bool
        switch scanner.peek {
        case UInt8(ascii: "+"): isSigned = false
        case UInt8(ascii: "-"): isSigned = true
        default:
            throw scanner.failure("expected + (unsigned) or - (signed), found \(scanner.nextByteDescription())",
                                  field: "SG_ signedness")
        }
        _ = scanner.consume(scanner.peek!)
        try scanner.expect(UInt8(ascii: "("), field: "SG_ factor")
        let factor = try scanner.expectNumber(field: "SG_ factor")
        try scanner.expect(UInt8(ascii: ","), field: "SG_ factor")
        let offset = try scanner.expectNumber(field: "SG_ offset")
        try scanner.expect(UInt8(ascii: ")"), field: "SG_ offset")
        try scanner.expect(UInt8(ascii: "["), field: "SG_ minimum")
        let minimum = try scanner.expectNumber(field: "SG_ minimum")
        try scanner.expect(UInt8(ascii: "|"), field: "SG_ minimum")
        let maximum = try scanner.expectNumber(field: "SG_ maximum")
        try scanner.expect(UInt8(ascii: "]"), field: "SG_ maximum")
        let unit = try scanner.expectString(field: "SG_ unit")
        var receivers: [String] = []
        while !scanner.atLineEnd() {
            if scanner.consume(UInt8(ascii: ",")) { continue }
            receivers.append(try scanner.expectIdentifier(field: "SG_ receivers"))
        }

        guard length >= 1 && length <= 64 else {
            throw DAQError.malformed("signal length \(length) is not 1…64 bits", file: scanner.file, line: line,
                                     field: "SG_ length")
        }
        // 1e400 reads as infinity: every value of the signal would decode to null.
        for (value, field) in [(factor, "SG_ factor"), (offset, "SG_ offset")] where !value.isFinite {
            throw DAQError.malformed("\(field.dropFirst(4)) is beyond the range of a double", file: scanner.file, line: line, field: field)
        }
        guard start >= 0 && start < 512 else {
            throw DAQError.malformed("start bit \(start) is outside a 64-byte payload", file: scanner.file, line: line,
                                     field: "SG_ start bit")
        }
        // Decoded values are keyed by signal name, and VAL_, CM_ and SG_MUL_VAL_ find signals by it.
        if let earlier = messages[messageIndex].message.signalIndex(named: name) {
            throw DAQError.malformed(
                "message \(messages[messageIndex].message.name) already has a signal \(name) (line \(messages[messageIndex].signalLines[earlier]))",
                file: scanner.file, line: line, field: "SG_ name")
        }
        let signal = DBCSignal(
            name: name, startBit: Int(start), length: Int(length), byteOrder: byteOrder, isSigned: isSigned,
            factor: factor, offset: offset, minimum: minimum, maximum: maximum, unit: unit,
            receivers: receivers, isMultiplexer: isMultiplexer)
        guard signal.streamStart + signal.length <= 512 else {
            throw DAQError.malformed("signal \(name) (start bit \(start), \(length) bits) runs past a 64-byte payload",
                                     file: scanner.file, line: line, field: "SG_ start bit")
        }
        messages[messageIndex].message.signals.append(signal)
        messages[messageIndex].signalLines.append(line)
        messages[messageIndex].multiplexValues.append(multiplexValue)
    }

    /// `M` → multiplexer; `m3` → multiplexed by value 3; `m3M` → both.
    static func multiplexIndicator(_ text: String) -> (isMultiplexer: Bool, value: Int64?)? {
        if text == "M" { return (true, nil) }
        var utf8 = Substring(text).utf8
        guard utf8.first == UInt8(ascii: "m") else { return nil }
        utf8 = utf8.dropFirst()
        var isMultiplexer = false
        if utf8.last == UInt8(ascii: "M") {
            isMultiplexer = true
            utf8 = utf8.dropLast()
        }
        guard !utf8.isEmpty, utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = Int64(Substring(utf8)) else { return nil }
        return (isMultiplexer, value)
    }
}
