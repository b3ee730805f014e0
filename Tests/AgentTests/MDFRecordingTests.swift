// daqlink --mdf: the measurement's MDF4 file streamed while recording. After a clean exit it is
// finalized; after kill -9 it still opens in asammdf (the oracle) with every complete record, and
// in both cases its samples are the journal's records, value for value.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct MDFRecordingTests {
    /// Per group (by acquisition name): time master and the first channel's raw values, as asammdf reads them.
    static let reader = """
        import json, sys
        from asammdf import MDF
        mdf = MDF(sys.argv[1])
        out = {}
        for index, group in enumerate(mdf.groups):
            name = group.channel_group.acq_name
            first = group.channels[1].name
            sig = mdf.get(first, group=index, raw=True, ignore_invalidation_bits=True)
            out[name] = {"t": [float(x).hex() for x in sig.timestamps.tolist()],
                         "v": [float(x) for x in sig.samples.tolist()], "channel": first}
        print(json.dumps(out))
        """

    /// Returns the samples asammdf read per group.
    @discardableResult
    private func check(_ file: URL, against journal: URL, complete: Bool, everyGroupHasSamples: Bool = true) throws -> [String: Int] {
        let result = try runPython(Self.reader, [file.path])
        try #require(result.status == 0, "asammdf could not open \(file.path): \(result.stderr)")
        let groups = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: [String: Any]]
        let entries = try Agent.dump(journal)
        #expect(groups.count == 5)
        var counts: [String: Int] = [:]
        for (name, data) in groups {
            let times = (data["t"] as! [String]).map { Double($0)! }
            let values = data["v"] as! [Double]
            let channel = data["channel"] as! String
            let records = entries.filter { $0["group"] as? String == name }
            counts[name] = times.count
            if everyGroupHasSamples { #expect(!times.isEmpty, "\(name): no samples") }
            if complete { #expect(times.count == records.count, "\(name)") } else { #expect(times.count <= records.count, "\(name)") }
            for (index, record) in records.prefix(times.count).enumerated() {
                #expect(times[index] == record["dt"] as? Double, "\(name) sample \(index) time")
                let stored = (record["values"] as! [String: Any])[channel]
                if let number = stored as? Double { #expect(values[index] == number, "\(name) sample \(index)") }
            }
        }
        return counts
    }

    @Test func cleanExitLeavesAFinalizedFileEqualToTheJournal() throws {
        let work = try PackagePaths.temporaryDirectory("mdfrec")
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let run = try Agent.run(journal, extra: ["--mdf", mdf.path])
        #expect(run.status == 0, "\(run.stderr)")
        let file = mdf.appendingPathComponent("measurement-1.mf4")
        let head = try FileHandle(forReadingFrom: file).readData(ofLength: 8)
        #expect(String(decoding: head, as: UTF8.self) == "MDF     ", "finalized ID block")
        try check(file, against: journal, complete: true)
    }

    /// Replays the reference log at ×5 with `--mdf`, kills daqlink with SIGKILL after `seconds`;
    /// returns the journal and the MDF file.
    static func recordAndKill(_ label: String, after seconds: Double, extra: [String] = []) throws -> (URL, URL) {
        let work = try PackagePaths.temporaryDirectory(label)
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Agent.daqlink)
        process.arguments = ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)", "--speed", "5",
                             "--journal", journal.path, "--mdf", mdf.path, "--quiet"] + extra
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(useconds_t(seconds * 1e6))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return (journal, mdf.appendingPathComponent("measurement-1.mf4"))
    }

    @Test func killMinus9LeavesAFileAsammdfStillOpens() throws {
        let (journal, file) = try Self.recordAndKill("mdfkill", after: 1.2)
        let head = try FileHandle(forReadingFrom: file).readData(ofLength: 8)
        #expect(String(decoding: head, as: UTF8.self) == "UnFinMF ", "a killed recording stays unfinalized")
        try check(file, against: journal, complete: false)
    }

    @Test func killMinus9WithDeflateKeepsTheRecordsOfTheCompleteBlocks() throws {
        let (journal, file) = try Self.recordAndKill("mdfkilldz", after: 1.5, extra: ["--mdf-deflate"])
        let bytes = try Data(contentsOf: file)
        #expect(String(decoding: bytes.prefix(8), as: UTF8.self) == "UnFinMF ", "a killed recording stays unfinalized")
        // The records asammdf reads are the journal's first N records (a prefix per group, checked
        // by `check`), and exactly those whose payload bytes end within the first k complete
        // 64 KiB blocks: E(N) ≤ k·65536 < E(N+1), E(n) = payload bytes of the first n records.
        let counts = try check(file, against: journal, complete: false, everyGroupHasSamples: false)
        let sizes = try runPython("""
            import json, sys
            from asammdf import MDF
            m = MDF(sys.argv[1])
            print(json.dumps({g.channel_group.acq_name: int(g.channel_group.samples_byte_nr + g.channel_group.invalidation_bytes_nr + 2)
                              for g in m.groups}))
            """, [file.path])
        let payload = try #require(try JSONSerialization.jsonObject(with: sizes.stdoutData) as? [String: Int], "\(sizes.stderr)")
        let records = try Agent.dump(journal).compactMap { $0["group"] as? String }
        let kept = counts.values.reduce(0, +)
        try #require(kept > 0 && kept < records.count, "\(kept) of \(records.count) records")
        var perGroup: [String: Int] = [:]
        for name in records.prefix(kept) { perGroup[name, default: 0] += 1 }
        #expect(perGroup.filter { $0.value > 0 } == counts.filter { $0.value > 0 }, "the file holds the journal's first \(kept) records")
        let end = records.prefix(kept).reduce(0) { $0 + payload[$1]! }
        let next = end + payload[records[kept]]!
        let block = (end + 65_535) / 65_536 * 65_536
        #expect(end >= 65_536 && block < next, "records end at \(end), next at \(next): not a block boundary")
    }

    @Test func aRestartAfterKillMinus9FinalizesTheInterruptedFileFromTheJournal() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart", after: 1.2, extra: ["--mdf-split-seconds", "2"])
        let mdf = file.deletingLastPathComponent()
        let left = try FileManager.default.contentsOfDirectory(atPath: mdf.path).sorted()
        let last = try #require(left.last)
        #expect(String(decoding: try Data(contentsOf: mdf.appendingPathComponent(last)).prefix(8), as: UTF8.self) == "UnFinMF ")
        let restart = try Agent.run(journal, extra: ["--mdf", mdf.path, "--mdf-split-seconds", "2", "--duration", "1"])
        #expect(restart.status == 0, "\(restart.stderr)")
        #expect(restart.stderr.contains("measurement-1 was left unfinalized"), "\(restart.stderr)")
        // Every file of measurement 1 is finalized and together they hold exactly the journal's
        // records of measurement 1 (those before the restart's layout entry).
        let entries = try Agent.dump(journal)
        let secondLayout = try #require(entries.dropFirst().firstIndex { $0["layout"] != nil })
        var expected: [String: Int] = [:]
        for entry in entries[1..<secondLayout] { expected[entry["group"] as! String, default: 0] += 1 }
        let parts = try FileManager.default.contentsOfDirectory(atPath: mdf.path).filter { $0.hasPrefix("measurement-1.") || $0.hasPrefix("measurement-1_") }.sorted()
        #expect(parts.count >= left.count)
        var counts: [String: Int] = [:]
        for part in parts {
            let url = mdf.appendingPathComponent(part)
            #expect(String(decoding: try Data(contentsOf: url).prefix(8), as: UTF8.self) == "MDF     ", "\(part)")
            let result = try runPython("""
                import json, sys
                from asammdf import MDF
                m = MDF(sys.argv[1])
                print(json.dumps({g.channel_group.acq_name: len(m.get_master(i)) for i, g in enumerate(m.groups)}))
                """, [url.path])
            let groups = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Int], "\(result.stderr)")
            for (name, count) in groups { counts[name, default: 0] += count }
        }
        #expect(counts == expected)
    }

    @Test func aFileWhoseStartDiffersFromTheJournalsIsNotRebuilt() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-other", after: 1.0)
        // Another measurement's file under the same name: its ##HD start time differs.
        let handle = try FileHandle(forWritingTo: file)
        try handle.seek(toOffset: 0x40 + 72)
        try handle.write(contentsOf: Data([0x01]))
        try handle.close()
        let before = try Data(contentsOf: file)
        let restart = try Agent.run(journal, extra: ["--mdf", file.deletingLastPathComponent().path, "--duration", "0.5"])
        #expect(restart.status == 0, "\(restart.stderr)")
        #expect(!restart.stderr.contains("left unfinalized"), "\(restart.stderr)")
        #expect(try Data(contentsOf: file) == before, "left as it was")
    }

    /// Samples per group (acquisition name) of every file of measurement 1 in `mdf`, as asammdf
    /// reads them; nil for a file it cannot open. Finalized files only when `finalized`.
    private func measurementOneCounts(_ mdf: URL, finalized: Bool = true) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        let parts = try FileManager.default.contentsOfDirectory(atPath: mdf.path)
            .filter { $0 == "measurement-1.mf4" || $0.hasPrefix("measurement-1_") }.sorted()
        for part in parts {
            let url = mdf.appendingPathComponent(part)
            if finalized { #expect(String(decoding: try Data(contentsOf: url).prefix(8), as: UTF8.self) == "MDF     ", "\(part)") }
            let result = try runPython("""
                import json, sys
                from asammdf import MDF
                m = MDF(sys.argv[1])
                print(json.dumps({g.channel_group.acq_name: len(m.get_master(i)) for i, g in enumerate(m.groups)}))
                """, [url.path])
            let groups = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Int], "\(part): \(result.stderr)")
            for (name, count) in groups { counts[name, default: 0] += count }
        }
        return counts
    }

    /// Records per group of the journal's first measurement (up to its second layout entry).
    private func journalMeasurementOne(_ journal: URL) throws -> [String: Int] {
        let entries = try Agent.dump(journal)
        let end = entries.dropFirst().firstIndex { $0["layout"] != nil } ?? entries.count
        var expected: [String: Int] = [:]
        for entry in entries[1..<end] { if let group = entry["group"] as? String { expected[group, default: 0] += 1 } }
        return expected
    }

    /// A power cut can leave the streaming file shorter than its head (its writes never reached
    /// the card): it used to be skipped at every start, an empty file beside a journal holding
    /// the whole measurement.
    @Test func aFileAPowerCutLeftEmptyIsRebuiltFromTheJournal() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-empty", after: 1.0)
        try Data().write(to: file)
        let restart = try Agent.run(journal, extra: ["--mdf", file.deletingLastPathComponent().path, "--duration", "0.5"])
        #expect(restart.status == 0 && restart.stderr.contains("measurement-1 was left unfinalized"), "\(restart.stderr)")
        #expect(try measurementOneCounts(file.deletingLastPathComponent()) == journalMeasurementOne(journal))
    }

    /// The measurement of an unfinalized file was trimmed from the journal since (quota): the
    /// file stays as it is. daqlink used to refuse to start ("seq 1 is no longer in the journal"),
    /// at every start.
    @Test func anUnfinalizedFileWhoseMeasurementWasTrimmedDoesNotStopTheStart() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-trimmed", after: 1.0, extra: ["--segment-bytes", "65536"])
        let segments = try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted()
        try #require(segments.count >= 2, "\(segments)")
        try FileManager.default.removeItem(at: journal.appendingPathComponent(segments[0]))
        let before = try Data(contentsOf: file)
        let restart = try Agent.run(journal, extra: ["--mdf", file.deletingLastPathComponent().path, "--duration", "0.5",
                                                     "--segment-bytes", "65536"])
        #expect(restart.status == 0, "\(restart.stderr)")
        #expect(try Data(contentsOf: file) == before, "left as the cut left it")
    }

    /// A fresh journal starts again at seq 1, so its first measurement has the name of the old
    /// journal's: the old file is kept under another name, not written over.
    @Test func aNewJournalKeepsAnotherJournalsFileOfTheSameName() throws {
        let work = try PackagePaths.temporaryDirectory("mdf-other-journal")
        let mdf = work.appendingPathComponent("mdf")
        let first = try Agent.run(work.appendingPathComponent("journal-1"), extra: ["--mdf", mdf.path, "--duration", "0.5"])
        #expect(first.status == 0, "\(first.stderr)")
        let old = try Data(contentsOf: mdf.appendingPathComponent("measurement-1.mf4"))
        let second = try Agent.run(work.appendingPathComponent("journal-2"), extra: ["--mdf", mdf.path, "--duration", "0.5"])
        #expect(second.status == 0 && second.stderr.contains("an MDF file of another journal had the name measurement-1: kept as"), "\(second.stderr)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: mdf.path).filter { $0.hasPrefix("measurement-1.before-") }
        try #require(kept.count == 1, "\(kept)")
        #expect(try Data(contentsOf: mdf.appendingPathComponent(kept[0])) == old)
        try check(mdf.appendingPathComponent("measurement-1.mf4"), against: work.appendingPathComponent("journal-2"), complete: true)
    }

    /// The layout entry of the next measurement (another experiment) is damaged: rebuilding the
    /// interrupted file read that measurement's records into it. They did not fit its groups:
    /// daqlink trapped at every start (a record id past its groups) or wrote a file asammdf
    /// refuses (another size). The rebuild now ends at the first record that is not its own.
    @Test func aDamagedLayoutEntryDoesNotPutTheNextMeasurementsRecordsIntoTheFile() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-damaged-layout", after: 1.0)
        let mdf = file.deletingLastPathComponent()
        let expected = try journalMeasurementOne(journal)
        // A second measurement of another experiment: one group of two channels.
        let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
        let small = mdf.deletingLastPathComponent().appendingPathComponent("small.toml")
        try """
            name = "small"
            [[dbc]]
            file = "\(dbc)"
            [[group]]
            name = "OnlyGroupQX"
            raster_ms = 10
            channels = ["EngFast_00.EngFast_00_S0", "EngFast_00.EngFast_00_S1"]
            """.write(to: small, atomically: true, encoding: .utf8)
        let damaged = try recordAgainAndDamageItsLayout(journal, file, experiment: small, marker: "OnlyGroupQX", at: 0)
        try #require(damaged > 0)
        try expectMeasurementOneRebuilt(journal, file, expected)
    }

    /// Records a second measurement of `experiment` into `journal`, marks measurement 1's
    /// `file` unfinalized again, and flips a bit `at` bytes into the first `marker` of each
    /// segment (the second layout entry); returns how many segments it changed.
    private func recordAgainAndDamageItsLayout(_ journal: URL, _ file: URL, experiment: URL, marker: String, at offset: Int) throws -> Int {
        let second = try runProcess(Agent.daqlink, ["run", "--experiment", experiment.path, "--source", "replay:\(Agent.log)", "--speed", "max",
                                                    "--journal", journal.path, "--quiet", "--mdf", file.deletingLastPathComponent().path,
                                                    "--duration", "1"])
        #expect(second.status == 0, "\(second.stderr)")
        let handle = try FileHandle(forWritingTo: file)
        try handle.write(contentsOf: Data("UnFinMF ".utf8))
        try handle.close()
        var damaged = 0
        for (name, bytes) in try Agent.segments(journal) {
            guard let range = bytes.range(of: Data(marker.utf8)) else { continue }
            var changed = bytes
            changed[range.lowerBound + offset] ^= 0x20
            try changed.write(to: journal.appendingPathComponent(name))
            damaged += 1
        }
        return damaged
    }

    /// A restart rebuilds measurement 1's file, and it holds `expected` records per group.
    private func expectMeasurementOneRebuilt(_ journal: URL, _ file: URL, _ expected: [String: Int]) throws {
        let mdf = file.deletingLastPathComponent()
        let restart = try Agent.run(journal, extra: ["--mdf", mdf.path, "--duration", "0.5"])
        #expect(restart.status == 0 && restart.stderr.contains("measurement-1 was left unfinalized"), "\(restart.stderr)")
        #expect(try measurementOneCounts(mdf) == expected)
    }

    /// The layout entry of the next measurement, of the same experiment, is damaged: its records
    /// fit the interrupted file's groups, and the rebuild read them into it, timed from the wrong
    /// start. Their times going back now hold them out of the file (`MeasurementContinuity`, the
    /// collector's rule after a `lost` placeholder).
    @Test func aDamagedLayoutEntryOfTheSameExperimentEndsTheRebuiltFile() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-damaged-same", after: 1.0)
        let mdf = file.deletingLastPathComponent()
        let expected = try journalMeasurementOne(journal)
        // The reference experiment again, under another name (the only bytes its layout entry
        // does not share with the first measurement's, but its start time).
        let again = mdf.deletingLastPathComponent().appendingPathComponent("again.toml")
        let reference = try String(contentsOf: URL(fileURLWithPath: Agent.experiment), encoding: .utf8)
            .replacingOccurrences(of: "name = \"reference\"", with: "name = \"referenceQX\"")
            .replacingOccurrences(of: "file = \"", with: "file = \"\(PackagePaths.fixtures.appendingPathComponent("reference").path)/")
        try reference.write(to: again, atomically: true, encoding: .utf8)
        try #require(try recordAgainAndDamageItsLayout(journal, file, experiment: again, marker: "referenceQX", at: 9) == 1)
        try expectMeasurementOneRebuilt(journal, file, expected)
    }

    /// A damaged record of the measurement itself (a flipped bit in synced entries): the rebuilt
    /// file keeps every readable record after it. (Ending the file at any damage, as a first
    /// version of the fix above did, dropped them.)
    @Test func aDamagedRecordOfTheMeasurementKeepsTheRecordsAfterItInTheRebuiltFile() throws {
        let (journal, file) = try Self.recordAndKill("mdfrestart-damaged-record", after: 1.0)
        let mdf = file.deletingLastPathComponent()
        let (name, bytes) = try #require(try Agent.segments(journal).max { $0.value.count < $1.value.count })
        try #require(bytes.count > 200_000, "\(bytes.count)")
        var changed = bytes
        changed[changed.startIndex + bytes.count / 2] ^= 0x5A
        try changed.write(to: journal.appendingPathComponent(name))
        let restart = try Agent.run(journal, extra: ["--mdf", mdf.path, "--duration", "0.5"])
        #expect(restart.status == 0 && restart.stderr.contains("measurement-1 was left unfinalized"), "\(restart.stderr)")
        // The readable records of measurement 1, as `journal dump` reads them (exit 2: it names the damage).
        let dump = try runProcess(Agent.daqctl, ["journal", "dump", journal.path])
        #expect(dump.status == 2 && dump.stdout.contains("\"unreadable\""), "\(dump.stderr)")
        let entries = dump.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let end = entries.dropFirst().firstIndex { $0["layout"] != nil } ?? entries.count
        var expected: [String: Int] = [:]
        for entry in entries[1..<end] { if let group = entry["group"] as? String { expected[group, default: 0] += 1 } }
        #expect(try measurementOneCounts(mdf) == expected)
    }

    /// A streaming deflate file lists its ##DZ blocks in a ##DL: original lengths each below the
    /// per-block limit whose sum is not are named, without a trap (inspect died of an arithmetic
    /// overflow adding them).
    @Test func inspectNamesDeflateBlocksWhoseLengthsAddUpPastTheLimit() throws {
        let work = try PackagePaths.temporaryDirectory("mdf-dz-sum")
        let mdf = work.appendingPathComponent("mdf")
        let run = try Agent.run(work.appendingPathComponent("journal"), extra: ["--mdf", mdf.path, "--mdf-deflate"])
        #expect(run.status == 0, "\(run.stderr)")
        var bytes = [UInt8](try Data(contentsOf: mdf.appendingPathComponent("measurement-1.mf4")))
        var forged = 0
        for offset in stride(from: 0, to: bytes.count - 40, by: 8) where bytes[offset..<offset + 4].elementsEqual("##DZ".utf8) {
            for index in 0..<8 { bytes[offset + 32 + index] = UInt8(truncatingIfNeeded: ((UInt64(1) << 62) - 1) >> (8 * UInt64(index))) }
            forged += 1
        }
        try #require(forged >= 3, "the file has \(forged) ##DZ blocks")
        let bomb = work.appendingPathComponent("bomb.mf4")
        try Data(bytes).write(to: bomb)
        let refused = try runProcess(Agent.daqctl, ["inspect", bomb.path])
        #expect(refused.status == 1 && refused.stderr.contains("##DZ original lengths add up past"), "\(refused.status) \(refused.stderr)")
    }
}
