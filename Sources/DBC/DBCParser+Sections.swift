// The DBC statements that annotate messages and signals: value tables, comments, attributes,
// float value types and extended multiplexing.
import DAQCore

extension DBCParser {
    // MARK: VAL_ / VAL_TABLE_

    /// `{<integer> "<text>"} ;`
    mutating func parseValueDescriptions(statement: String) throws(DAQError) -> [Int64: String] {
        var table: [Int64: String] = [:]
        while !scanner.consume(UInt8(ascii: ";")) {
            if scanner.isAtEnd {
                throw scanner.failure("expected ';' to end the value descriptions, found end of file", field: "\(statement) end")
            }
            // Keys exactly as written (as a double, 2^64 − 1 was refused and keys past 2^53 rounded).
            let raw: Int64
            if let key = scanner.valueKey() {
                raw = key
            } else {
                let number = try scanner.expectNumber(field: "\(statement) value")
                guard number.rounded(.towardZero) == number, let exact = Int64(exactly: number) else {
                    throw scanner.failure("value \(number) is not an integer", field: "\(statement) value")
                }
                raw = exact
            }
            table[raw] = try scanner.expectString(field: "\(statement) description")
        }
        return table
    }

    /// `VAL_ <message id> <signal> {<integer> "<text>"} ;` (the environment-variable form is skipped).
    mutating func parseSignalValueTable() throws(DAQError) {
        scanner.skipSpace()
        guard let byte = scanner.peek, byte >= 0x30 && byte <= 0x39 || byte == UInt8(ascii: "-") else {
            scanner.skipStatement(untilKeywordIn: Self.keywords)
            return
        }
        let target = try signalReference(statement: "VAL_")
        let table = try parseValueDescriptions(statement: "VAL_")
        if let (m, s) = target { messages[m].message.signals[s].valueTable = table }
    }

    // MARK: CM_

    /// `CM_ [BU_ <node> | BO_ <id> | SG_ <id> <signal> | EV_ <name>] "<text>" ;`
    mutating func parseComment() throws(DAQError) {
        if scanner.atString() {
            _ = try scanner.expectString(field: "CM_ text", spansLines: true)
        } else {
            let kind = try scanner.expectIdentifier(field: "CM_ object type")
            switch kind {
            case "BO_":
                let index = try messageReference(statement: "CM_")
                let text = try scanner.expectString(field: "CM_ text", spansLines: true)
                if let index { messages[index].message.comment = text }
            case "SG_":
                let target = try signalReference(statement: "CM_")
                let text = try scanner.expectString(field: "CM_ text", spansLines: true)
                if let (m, s) = target { messages[m].message.signals[s].comment = text }
            case "BU_", "EV_":
                _ = try scanner.expectIdentifier(field: "CM_ \(kind) name")
                _ = try scanner.expectString(field: "CM_ text", spansLines: true)
            default:
                throw scanner.failure("expected BU_, BO_, SG_ or EV_, found '\(kind)'", field: "CM_ object type")
            }
        }
        try scanner.expect(UInt8(ascii: ";"), field: "CM_ end")
    }

    // MARK: BA_DEF_ / BA_DEF_DEF_ / BA_

    /// `BA_DEF_ [BU_|BO_|SG_|EV_] "<name>" <type> … ;` — enum values are kept to resolve indices.
    mutating func parseAttributeDefinition() throws(DAQError) {
        if !scanner.atString() { _ = try scanner.expectIdentifier(field: "BA_DEF_ object type") }
        let name = try scanner.expectString(field: "BA_DEF_ name")
        let type = try scanner.expectIdentifier(field: "BA_DEF_ type")
        if type == "ENUM" {
            var values: [String] = []
            while !scanner.consume(UInt8(ascii: ";")) {
                if scanner.consume(UInt8(ascii: ",")) { continue }
                values.append(try scanner.expectString(field: "BA_DEF_ enum value"))
            }
            attributeEnums[name] = values
        } else {
            scanner.skipStatement(untilKeywordIn: Self.keywords)
        }
    }

    /// `BA_DEF_DEF_ "<name>" <value> ;`
    mutating func parseAttributeDefault() throws(DAQError) {
        let name = try scanner.expectString(field: "BA_DEF_DEF_ name")
        attributeDefaults[name] = try attributeValue(field: "BA_DEF_DEF_ value")
        try scanner.expect(UInt8(ascii: ";"), field: "BA_DEF_DEF_ end")
    }

