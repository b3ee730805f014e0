// Up to 64 data bytes of a CAN / CAN FD frame, stored inline (no heap allocation per frame).

/// The data field of a CAN frame: 0…8 bytes (classic) or 0…64 bytes (CAN FD), kept inline.
public struct CANPayload: Sendable, Hashable, RandomAccessCollection, CustomStringConvertible {
    public static let capacity = 64

    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Number of valid bytes.
    public private(set) var count: Int = 0

    public init() {}

    /// Copies `bytes` (at most 64) into an inline payload.
    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        precondition(bytes.count <= Self.capacity, "CAN payload longer than 64 bytes")
        var index = 0
        for byte in bytes {
            self[unchecked: index] = byte
            index += 1
        }
        count = index
    }

    /// A payload from its little-endian word image (bytes past `count` must be zero).
    public init(words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64), count: Int) {
        precondition(count >= 0 && count <= Self.capacity, "CAN payload longer than 64 bytes")
        storage = words
        self.count = count
    }

    /// Appends one byte; returns false when the payload is already 64 bytes long.
    @discardableResult
    public mutating func append(_ byte: UInt8) -> Bool {
        guard count < Self.capacity else { return false }
        self[unchecked: count] = byte
        count += 1
        return true
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> UInt8 {
        get {
            precondition(position >= 0 && position < count, "CAN payload index out of range")
            return self[unchecked: position]
        }
        set {
            precondition(position >= 0 && position < count, "CAN payload index out of range")
            self[unchecked: position] = newValue
        }
    }

    private subscript(unchecked position: Int) -> UInt8 {
        get { Swift.withUnsafeBytes(of: storage) { $0[position] } }
        set { withUnsafeMutableBytes(of: &storage) { $0[position] = newValue } }
    }

    /// Calls `body` with the valid bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    /// The bytes as a 64-byte little-endian word array (bytes past `count` are zero).
    public var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) { storage }

    public static func == (lhs: CANPayload, rhs: CANPayload) -> Bool {
        lhs.count == rhs.count && lhs.withUnsafeBytes { l in rhs.withUnsafeBytes { r in l.elementsEqual(r) } }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// Uppercase hex without separators, as candump writes it.
    public var description: String { hexString }

    /// Uppercase hex without separators, as candump writes it.
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
