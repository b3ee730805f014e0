// Byte-level scanner for DBC text: tokens on demand, line numbers, and errors that name the field.
import DAQCore

/// Reads DBC tokens from bytes. The parser asks for the token it expects next (`integer`,
/// `identifier`, `string`, a punctuation byte), so `16@1+` and `2-5` need no lookahead grammar
/// and every error can say which field was wrong.
struct DBCScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    let file: String
    private(set) var position = 0
    /// 1-based line of `position`.
    private(set) var line = 1

    init(bytes: UnsafeBufferPointer<UInt8>, file: String) {
        self.bytes = bytes
        self.file = file
        // A UTF-8 byte order mark is not part of the first keyword.
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { position = 3 }
    }

    var isAtEnd: Bool { position >= bytes.count }

    /// The next byte, or nil at the end.
    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    // MARK: Whitespace

    /// Skips blanks and line breaks.
    mutating func skipSpace() {
        while position < bytes.count {
            let byte = bytes[position]
            if byte == 0x0A { line += 1 } else if !isBlank(byte) && byte != 0x0D { return }
            position += 1
        }
    }

    /// Skips blanks on the current line only.
    mutating func skipBlanks() {
        while position < bytes.count, isBlank(bytes[position]) || bytes[position] == 0x0D { position += 1 }
    }

    /// Whether only blanks remain on the current line.
    mutating func atLineEnd() -> Bool {
        skipBlanks()
        return position >= bytes.count || bytes[position] == 0x0A
    }

    /// Skips to the start of the next line.
    mutating func skipLine() {
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if byte == 0x0A { line += 1; return }
        }
    }

    /// Whether the line from here holds nothing but blanks and at most one name (an entry of the
    /// `NS_` list: `CM_` alone; a statement has more after its keyword: `BS_:`, `CM_ "…";`).
    func restOfLineIsOneWordAtMost() -> Bool {
        var index = position
        var words = 0
        var inWord = false
        while index < bytes.count, bytes[index] != 0x0A {
            let byte = bytes[index]
            if byte == 0x20 || byte == 0x09 || byte == 0x0D {
                inWord = false
            } else if isIdentifierByte(byte) {
                if !inWord { words += 1; inWord = true }
            } else {
                return false
            }
            index += 1
        }
        return words <= 1
    }

    /// Whether the current position is at the start of a line (column 0).
    var atColumnZero: Bool { position == 0 || bytes[position - 1] == 0x0A }

    // MARK: Tokens

    /// Consumes `byte` (after blanks and line breaks) if it is next.
    mutating func consume(_ byte: UInt8) -> Bool {
        skipSpace()
        guard peek == byte else { return false }
        position += 1
        return true
    }

    /// Consumes `byte` or throws naming `field`.
    mutating func expect(_ byte: UInt8, field: String) throws(DAQError) {
        guard consume(byte) else {
            throw failure("expected '\(Character(Unicode.Scalar(byte)))', found \(nextTokenDescription())", field: field)
        }
    }

    /// An identifier (any run of bytes that are not blanks or DBC punctuation), or nil.
    mutating func identifier() -> String? {
        skipSpace()
        let start = position
        while position < bytes.count, isIdentifierByte(bytes[position]) { position += 1 }
        guard position > start else { return nil }
        return text(start..<position)
    }

    mutating func expectIdentifier(field: String) throws(DAQError) -> String {
        guard let name = identifier() else {
            throw failure("expected a name, found \(nextTokenDescription())", field: field)
        }
        return name
    }

    /// A decimal integer with an optional leading `-` or `+`.
    mutating func expectInteger(field: String) throws(DAQError) -> Int64 {
        skipSpace()
        let start = position
        let (negative, magnitude, digits, overflow) = signedDigits()
        if overflow || magnitude > UInt64(Int64.max) + (negative ? 1 : 0) {
            position = start
            throw failure("integer out of range", field: field)
        }
        if digits == 0 || (position < bytes.count && isIdentifierByte(bytes[position])
                           && bytes[position] != UInt8(ascii: "-") && bytes[position] != UInt8(ascii: "+")) {
            position = start
            throw failure("expected an integer, found \(nextTokenDescription())", field: field)
        }
        return negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude)
    }

    /// Reads an optional sign and decimal digits: the magnitude, how many digits, and whether it
    /// overflowed UInt64.
    private mutating func signedDigits() -> (negative: Bool, magnitude: UInt64, digits: Int, overflow: Bool) {
        var negative = false
        if let sign = peek, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            negative = sign == UInt8(ascii: "-")
            position += 1
        }
        var magnitude: UInt64 = 0
        var digits = 0
        var overflow = false
        while position < bytes.count, let digit = digitValue(bytes[position]) {
            let (times, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(digit))
            overflow = overflow || o1 || o2
            magnitude = sum
            digits += 1
            position += 1
        }
        return (negative, magnitude, digits, overflow)
    }

    /// A value description's key, exactly: a decimal integer from Int64.min to UInt64.max, the
    /// ones above Int64.max as their 64-bit pattern (how an unsigned 64-bit raw value is held);
    /// nil (nothing consumed) when the token is not a plain integer (`2.0`, `1e3`).
    mutating func valueKey() -> Int64? {
        skipSpace()
        let start = position
        let (negative, magnitude, digits, overflow) = signedDigits()
        let plain = digits > 0 && !overflow && (position >= bytes.count || !(isIdentifierByte(bytes[position]) || bytes[position] == UInt8(ascii: ".")))
        guard plain, !negative || magnitude <= UInt64(Int64.max) + 1 else {
            position = start
            return nil
        }
        return negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(bitPattern: magnitude)
    }

    /// A decimal number: `-12`, `0.5`, `.5`, `3.4E+038`.
    mutating func expectNumber(field: String) throws(DAQError) -> Double {
        skipSpace()
        let start = position
        if let sign = peek, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") { position += 1 }
        var mantissaDigits = 0
        while position < bytes.count, digitValue(bytes[position]) != nil { position += 1; mantissaDigits += 1 }
        if peek == UInt8(ascii: ".") {
            position += 1
            while position < bytes.count, digitValue(bytes[position]) != nil { position += 1; mantissaDigits += 1 }
        }
        if mantissaDigits > 0, let e = peek, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            let mark = position
            position += 1
            if let sign = peek, sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") { position += 1 }
            var exponentDigits = 0
            while position < bytes.count, digitValue(bytes[position]) != nil { position += 1; exponentDigits += 1 }
            if exponentDigits == 0 { position = mark }
        }
        let token = text(start..<position)
        guard mantissaDigits > 0, let value = Double(token),
              position >= bytes.count || !isIdentifierByte(bytes[position])
                || bytes[position] == UInt8(ascii: "-") || bytes[position] == UInt8(ascii: "+") else {
            position = start
            throw failure("expected a number, found \(nextTokenDescription())", field: field)
        }
        return value
    }

    /// Whether a quoted string comes next.
    mutating func atString() -> Bool {
        skipSpace()
        return peek == UInt8(ascii: "\"")
    }

    /// A double-quoted string; `\"` and `\\` are escapes. Only free text (`spansLines`: comments,
    /// attribute values) may hold line breaks: a unit or a value description whose closing quote is
    /// on a later line lost its quote, and the error belongs on the line the string opened on, not
    /// on the later line where the stray quote ends it.
    mutating func expectString(field: String, spansLines: Bool = false) throws(DAQError) -> String {
        skipSpace()
        guard peek == UInt8(ascii: "\"") else {
            throw failure("expected a quoted string, found \(nextTokenDescription())", field: field)
        }
        let openLine = line
        position += 1
        var content: [UInt8] = []
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard spansLines || line == openLine else {
                    var opened = content.prefix { $0 != 0x0A && $0 != 0x0D }
                    while let last = opened.last, isBlank(last) { opened.removeLast() }
                    throw DAQError.malformed("unterminated string: \"\(decodeText(opened)) has no closing '\"' on its line",
                                             file: file, line: openLine, field: field)
                }
                return decodeText(content)
            case UInt8(ascii: "\\") where position < bytes.count:
                content.append(bytes[position])
                if bytes[position] == 0x0A { line += 1 }
                position += 1
            case 0x0A:
                line += 1
                content.append(byte)
            default:
                content.append(byte)
            }
        }
        throw DAQError.malformed("string opened on line \(openLine) is not closed before the end of the file",
                                 file: file, line: openLine, field: field)
    }

    /// Skips an unknown statement: up to and including its `;` (quoted strings may hold `;`),
    /// or up to a line that starts with one of `keywords`, whichever comes first.
    mutating func skipStatement(untilKeywordIn keywords: Set<String>) {
        var inString = false
        while position < bytes.count {
            let byte = bytes[position]
            if inString {
                if byte == UInt8(ascii: "\\") && position + 1 < bytes.count {
                    if bytes[position + 1] == 0x0A { line += 1 }
                    position += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") { inString = false } else if byte == 0x0A { line += 1 }
                position += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
                position += 1
            case UInt8(ascii: ";"):
                position += 1
                return
            case 0x0A:
                line += 1
                position += 1
                var probe = self
                probe.skipSpace()
                let start = probe.position
                while probe.position < bytes.count, isIdentifierByte(bytes[probe.position]) { probe.position += 1 }
                if probe.position > start, keywords.contains(text(start..<probe.position)) { return }
            default:
                position += 1
            }
        }
    }

    // MARK: Errors

    /// A malformed-input error at the current line.
    func failure(_ message: String, field: String) -> DAQError {
        DAQError.malformed(message, file: file, line: line, field: field)
    }

    /// `'token'`, `end of line` or `end of file`, for "found …" in errors.
    func nextTokenDescription() -> String {
        guard position < bytes.count else { return "end of file" }
        if bytes[position] == 0x0A || bytes[position] == 0x0D { return "end of line" }
        var end = position + 1
        if isIdentifierByte(bytes[position]) {
            while end < bytes.count, end - position < 32, isIdentifierByte(bytes[end]) { end += 1 }
        }
        return "'\(text(position..<end))'"
    }

    /// `'c'` for the next single byte (or `end of line` / `end of file`).
    func nextByteDescription() -> String {
        guard position < bytes.count else { return "end of file" }
        if bytes[position] == 0x0A || bytes[position] == 0x0D { return "end of line" }
        return "'\(text(position..<(position + 1)))'"
    }

    // MARK: Bytes

    private func text(_ range: Range<Int>) -> String {
        decodeText(UnsafeBufferPointer(rebasing: bytes[range]))
    }
}

/// UTF-8 when the bytes are valid UTF-8, else Latin-1 (DBC tools often write CP1252 units like `°`).
func decodeText<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    if let text = String(validating: bytes, as: UTF8.self) { return text }
    var scalars = String.UnicodeScalarView()
    for byte in bytes { scalars.append(Unicode.Scalar(byte)) }
    return String(scalars)
}

@inline(__always) private func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0C }

@inline(__always) private func digitValue(_ byte: UInt8) -> UInt8? {
    byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : nil
}

/// Bytes that may appear in names: anything but blanks, line breaks and DBC punctuation.
@inline(__always) func isIdentifierByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x00...0x20, 0x7F: return false
    case UInt8(ascii: ":"), UInt8(ascii: ";"), UInt8(ascii: "|"), UInt8(ascii: "@"), UInt8(ascii: "("),
         UInt8(ascii: ")"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ","), UInt8(ascii: "\""):
        return false
    default: return true
    }
}
