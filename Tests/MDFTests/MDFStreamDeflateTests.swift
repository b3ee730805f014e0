// The streaming MDF file with ##DZ blocks (--mdf-deflate): cut at arbitrary byte offsets, asammdf
// opens it with exactly the records whose bytes lie in complete DZ blocks (the claim in
// docs/mdf.md); after `finish` it is a finalized file whose samples equal the sorted writer's.
import Foundation
import Testing
import DAQCore
import Acquisition
import MDFFiles
import TestSupport
@testable import MDF

@Suite struct MDFStreamDeflateTests {
    @Test(arguments: [256, 512])
    func aCutFileKeepsTheRecordsOfEveryCompleteBlock(blockBytes: Int) throws {
        let (layout, payloads, records) = MDFStreamTests.payloads()
        var stream = MDFStream(layout: layout, deflate: .init(blockBytes: blockBytes, blockCapacity: 1000) { Deflate.compress($0) })
        var file = stream.head
        var recordEnds: [(end: Int, group: Int)] = []   // end offset of each record in the record stream
        var blockEnds: [Int] = []                       // file offset where each written DZ's bytes end
        var seals: [(offset: Int, bytes: [UInt8])] = []
        var streamBytes = 0
        for payload in payloads {
            var output: [UInt8] = []
            payload.bytes.withUnsafeBytes { stream.append($0, into: &output) }
            if !output.isEmpty {
                // One record completes at most one block here; the DZ's own length (without the
                // padding to 8 bytes) says where its bytes end.
                let length = (8..<16).reduce(0) { $0 | Int(output[$1]) << (8 * ($1 - 8)) }
                blockEnds.append(file.count + length)
            }
            seals += stream.takeSeals()
            file += output
            streamBytes += payload.bytes.count
            recordEnds.append((streamBytes, payload.group))
        }
        try #require(blockEnds.count >= 3, "the fixture must fill several blocks")
        let headBytes = stream.head.count

        let dir = try PackagePaths.temporaryDirectory("mdf-stream-dz")
        var random = SeededGenerator(seed: UInt64(blockBytes))
        var cuts = [headBytes, headBytes + 1, blockEnds[0] - 1, blockEnds[0], blockEnds[0] + 20, file.count]
        for _ in 0..<6 { cuts.append(Int.random(in: headBytes..<file.count, using: &random)) }
        var paths: [String] = []
        var expected: [String: [Int]] = [:]
        for cut in cuts {
            let path = dir.appendingPathComponent("cut-\(blockBytes)-\(cut).mf4").path
            // The writer names a block once its bytes are written: a cut file has the ids of the
            // blocks that end before the cut (and, once, one left unnamed by a kill between the two).
            var cutFile = Array(file.prefix(cut))
            var kept = 0
            for (index, seal) in seals.enumerated() where blockEnds[index] <= cut && !(cut == file.count && index == seals.count - 1) {
                cutFile.replaceSubrange(seal.offset..<(seal.offset + 4), with: seal.bytes)
                kept += 1
            }
            try Data(cutFile).write(to: URL(fileURLWithPath: path))
            var counts = Array(repeating: 0, count: layout.groups.count)
            for record in recordEnds where record.end <= kept * blockBytes { counts[record.group] += 1 }
            expected[path] = counts
            paths.append(path)
            // Our reader does not inflate, but it must read the cut file's structure without error.
            let summary = try MDFReader.summary(of: cutFile, source: path)
            #expect(!summary.isFinalized)
        }

        var output: [UInt8] = []
        let patches = stream.finish(into: &output)
        var finalized = file + output
        for seal in seals { finalized.replaceSubrange(seal.offset..<(seal.offset + 4), with: seal.bytes) }
        for patch in patches { finalized.replaceSubrange(patch.offset..<(patch.offset + patch.bytes.count), with: patch.bytes) }
        let finalPath = dir.appendingPathComponent("final-\(blockBytes).mf4").path
        try Data(finalized).write(to: URL(fileURLWithPath: finalPath))
        let sortedPath = dir.appendingPathComponent("sorted-\(blockBytes).mf4").path
        try Data(MDFWriter.finalizedFile(layout: layout, records: records)).write(to: URL(fileURLWithPath: sortedPath))
        let ours = try MDFReader.summary(of: finalized, source: finalPath)
        #expect(ours.isFinalized && ours.groups.map(\.cycles) == stream.cycles)
        // Finalized, the list of ##DZ blocks hangs under a ##HL (MDF 4.1), and the data group names it.
        let dataLink = (0..<8).reduce(0) { $0 | Int(finalized[stream.dataGroupAddress + 40 + $1]) << (8 * $1) }
        #expect(Array(finalized[dataLink..<(dataLink + 4)]) == Array("##HL".utf8))

        try MDFStreamTests.expectAsammdf(sorted: sortedPath, cuts: paths, expected: expected, final: finalPath, cycles: stream.cycles)
    }

    @Test func aFullDataListAsksForTheNextFile() {
        let (layout, payloads, _) = MDFStreamTests.payloads()
        var stream = MDFStream(layout: layout, deflate: .init(blockBytes: 256, blockCapacity: 2) { Deflate.compress($0) })
        var output: [UInt8] = []
        var appended = 0
        for payload in payloads where !stream.isFull {
            payload.bytes.withUnsafeBytes { stream.append($0, into: &output) }
            appended += payload.bytes.count
        }
        #expect(stream.isFull && appended >= 512 && appended < 512 + 256)
    }
}
