// daqctl export --deflate: ##DZ blocks (transposition + deflate). asammdf, the oracle, reads every
// channel of the compressed file exactly as it reads the plain one.
import Foundation
import Testing
import TestSupport
import DAQCore
import Acquisition
import MDFFiles
@testable import MDF

@Suite struct MDFDeflateTests {
    static let compare = """
        import sys, numpy as np
        from asammdf import MDF
        a, b = MDF(sys.argv[1]), MDF(sys.argv[2])
        compared = 0
        for gi, g in enumerate(a.groups):
            for ch in g.channels:
                x = a.get(ch.name, group=gi, raw=True, ignore_invalidation_bits=True)
                y = b.get(ch.name, group=gi, raw=True, ignore_invalidation_bits=True)
                if not (np.array_equal(x.samples, y.samples) and np.array_equal(x.timestamps, y.timestamps)):
                    print("differs:", ch.name); sys.exit(1)
                if (x.invalidation_bits is None) != (y.invalidation_bits is None) or (
                        x.invalidation_bits is not None and not np.array_equal(x.invalidation_bits, y.invalidation_bits)):
                    print("invalidation differs:", ch.name); sys.exit(1)
                compared += 1
        print(compared)
        """

    @Test func deflatedExportReadsTheSameAsThePlainOne() throws {
        guard case .success(let reference) = MDFExportTests.reference else {
            Issue.record("reference export failed: \(MDFExportTests.reference)")
            return
        }
        let deflated = reference.directory.appendingPathComponent("ref-dz.mf4").path
        let export = try runProcess(MDFExportTests.daqctl, ["export", "--journal", reference.journal, "--format", "mdf",
                                                            "--deflate", "--out", deflated])
        #expect(export.status == 0, "\(export.stderr)")
        let result = try runPython(Self.compare, [reference.mdf, deflated])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == 296, "channels compared: \(result.stdout)")
        let plain = try FileManager.default.attributesOfItem(atPath: reference.mdf)[.size] as! Int
        let compact = try FileManager.default.attributesOfItem(atPath: deflated)[.size] as! Int
        #expect(compact < plain * 3 / 4, "\(compact) bytes deflated vs \(plain) plain")
        let inspect = try runProcess(MDFExportTests.daqctl, ["inspect", deflated])
        #expect(inspect.status == 0 && inspect.stdout.contains("(DZ)"), "\(inspect.stdout)\(inspect.stderr)")
    }

    /// `MDFWriter.writeDeflatedFile` (what `export --deflate` writes, a chunk of records at a time):
    /// with chunks far smaller than a group, each group's data is a ##HL and ##DL of several ##DZ blocks;
    /// asammdf reads every channel as it reads the plain file, whatever the chunk size, and a group
    /// without records still has its (empty) data block.
    @Test(arguments: [64, 1_000, 4 << 20])
    func aDeflatedFileWrittenChunkByChunkReadsAsThePlainOne(chunkBytes: Int) throws {
        var (layout, records, _) = MDFWriterTests.measure()
        records[records.count - 1] = []
        let cycles = layout.groups.indices.map { UInt64(records[$0].count / RecordLayout(layout.groups[$0]).recordBytes) }
        var file: [UInt8] = []
        var asked: [Range<Int>] = []
        MDFWriter.writeDeflatedFile(layout: layout, cycles: cycles, chunkBytes: chunkBytes, deflate: { Deflate.compress($0) },
                                    records: { group, range in
            asked.append(range)
            return Array(records[group][range])
        }, write: { bytes, offset in
            if file.count < offset + bytes.count { file += [UInt8](repeating: 0, count: offset + bytes.count - file.count) }
            file.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        })
        #expect(asked.allSatisfy { $0.count <= max(chunkBytes, 64) }, "no more than a chunk (or one record) held at a time")
        let work = try PackagePaths.temporaryDirectory("mdf-deflate-chunks")
        defer { try? FileManager.default.removeItem(at: work) }
        let plain = work.appendingPathComponent("plain.mf4"), deflated = work.appendingPathComponent("dz.mf4")
        try Data(MDFWriter.finalizedFile(layout: layout, records: records)).write(to: plain)
        try Data(file).write(to: deflated)
        let blocks = String(decoding: file, as: UTF8.self)
        #expect(blocks.contains("##DZ") && blocks.contains("##DL") == (chunkBytes < 1_000_000), "DL only when a group takes several chunks")
        #expect(blocks.contains("##HL") == blocks.contains("##DL"), "a list of DZ blocks under an HL (MDF 4.1)")
        let result = try runPython(Self.compare, [plain.path, deflated.path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect((Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0, "channels compared: \(result.stdout)")
    }
}