    /// `BA_ "<name>" [BU_ <node> | BO_ <id> | SG_ <id> <signal> | EV_ <name>] <value> ;`
    /// Message attributes `GenMsgCycleTime` and `VFrameFormat` are kept; others are read and dropped.
    mutating func parseAttribute() throws(DAQError) {
        let name = try scanner.expectString(field: "BA_ name")
        var message: Int?
        if !scanner.atString(), let kind = scanner.identifier() {
            switch kind {
            case "BO_":
                message = try messageReference(statement: "BA_")
            case "SG_":
                _ = try signalReference(statement: "BA_")
            case "BU_", "EV_":
                _ = try scanner.expectIdentifier(field: "BA_ \(kind) name")
            default:
                // A relation attribute or something newer: not needed for decoding.
                scanner.skipStatement(untilKeywordIn: Self.keywords)
                return
            }
        }
        let value = try attributeValue(field: "BA_ value")
        try scanner.expect(UInt8(ascii: ";"), field: "BA_ end")
        guard let message else { return }
        if name == "GenMsgCycleTime" { messages[message].cycleTime = value }
        if name == "VFrameFormat" { messages[message].frameFormat = value }
    }

    private mutating func attributeValue(field: String) throws(DAQError) -> DBCAttributeValue {
        if scanner.atString() { return .text(try scanner.expectString(field: field, spansLines: true)) }
        return .number(try scanner.expectNumber(field: field))
    }

    // MARK: SIG_VALTYPE_

    /// `SIG_VALTYPE_ <id> <signal> : <0|1|2> ;` — 1 is float32, 2 is float64.
    mutating func parseSignalValueType() throws(DAQError) {
        let line = scanner.line
        let target = try signalReference(statement: "SIG_VALTYPE_")
        _ = scanner.consume(UInt8(ascii: ":"))
        let code = try scanner.expectInteger(field: "SIG_VALTYPE_ type")
        try scanner.expect(UInt8(ascii: ";"), field: "SIG_VALTYPE_ end")
        guard let (m, s) = target else { return }
        let type: DBCValueType
        let bits: Int
        switch code {
        case 0: type = .integer; bits = messages[m].message.signals[s].length
        case 1: type = .float32; bits = 32
        case 2: type = .float64; bits = 64
        default:
            throw DAQError.malformed("value type \(code) is not 0 (integer), 1 (float32) or 2 (float64)",
                                     file: scanner.file, line: line, field: "SIG_VALTYPE_ type")
        }
        let signal = messages[m].message.signals[s]
        guard signal.length == bits else {
            throw DAQError.malformed("\(signal.name) is \(signal.length) bits long; a \(type) signal needs \(bits)",
                                     file: scanner.file, line: line, field: "SIG_VALTYPE_ type")
        }
        messages[m].message.signals[s].valueType = type
    }

    // MARK: SG_MUL_VAL_

    /// `SG_MUL_VAL_ <id> <signal> <multiplexer> <a>-<b>[, <c>-<d>…] ;`
    mutating func parseExtendedMultiplexing() throws(DAQError) {
        let line = scanner.line
        let target = try signalReference(statement: "SG_MUL_VAL_")
        let multiplexer = try scanner.expectIdentifier(field: "SG_MUL_VAL_ multiplexer")
        var ranges: [ClosedRange<Int64>] = []
        repeat {
            let low = try scanner.expectInteger(field: "SG_MUL_VAL_ range")
            try scanner.expect(UInt8(ascii: "-"), field: "SG_MUL_VAL_ range")
            let high = try scanner.expectInteger(field: "SG_MUL_VAL_ range")
            guard low <= high else {
                throw scanner.failure("range \(low)-\(high) is empty", field: "SG_MUL_VAL_ range")
            }
            ranges.append(low...high)
        } while scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: ";"), field: "SG_MUL_VAL_ end")
        guard let (m, s) = target else { return }
        let existing = messages[m].explicitSelectors[s]
        if let existing, existing.multiplexer == multiplexer {
            ranges = existing.values + ranges
        }
        messages[m].explicitSelectors[s] = (multiplexer, ranges, line)
    }

    // MARK: References

    /// `<id>`: the message index, or nil when the file has no such message (stale references are ignored).
    private mutating func messageReference(statement: String) throws(DAQError) -> Int? {
        let rawID = try scanner.expectInteger(field: "\(statement) message id")
        guard rawID >= 0 && rawID <= 0xFFFF_FFFF else { return nil }
        return messageIndex[UInt32(rawID)]
    }

    /// `<id> <signal>`: message and signal indices, or nil when the file has no such signal.
    private mutating func signalReference(statement: String) throws(DAQError) -> (Int, Int)? {
        let message = try messageReference(statement: statement)
        let name = try scanner.expectIdentifier(field: "\(statement) signal name")
        guard let message, let signal = messages[message].message.signalIndex(named: name) else { return nil }
        return (message, signal)
    }
}
