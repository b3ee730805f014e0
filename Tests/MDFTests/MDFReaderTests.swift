// The pure MDF reader: it reads back what MDFWriter wrote, and it survives malformed input —
// random truncations and byte flips of a real file give a DAQError naming the offset and block,
// never a trap.
import Testing
import TestSupport
import DAQCore
import Acquisition
@testable import MDF

@Suite struct MDFReaderTests {
    static let file: [UInt8] = {
        let (layout, records, _) = MDFWriterTests.measure()
        return MDFWriter.finalizedFile(layout: layout, records: records)
    }()

    @Test func readsBackTheWritersGroups() throws {
        let (layout, records, times) = MDFWriterTests.measure()
        let summary = try MDFReader.summary(of: Self.file, source: "m.mf4")
        #expect(summary.isFinalized && summary.version == "4.11" && summary.program == "DAQLink")
        #expect(summary.startNanoseconds == UInt64(layout.start.nanoseconds))
        #expect(summary.groups.map(\.acquisitionName) == ["Time 5ms", "Engine state"])
        #expect(summary.groups.map(\.channelCount) == [5, 3])
        #expect(summary.groups.map(\.cycles) == times.map { UInt64($0.count) })
        #expect(summary.groups.map(\.rawBytes) == records.map { UInt64($0.count) })
        #expect(summary.groups.map(\.timeRange) == times.map { $0.first! ... $0.last! })
        #expect(summary.fileBytes == Self.file.count)
    }

    /// A deterministic generator (SeededGenerator), so a failing case can be replayed from its seed.

    @Test(arguments: 0..<4) func everyTruncationIsAClearError(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        for _ in 0..<300 {
            let length = Int.random(in: 0..<Self.file.count, using: &random)
            do {
                _ = try MDFReader.summary(of: Array(Self.file.prefix(length)), source: "cut.mf4")
                Issue.record("a file cut at \(length) of \(Self.file.count) bytes was accepted")
            } catch {
                #expect(error.code == .malformedInput)
                #expect(error.description.hasPrefix("cut.mf4 [offset "), "\(error)")
                #expect(error.description.contains("##") || error.description.contains("ID"), "\(error)")
            }
        }
    }

    @Test(arguments: 0..<4) func byteFlipsNeverTrap(seed: UInt64) {
        var random = SeededGenerator(seed: seed &+ 100)
        var rejected = 0
        for _ in 0..<1_000 {
            var bytes = Self.file
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                // Mostly the block structure (first ~2 KiB), where the links and lengths are.
                let limit = Bool.random(using: &random) ? min(2048, bytes.count) : bytes.count
                let index = Int.random(in: 0..<limit, using: &random)
                bytes[index] = Bool.random(using: &random) ? UInt8.random(in: 0...255, using: &random) : bytes[index] ^ 0x80
            }
            do {
                let summary = try MDFReader.summary(of: bytes, source: "flip.mf4")
                #expect(summary.groups.count <= 2)
            } catch {
                rejected += 1
                #expect(error.description.contains("[offset "), "\(error)")
            }
        }
        #expect(rejected > 0)
    }

    @Test func rejectsWhatIsNotMDF() {
        for bytes in [[UInt8](), Array("MDF     4.11".utf8), Array(repeating: 0xFF, count: 4096)] {
            #expect(throws: DAQError.self) { try MDFReader.summary(of: bytes, source: "x") }
        }
        // A DG chain that loops back onto itself.
        var looped = Self.file
        let firstDG = Int(looped[88]) | Int(looped[89]) << 8 | Int(looped[90]) << 16
        for index in 0..<8 { looped[firstDG + 24 + index] = UInt8(truncatingIfNeeded: firstDG >> (8 * index)) }
        #expect { try MDFReader.summary(of: looped, source: "loop.mf4") } throws: { error in
            (error as? DAQError)?.message.contains("loops") == true
        }
    }
}
