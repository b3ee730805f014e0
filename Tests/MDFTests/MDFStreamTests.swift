// The streaming MDF file: cut at arbitrary byte offsets (as a kill -9 while recording leaves it),
// asammdf and our reader open it with every complete record; after the finalization patches it
// is a finalized file whose samples equal the sorted writer's file.
import Foundation
import Testing
import DAQCore
import Acquisition
import TestSupport
@testable import MDF

@Suite struct MDFStreamTests {
    /// The sampler's records as journal payloads, in time order (group order on ties).
    static func payloads() -> (MeasurementLayout, [(group: Int, bytes: [UInt8])], [[UInt8]]) {
        let (layout, records, _) = MDFWriterTests.measure()
        var all: [(time: UInt64, group: Int, bytes: [UInt8])] = []
        for (group, data) in records.enumerated() {
            let size = RecordLayout(layout.groups[group]).recordBytes
            for start in stride(from: 0, to: data.count, by: size) {
                let record = Array(data[start..<(start + size)])
                let time = (0..<8).reduce(UInt64(0)) { $0 | UInt64(record[$1]) << (8 * UInt64($1)) }
                let id = RecordPayload.recordID(group: group)
                all.append((time, group, [UInt8(id & 0xFF), UInt8(id >> 8)] + record))
            }
        }
        // Times are non-negative doubles: their bit patterns sort like the values.
        all.sort { ($0.time, $0.group) < ($1.time, $1.group) }
        return (layout, all.map { ($0.group, $0.bytes) }, records)
    }

    static let reader = """
        import json, sys
        from asammdf import MDF
        out = {}
        for path in sys.argv[2:]:
            try:
                mdf = MDF(path)
                out[path] = [[len(mdf.get_master(i)), float(mdf.get_master(i)[-1]).hex() if len(mdf.get_master(i)) else None]
                             for i in range(len(mdf.groups))]
                mdf.close()
            except Exception as error:
                out[path] = repr(error)
        # The finalized stream file against the sorted writer's file: every channel, every sample.
        sorted_file, stream_file = MDF(sys.argv[1]), MDF(sys.argv[-1])
        diffs = []
        for i, group in enumerate(sorted_file.groups):
            for ch in group.channels:
                a = sorted_file.get(ch.name, group=i, raw=True, ignore_invalidation_bits=True)
                b = stream_file.get(ch.name, group=i, raw=True, ignore_invalidation_bits=True)
                if a.samples.tolist() != b.samples.tolist() or a.timestamps.tolist() != b.timestamps.tolist():
                    diffs.append(ch.name)
                if (a.invalidation_bits is None) != (b.invalidation_bits is None) or (
                        a.invalidation_bits is not None and a.invalidation_bits.tolist() != b.invalidation_bits.tolist()):
                    diffs.append(ch.name + " invalidation")
        out["diffs"] = diffs
        print(json.dumps(out))
        """

    @Test func aCutFileOpensWithEveryCompleteRecordAndCloseFinalizes() throws {
        let (layout, payloads, records) = Self.payloads()
        var stream = MDFStream(layout: layout)
        var file = stream.head
        var ends: [(end: Int, group: Int)] = []
        for payload in payloads {
            file += payload.bytes
            stream.recorded(group: payload.group)
            ends.append((file.count, payload.group))
        }
        let dir = try PackagePaths.temporaryDirectory("mdf-stream")
        var random = SeededGenerator(seed: 7)
        var cuts = [stream.head.count, stream.head.count + 1, file.count - 1, file.count]
        for _ in 0..<8 { cuts.append(Int.random(in: stream.head.count..<file.count, using: &random)) }

        var paths: [String] = []
        var expected: [String: [Int]] = [:]
        for cut in cuts {
            let path = dir.appendingPathComponent("cut-\(cut).mf4").path
            try Data(file.prefix(cut)).write(to: URL(fileURLWithPath: path))
            var counts = Array(repeating: 0, count: layout.groups.count)
            for end in ends where end.end <= cut { counts[end.group] += 1 }
            expected[path] = counts
            paths.append(path)
            // Our reader derives the same counts from the unfinalized file.
            let summary = try MDFReader.summary(of: Array(file.prefix(cut)), source: path)
            #expect(!summary.isFinalized && summary.groups.map { Int($0.cycles) } == counts, "cut at \(cut)")
        }

        var finalized = file
        for patch in stream.finalization() { finalized.replaceSubrange(patch.offset..<(patch.offset + patch.bytes.count), with: patch.bytes) }
        let finalPath = dir.appendingPathComponent("final.mf4").path
        try Data(finalized).write(to: URL(fileURLWithPath: finalPath))
        let sortedPath = dir.appendingPathComponent("sorted.mf4").path
        try Data(MDFWriter.finalizedFile(layout: layout, records: records)).write(to: URL(fileURLWithPath: sortedPath))
        let ours = try MDFReader.summary(of: finalized, source: finalPath)
        #expect(ours.isFinalized && ours.groups.map(\.cycles) == stream.cycles)

        try Self.expectAsammdf(sorted: sortedPath, cuts: paths, expected: expected, final: finalPath, cycles: stream.cycles)
    }

    /// asammdf opens every cut file with `expected` samples per group, and reads the finalized
    /// file with `cycles` samples per group, every channel equal to the sorted writer's file.
    static func expectAsammdf(sorted: String, cuts: [String], expected: [String: [Int]], final: String,
                              cycles: [UInt64]) throws {
        let result = try runPython(reader, [sorted] + cuts + [final])
        try #require(result.status == 0, "asammdf failed: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        for path in cuts {
            let groups = report[path] as? [[Any]]
            #expect(groups?.map { $0[0] as? Int } == expected[path], "\(path): \(report[path] ?? "missing")")
        }
        #expect((report[final] as? [[Any]])?.map { $0[0] as? Int } == cycles.map(Int.init))
        #expect(report["diffs"] as? [String] == [], "finalized stream vs sorted file")
    }
}
