// A forward cursor over one line's bytes, shared by the log readers.

/// Reads tokens from a line of ASCII bytes without allocating.
struct ByteCursor {
    let bytes: UnsafeBufferPointer<UInt8>
    private(set) var position: Int = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var atEnd: Bool { position >= bytes.count }
    var peek: UInt8? { atEnd ? nil : bytes[position] }
    /// The rest of the line.
    var rest: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: bytes[min(position, bytes.count)...]) }

    mutating func advance(_ count: Int = 1) { position += count }

    /// Consumes `byte` if it is next.
    mutating func take(_ byte: UInt8) -> Bool {
        guard !atEnd, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    mutating func skipSpaces() {
        while !atEnd, bytes[position] == 0x20 || bytes[position] == 0x09 { position += 1 }
    }

    /// The next run of non-blank bytes (may be empty).
    mutating func word() -> UnsafeBufferPointer<UInt8>.SubSequence {
        let start = position
        while !atEnd, bytes[position] != 0x20 && bytes[position] != 0x09 { position += 1 }
        return bytes[start..<position]
    }

    /// One decimal digit's value, consumed.
    mutating func digit() -> UInt8? {
        guard !atEnd else { return nil }
        let value = bytes[position] &- 0x30
        guard value < 10 else { return nil }
        position += 1
        return value
    }

    /// One hex digit's value (either case), consumed.
    mutating func hexDigit() -> UInt8? {
        guard !atEnd, let value = ByteCursor.hexValue(bytes[position]) else { return nil }
        position += 1
        return value
    }

    /// A run of decimal digits as an integer (nil when there is none or it overflows).
    mutating func decimal() -> Int64? {
        var value: Int64 = 0
        var any = false
        while let d = digit() {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(d))
            if o1 || o2 { return nil }
            value = s
            any = true
        }
        return any ? value : nil
    }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
