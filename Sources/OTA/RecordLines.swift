// The strict line format shared by manifests and boot state: a fixed header line, then one
// `key value` line per field in a fixed order, each ended by LF. One spelling per value means the
// bytes that are signed or persisted are canonical: parse(encode(x)) == x and encode(parse(b)) == b.
import DAQCore

/// Reads and writes `key value\n` records with a fixed key order and hard size limits.
enum RecordLines {
    /// Longest value accepted for any field (names, hex digests, numbers all fit).
    static let maximumValueLength = 128

    /// `header\n` followed by `key value\n` for each field, in order.
    static func encode(header: String, fields: [(String, String)]) -> [UInt8] {
        var text = header + "\n"
        for (key, value) in fields { text += key + " " + value + "\n" }
        return Array(text.utf8)
    }

    /// Splits `bytes` into exactly `keys.count` values after `header`, checking size, line ends,
    /// key order and the value alphabet (printable ASCII without spaces). Errors name file, line and field.
    static func decode(_ bytes: [UInt8], header: String, keys: [String], maximumSize: Int, file: String) throws -> [String] {
        guard bytes.count <= maximumSize else {
            throw DAQError.malformed("record is \(bytes.count) bytes, more than the limit of \(maximumSize)", file: file, line: nil, field: "size")
        }
        guard bytes.last == UInt8(ascii: "\n") else {
            throw DAQError.malformed("record must end with a line feed (truncated?)", file: file, line: nil, field: "end")
        }
        let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count == keys.count + 1 else {
            throw DAQError.malformed("expected \(keys.count + 1) lines, found \(lines.count)", file: file, line: nil, field: "lines")
        }
        guard Array(lines[0]) == Array(header.utf8) else {
            throw DAQError.malformed("expected header '\(header)'", file: file, line: 1, field: "header")
        }
        var values: [String] = []
        values.reserveCapacity(keys.count)
        for (offset, key) in keys.enumerated() {
            let line = Array(lines[offset + 1])
            let prefix = Array((key + " ").utf8)
            guard line.count > prefix.count, Array(line[0..<prefix.count]) == prefix else {
                throw DAQError.malformed("expected field '\(key)' here", file: file, line: offset + 2, field: key)
            }
            let value = line[prefix.count...]
            guard value.count <= maximumValueLength else {
                throw DAQError.malformed("value longer than \(maximumValueLength) bytes", file: file, line: offset + 2, field: key)
            }
            guard value.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw DAQError.malformed("value must be printable ASCII without spaces", file: file, line: offset + 2, field: key)
            }
            values.append(String(decoding: value, as: UTF8.self))
        }
        return values
    }

    /// A canonical unsigned decimal: digits only, no sign, no leading zero (except "0"), fits in UInt64.
    static func unsigned(_ text: String, file: String, line: Int, field: String) throws -> UInt64 {
        let digits = Array(text.utf8)
        let canonical = !digits.isEmpty && digits.count <= 20 && digits.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            && (digits.count == 1 || digits[0] != 0x30)
        guard canonical, let value = UInt64(text) else {
            throw DAQError.malformed("'\(text)' is not a canonical unsigned decimal (0…\(UInt64.max))", file: file, line: line, field: field)
        }
        return value
    }
}
