// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the CPU's CRC32C instruction where there
// is one, else slicing-by-8 in software. It runs over every byte the device acquires (and again
// in the uplink and the collector), so both paths consume 8 bytes per step.
internal import CRC32CHardware

/// A running CRC32C (the checksum of iSCSI, ext4 metadata and this journal).
/// Start with `init()`, feed bytes with `update`, read `value`.
public struct CRC32C: Sendable, Hashable {
    /// The pre-inverted register; `value` is its complement.
    public private(set) var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    /// The checksum of every byte fed so far.
    public var value: UInt32 { ~state }

    /// Feeds `bytes` into the checksum.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        state = CRC32C.advance(state, bytes)
    }

    /// Feeds `bytes` into the checksum.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The CRC32C of `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ~advance(0xFFFF_FFFF, bytes)
    }

    /// The CRC32C of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    static func advance(_ start: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return start }
        // The CPU's instruction when it has one: ~5× the tables' speed; the journal, the uplink
        // and the collector run every byte through here more than once.
        if hardwareAvailable { return daqlink_crc32c_hardware(start, base, bytes.count) }
        return advanceWithTables(start, bytes)
    }

    /// Whether `advance` uses the CPU's CRC32C instruction (decided once per process).
    public static let hardwareAvailable = daqlink_crc32c_hardware_available() != 0

    /// Slicing-by-8 in software: the portable path, and the reference the tests hold the
    /// instruction to.
    static func advanceWithTables(_ start: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard var pointer = bytes.baseAddress else { return start }
        var remaining = bytes.count
        var crc = start
        crc32cTables.withUnsafeBufferPointer { table in
            // Eight bytes per step: the register is XORed into the low four, and each byte position
            // has its own table that already accounts for the bytes still to follow it.
            while remaining >= 8 {
                let word = UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self)) ^ UInt64(crc)
                crc = table[0x700 + Int(word & 0xFF)]
                    ^ table[0x600 + Int((word >> 8) & 0xFF)]
                    ^ table[0x500 + Int((word >> 16) & 0xFF)]
                    ^ table[0x400 + Int((word >> 24) & 0xFF)]
                    ^ table[0x300 + Int((word >> 32) & 0xFF)]
                    ^ table[0x200 + Int((word >> 40) & 0xFF)]
                    ^ table[0x100 + Int((word >> 48) & 0xFF)]
                    ^ table[Int(word >> 56)]
                pointer += 8
                remaining -= 8
            }
            while remaining > 0 {
                let byte = pointer.load(as: UInt8.self)
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
                pointer += 1
                remaining -= 1
            }
        }
        return crc
    }
}

/// Eight 256-entry tables, flattened: table k maps a byte to its contribution k bytes further on.
private let crc32cTables: [UInt32] = {
    var table = [UInt32](repeating: 0, count: 8 * 256)
    for index in 0..<256 {
        var crc = UInt32(index)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        table[index] = crc
    }
    for slice in 1..<8 {
        for index in 0..<256 {
            let previous = table[(slice - 1) * 256 + index]
            table[slice * 256 + index] = (previous >> 8) ^ table[Int(previous & 0xFF)]
        }
    }
    return table
}()
