// daqlink --mdf with --mdf-split-seconds / --mdf-split-bytes: the measurement is cut into
// finalized files at record boundaries, named in order; asammdf opens each, and every channel
// concatenated across the files equals the unsplit export of the same journal.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct MDFSplitTests {
    static let concatenation = """
        import json, sys
        import numpy as np
        from asammdf import MDF
        whole, paths = MDF(sys.argv[1]), sys.argv[2:]
        parts = [MDF(path) for path in paths]
        report = {"compared": 0, "mismatches": [], "finalized": [], "groups": [len(m.groups) for m in parts]}
        for path in paths:
            with open(path, "rb") as f: report["finalized"].append(f.read(8) == b"MDF     ")
        for gi, group in enumerate(whole.groups):
            acq = group.channel_group.acq_name
            for ch in group.channels[1:]:
                a = whole.get(ch.name, group=gi, raw=True, ignore_invalidation_bits=True)
                samples, times = [], []
                for m in parts:
                    index = [i for i, g in enumerate(m.groups) if g.channel_group.acq_name == acq][0]
                    b = m.get(ch.name, group=index, raw=True, ignore_invalidation_bits=True)
                    samples.append(b.samples); times.append(b.timestamps)
                if not (np.array_equal(a.samples, np.concatenate(samples)) and np.array_equal(a.timestamps, np.concatenate(times))):
                    if len(report["mismatches"]) < 10: report["mismatches"].append(f"{acq} {ch.name}")
                report["compared"] += 1
        print(json.dumps(report))
        """

    /// Runs the reference replay with `flags`, exports the journal unsplit, and checks the files.
    /// `measurement-1.mf4`, `measurement-1_0002.mf4`, … (`count` files).
    static func names(_ count: Int) -> [String] {
        ["measurement-1.mf4"] + (1..<count).map { "measurement-1_" + String(String($0 + 1).reversed()).padding(toLength: 4, withPad: "0", startingAt: 0).reversed() + ".mf4" }
    }

    private func check(_ label: String, flags: [String], expectedFiles: [String]?, channels: Int) throws -> [URL] {
        let work = try PackagePaths.temporaryDirectory(label)
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let run = try Agent.run(journal, extra: ["--mdf", mdf.path] + flags)
        #expect(run.status == 0, "\(run.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: mdf.path).sorted()
        #expect(names == (expectedFiles ?? Self.names(names.count)), "\(names)")
        let whole = work.appendingPathComponent("whole.mf4").path
        let export = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "mdf", "--out", whole])
        #expect(export.status == 0, "\(export.stderr)")
        let parts = names.map { mdf.appendingPathComponent($0) }
        let result = try runPython(Self.concatenation, [whole] + parts.map(\.path))
        try #require(result.status == 0, "asammdf: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        #expect(report["mismatches"] as? [String] == [], "\(report)")
        #expect(report["compared"] as? Int == channels)
        #expect(report["finalized"] as? [Bool] == Array(repeating: true, count: names.count))
        return parts
    }

    @Test func splitByMeasurementTimeWithDeflateAndRawFrames() throws {
        let files = Self.names(4)
        #expect(files == ["measurement-1.mf4", "measurement-1_0002.mf4", "measurement-1_0003.mf4", "measurement-1_0004.mf4"])
        // 291 channels + the bus-logging group's CAN_DataFrame and its 10 members.
        _ = try check("mdfsplit-time", flags: ["--mdf-split-seconds", "3", "--mdf-deflate", "--mdf-bus-logging"],
                      expectedFiles: files, channels: 291 + 11)
    }

    @Test func splitBySizeKeepsEveryFileWithinTheLimit() throws {
        let limit = 200_000
        let parts = try check("mdfsplit-size", flags: ["--mdf-split-bytes", "\(limit)"], expectedFiles: nil, channels: 291)
        #expect(parts.count >= 5, "\(parts.count) files")
        // Each file is cut before the record that would not fit (records are at most ~400 bytes).
        for (index, part) in parts.enumerated() {
            let size = try FileManager.default.attributesOfItem(atPath: part.path)[.size] as! Int
            #expect(size <= limit && (size > limit - 1024 || index == parts.count - 1), "\(part.lastPathComponent): \(size)")
        }
    }
}
