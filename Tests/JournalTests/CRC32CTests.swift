// CRC32C: published vectors, both paths (the CPU's instruction where present, slicing-by-8)
// against a bit-at-a-time reference.
import Testing
import TestSupport
@testable import Journal

/// The definition, one bit at a time: slow and obviously right.
private func referenceCRC32C(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

@Suite struct CRC32CTests {
    @Test func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    // RFC 3720 (iSCSI) appendix B.4 vectors.
    @Test func iscsiVectors() {
        #expect(CRC32C.checksum([]) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test(arguments: [1, 2, 3, 42, 9_001] as [UInt64])
    func matchesReferenceAtEveryLengthAndAlignment(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let data = random.bytes(300)
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 7) {
                let slice = Array(data[start..<end])
                #expect(CRC32C.checksum(slice) == referenceCRC32C(slice))
            }
        }
    }

    /// The table path on its own (the one-shot API takes the instruction when the CPU has it).
    @Test(arguments: [4, 8] as [UInt64])
    func tablePathMatchesReferenceAtEveryLengthAndAlignment(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let data = random.bytes(300)
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 5) {
                let slice = Array(data[start..<end])
                let tables = slice.withUnsafeBytes { ~CRC32C.advanceWithTables(0xFFFF_FFFF, $0) }
                #expect(tables == referenceCRC32C(slice))
            }
        }
    }

    /// On x86-64 every CPU this runs on has SSE4.2: the instruction path must be the one in use.
    @Test func theInstructionIsUsedWhereTheCPUHasIt() {
        #if arch(x86_64)
        #expect(CRC32C.hardwareAvailable)
        #endif
    }

    @Test(arguments: [5, 6, 7] as [UInt64])
    func incrementalEqualsOneShot(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let data = random.bytes(5_000)
        var crc = CRC32C()
        var position = 0
        while position < data.count {
            let step = min(Int.random(in: 0...97, using: &random), data.count - position)
            crc.update(Array(data[position..<(position + step)]))
            position += step
        }
        #expect(crc.value == CRC32C.checksum(data))
    }
}
