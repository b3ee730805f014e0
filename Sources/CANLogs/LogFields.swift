// Field-level helpers shared by the ASC and TRC readers: whitespace tokens, numbers in a base,
// fixed-point times, and error construction. Tokens are slices of the line; nothing allocates
// except the text quoted in an error message.
import DAQCore

/// One whitespace-separated field of a line (a slice of the line's bytes).
typealias LogToken = UnsafeBufferPointer<UInt8>.SubSequence

extension ByteCursor {
    /// The next non-empty field, or nil at the end of the line.
    mutating func token() -> LogToken? {
        skipSpaces()
        if atEnd { return nil }
        return word()
    }
}

/// Number bases of ASC `base hex|dec` (TRC is always hex).
enum LogNumberBase: Sendable {
    case hex, dec

    var radix: UInt32 { self == .hex ? 16 : 10 }
    var name: String { self == .hex ? "hex" : "decimal" }
}

enum LogFields {
    /// The token as text, for error messages only.
    static func text(_ token: LogToken) -> String { String(decoding: token, as: UTF8.self) }

    /// ASCII case-insensitive comparison with a lowercase literal.
    static func matches(_ token: LogToken, _ lowercase: StaticString) -> Bool {
        guard token.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        var index = token.startIndex
        for byte in expected {
            let actual = token[index]
            // Fold ASCII letters only; `| 0x20` would also equate unrelated punctuation.
            let folded = (actual >= 0x41 && actual <= 0x5A) ? actual | 0x20 : actual
            if folded != byte { return false }
            index += 1
        }
        return true
    }

    /// Does the token start with `lowercase` (ASCII case-insensitive)?
    static func hasPrefix(_ token: LogToken, _ lowercase: StaticString) -> Bool {
        guard token.count >= lowercase.utf8CodeUnitCount else { return false }
        return matches(token[token.startIndex..<token.startIndex + lowercase.utf8CodeUnitCount], lowercase)
    }

    static func isDigits(_ token: LogToken) -> Bool {
        !token.isEmpty && token.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// An unsigned integer written entirely in `base`; nil when empty, not a number, or above `limit`.
    static func unsigned(_ token: LogToken, base: LogNumberBase, limit: UInt32 = .max) -> UInt32? {
        guard !token.isEmpty else { return nil }
        var value: UInt32 = 0
        for byte in token {
            let digit: UInt8
            switch base {
            case .hex:
                guard let d = ByteCursor.hexValue(byte) else { return nil }
                digit = d
            case .dec:
                digit = byte &- 0x30
                guard digit < 10 else { return nil }
            }
            let (m, o1) = value.multipliedReportingOverflow(by: base.radix)
            let (s, o2) = m.addingReportingOverflow(UInt32(digit))
            if o1 || o2 { return nil }
            value = s
        }
        return value <= limit ? value : nil
    }

    /// A non-negative fixed-point number (`12`, `12.5`, `0.000123`) scaled to nanoseconds:
    /// `unitNanoseconds` is 1e9 for seconds, 1e6 for milliseconds. Exact up to 1 ns; digits
    /// beyond that are dropped (truncation matches how candump text cuts sub-microseconds).
    static func fixedPoint(_ token: LogToken, unitNanoseconds: Int64) -> Int64? {
        var index = token.startIndex
        var whole: Int64 = 0
        var wholeDigits = 0
        while index < token.endIndex, token[index] &- 0x30 < 10 {
            let (m, o1) = whole.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(token[index] - 0x30))
            if o1 || o2 { return nil }
            whole = s
            wholeDigits += 1
            index += 1
        }
        guard wholeDigits > 0 else { return nil }
        let (scaled, overflow) = whole.multipliedReportingOverflow(by: unitNanoseconds)
        if overflow { return nil }
        var fraction: Int64 = 0
        if index < token.endIndex {
            guard token[index] == UInt8(ascii: ".") else { return nil }
            index += 1
            var step = unitNanoseconds / 10
            var fractionDigits = 0
            while index < token.endIndex {
                let digit = token[index] &- 0x30
                guard digit < 10 else { return nil }
                fraction += Int64(digit) * step
                step /= 10
                fractionDigits += 1
                index += 1
            }
            guard fractionDigits > 0 else { return nil }
        }
        let (total, o3) = scaled.addingReportingOverflow(fraction)
        return o3 ? nil : total
    }

    /// A data byte in `base`, with a message naming its index (0-based, like `data[3]`).
    static func dataByte(_ token: LogToken?, index: Int, base: LogNumberBase, expected: Int,
                         file: String, line: Int) throws(DAQError) -> UInt8 {
        guard let token else {
            throw .malformed("expected \(expected) data bytes, found \(index)", file: file, line: line,
                             field: "data byte \(index)")
        }
        let digitLimit = base == .hex ? 2 : 3
        guard token.count <= digitLimit, let value = unsigned(token, base: base, limit: 255) else {
            throw .malformed("expected a \(base.name) byte, found '\(text(token))'", file: file, line: line,
                             field: "data byte \(index)")
        }
        return UInt8(value)
    }

    /// `can<N-1>` for the 1-based channel or bus number N that ASC and TRC logs use.
    static func interface(channel: UInt32) -> String { "can\(channel - 1)" }

    /// The error frame DAQLink emits for logs that only say "an error frame happened":
    /// SocketCAN's CAN_ERR_BUSERROR class with the 8 zero data bytes every error frame carries
    /// (the same frame python-can's candump writer emits for a bare error frame).
    static func busErrorFrame(at timestamp: Timestamp, interface: String) -> CANFrame {
        CANFrame(timestamp: timestamp, interface: interface, id: 0x80, kind: .error,
                 data: CANPayload(repeatElement(0, count: 8)))
    }
}
