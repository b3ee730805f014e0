// zstd with a block per section (codec 3's class planes): any zstd decoder reads it as one frame
// that states its size, it round-trips, and sections fitted separately beat one mixed block.
import DAQCore
import Testing
import Uplink

@Suite struct BatchCompressionTests {
    /// Three sections with very different statistics: near-zero bytes, small values, noise.
    static func sections(seed: UInt64) -> (bytes: [UInt8], ends: [Int]) {
        var state = seed | 1
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        var bytes: [UInt8] = []
        var ends: [Int] = []
        bytes += (0..<20_000).map { _ in next() % 50 == 0 ? 1 : 0 }
        ends.append(bytes.count)
        bytes += (0..<20_000).map { _ in UInt8(next() % 6) }
        ends.append(bytes.count)
        bytes += (0..<20_000).map { _ in UInt8(truncatingIfNeeded: next()) }
        ends.append(bytes.count)
        return (bytes, ends)
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func sectionedFramesRoundTripAndStateTheirSize(seed: UInt64) throws {
        let (bytes, ends) = Self.sections(seed: seed)
        for level: Int32 in [1, 3] {
            let sectioned = bytes.withUnsafeBytes { BatchCompression.compress($0, sectionEnds: ends, level: level) }
            let back = try sectioned.withUnsafeBytes { try BatchCompression.decompress($0, maxLength: bytes.count, source: "t") }
            #expect(back == bytes)
            // The frame states its size: a cap one byte short is refused before anything is allocated.
            #expect(throws: DAQError.self) {
                try sectioned.withUnsafeBytes { _ = try BatchCompression.decompress($0, maxLength: bytes.count - 1, source: "t") }
            }
            let single = bytes.withUnsafeBytes { BatchCompression.compress($0, level: level) }
            #expect(sectioned.count < single.count, "level \(level): \(sectioned.count) B sectioned, \(single.count) B in one")
        }
    }

    @Test func oneSectionIsAPlainFrame() throws {
        let (bytes, _) = Self.sections(seed: 9)
        let one = bytes.withUnsafeBytes { BatchCompression.compress($0, sectionEnds: [bytes.count], level: 3) }
        #expect(one == bytes.withUnsafeBytes { BatchCompression.compress($0, level: 3) })
    }
}
