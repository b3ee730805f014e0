// `daqctl journal dump` and `daqctl export` on a device journal whose oldest segments retention
// has deleted, and on a collector's copy with `lost` placeholders (from a review: both refused the
// first — "seq 1 is no longer in the journal" — and export left the lost entries out unsaid), and
// the layout repeat at each segment's start that keeps such a journal decodable.
import Foundation
import Journal
import JournalStore
import Testing
import TestSupport

@Suite struct JournalRetentionReadTests {
    static let daqlink = PackagePaths.executable("daqlink").path
    static let daqctl = PackagePaths.executable("daqctl").path

    /// An experiment of one 5 ms group of the reference DBC's `channels`, written in `directory`.
    static func fiveMillisecondExperiment(in directory: URL, group: String, channels: [String]) throws -> URL {
        let file = directory.appendingPathComponent("experiment-\(channels.count).toml")
        try Data("""
            name = "five-ms"
            [[dbc]]
            file = "\(PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path)"
            buses = ["can0", "can1"]
            [[group]]
            name = "\(group)"
            raster_ms = 5
            channels = [\(channels.map { "\"\($0)\"" }.joined(separator: ", "))]

            """.utf8).write(to: file)
        return file
    }

    @Test func aTrimmedJournalIsDumpedAndExportedFromItsOldestEntryAndLostEntriesAreSaid() throws {
        let work = try PackagePaths.temporaryDirectory("retention-read")
        let journal = work.appendingPathComponent("j")
        let experiment = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path
        let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path
        // Two runs: two measurements, each with its layout entry at its start, and a layout
        // repeat at the start of every later segment.
        for _ in 0..<2 {
            let run = try runProcess(Self.daqlink, ["run", "--experiment", experiment, "--source", "replay:\(log)", "--speed", "max",
                                                    "--journal", journal.path, "--quiet", "--segment-bytes", "65536"])
            #expect(run.status == 0, "\(run.stderr)")
        }
        // A collector's stand-ins for two entries the device could not read back.
        let writer = try JournalWriter(directory: journal.path, configuration: JournalConfiguration(epoch: 1))
        for _ in 0..<2 { _ = try writer.append(kind: .lost, payload: Array("damaged at the device".utf8)) }
        try writer.close()
        // Retention: the oldest segment, with the first measurement's layout entry, is gone.
        let segments = try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted()
        try #require(segments.count > 3, "\(segments)")
        let oldest = journal.appendingPathComponent(segments[0])
        try FileManager.default.removeItem(at: oldest)

        // Every segment daqlink starts opens with the layout in force: nothing left undecoded.
        let dump = try runProcess(Self.daqctl, ["journal", "dump", journal.path])
        #expect(dump.status == 2, "\(dump.stderr)")
        #expect(!dump.stdout.contains("\"undecoded\": "), "records after the deleted layout entry were left undecoded")
        #expect(dump.stdout.hasPrefix("{\"seq\": \(SegmentName.firstSequence(of: segments[1])!), \"layout_repeat\": true}\n"))
        #expect(dump.stdout.contains("\"layout\": {") && dump.stdout.contains("\"lost\": "))
        #expect(!dump.stderr.contains("records before the first layout entry") && dump.stderr.contains("2 entries are \"lost\""),
                "\(dump.stderr)")

        let csv = work.appendingPathComponent("run.csv").path
        let export = try runProcess(Self.daqctl, ["export", "--journal", journal.path, "--format", "csv", "--out", csv])
        #expect(export.status == 2, "\(export.stderr)")
        #expect(export.stderr.contains("2 entries are \"lost\" placeholders") && export.stderr.contains("not exported")
                && !export.stderr.contains("records before the first layout entry"), "\(export.stderr)")
        // The second measurement whole: 2000 records of the 5 ms group (and the header line); the
        // first one from its second segment on.
        let fast = export.stdout.split(separator: "\n").filter { $0.contains("Time_5ms") }
        try #require(fast.count == 2, "\(export.stdout)")
        let firstRows = try String(contentsOfFile: String(fast[0]), encoding: .utf8).split(separator: "\n").count - 1
        #expect(firstRows > 1000 && firstRows < 2000, "\(firstRows)")
        #expect(try String(contentsOfFile: String(fast[1]), encoding: .utf8).split(separator: "\n").count == 2001)

        // Damage takes the repeat too (a flipped bit in the next segment's first entry): the
        // records up to the following segment's repeat are undecoded, counted, and said.
        let next = journal.appendingPathComponent(segments[1])
        var bytes = try Data(contentsOf: next)
        bytes[SegmentHeader.length + 40] ^= 0x01
        try bytes.write(to: next)
        let damaged = try runProcess(Self.daqctl, ["journal", "dump", journal.path])
        #expect(damaged.status == 2 && damaged.stdout.contains("\"unreadable\": ") && damaged.stdout.contains("\"undecoded\": "))
        #expect(damaged.stderr.contains("records before the first layout entry still in the journal"), "\(damaged.stderr)")
        let undecoded = damaged.stdout.split(separator: "\n").filter { $0.contains("\"undecoded\": ") }.count
        #expect(undecoded > 50 && undecoded < 300, "only the damaged segment's records: \(undecoded)")
        let damagedExport = try runProcess(Self.daqctl, ["export", "--journal", journal.path, "--format", "csv",
                                                         "--out", work.appendingPathComponent("damaged.csv").path])
        #expect(damagedExport.status == 2 && damagedExport.stderr.contains("records before the first layout entry still in the journal"),
                "\(damagedExport.stderr)")

        // A directory of other files (`journal dump .` in the wrong place); an empty one is an
        // empty journal, as `journal verify` says (a writer killed before its first segment).
        let other = try PackagePaths.temporaryDirectory("not-a-journal")
        try Data("notes".utf8).write(to: other.appendingPathComponent("README"))
        let wrong = try runProcess(Self.daqctl, ["journal", "dump", other.path])
        #expect(wrong.status == 1 && wrong.stderr.contains("not a journal directory"), "it printed nothing and exited 0: \(wrong.stderr)")
        let empty = try runProcess(Self.daqctl, ["journal", "dump", try PackagePaths.temporaryDirectory("empty-journal").path])
        #expect(empty.status == 0 && empty.stdout.isEmpty, "\(empty.stderr)")
        let limit = try runProcess(Self.daqctl, ["journal", "dump", journal.path, "--limit", "-1"])
        #expect(limit.status == 64 && limit.stderr.contains("--limit must be at least 1"), "\(limit.stderr)")
    }

    /// A newest segment that ends inside an entry (a crash's unsynced tail), or a stray segment
    /// shorter than its header: `journal verify` calls each a fault, and `journal dump` printed
    /// every entry before it and exited 0 without a word. It now names the bytes and exits 2.
    @Test func aTornTailIsNamedByDump() throws {
        let work = try PackagePaths.temporaryDirectory("dump-torn-tail")
        let journal = work.appendingPathComponent("j")
        let run = try runProcess(Self.daqlink, ["run", "--experiment", PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path,
                                                "--source", "replay:\(PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path)",
                                                "--speed", "max", "--journal", journal.path, "--quiet"])
        #expect(run.status == 0, "\(run.stderr)")
        let whole = try runProcess(Self.daqctl, ["journal", "dump", journal.path])
        #expect(whole.status == 0 && whole.stderr.isEmpty, "\(whole.stderr)")
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted().last)
        let path = journal.appendingPathComponent(segment).path
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(truncate(path, off_t(size - 100)) == 0)
        let torn = try runProcess(Self.daqctl, ["journal", "dump", journal.path])
        #expect(torn.status == 2, "\(torn.stderr)")
        #expect(torn.stderr.contains("\(journal.path)/\(segment) ends in ") && torn.stderr.contains("that make no whole entry: a crash's unsynced tail"),
                "\(torn.stderr)")
        let lines = whole.stdout.split(separator: "\n")
        let printed = torn.stdout.split(separator: "\n").count
        #expect(whole.stdout.hasPrefix(torn.stdout) && printed < lines.count && printed >= lines.count - 2,
                "every entry before the tail is printed: \(printed) of \(lines.count) lines")
        // With --limit the dump stops before the end and says nothing of it.
        let limited = try runProcess(Self.daqctl, ["journal", "dump", journal.path, "--limit", "3"])
        #expect(limited.status == 0 && limited.stderr.isEmpty, "\(limited.stderr)")

        #expect(truncate(path, off_t(size)) == 0)   // zeros: not an entry either
        let stray = journal.appendingPathComponent(SegmentName.name(firstSequence: UInt64(lines.count + 1)))
        try Data([0x44, 0x41, 0x51]).write(to: stray)
        let short = try runProcess(Self.daqctl, ["journal", "dump", journal.path])
        #expect(short.status == 2 && short.stderr.contains("\(stray.lastPathComponent) is 3 bytes, shorter than a segment header (40 bytes)"),
                "\(short.stderr)")
    }

    /// A measurement whose layout entry is gone while an earlier measurement's layout is in force
    /// (damage, or a segment lost with it): the repeat that opens its next segment differs from
    /// the layout in force, and dump and export switch to it. They decoded its records with the
    /// earlier layout: dump stopped (exit 1), export refused the journal.
    @Test func aRepeatThatDiffersFromTheLayoutInForceTakesOver() throws {
        let work = try PackagePaths.temporaryDirectory("repeat-switch")
        let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path
        let slow = try Self.fiveMillisecondExperiment(in: work, group: "Two 5ms",
                                                      channels: ["EngFast_00.EngFast_00_S0", "EngFast_00.EngFast_00_S1"])
        let first = work.appendingPathComponent("first"), second = work.appendingPathComponent("second")
        for (journal, experiment, segment) in [(first, PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path, "8388608"),
                                               (second, slow.path, "4096")] {
            let run = try runProcess(Self.daqlink, ["run", "--experiment", experiment, "--source", "replay:\(log)", "--speed", "max",
                                                    "--journal", journal.path, "--quiet", "--segment-bytes", segment])
            #expect(run.status == 0, "\(run.stderr)")
        }
        // The first measurement whole, then the second from its second segment on (its layout
        // entry and first records gone).
        let segments = try FileManager.default.contentsOfDirectory(atPath: second.path).filter { $0.hasSuffix(".jnl") }.sorted()
        try #require(segments.count > 2, "\(segments)")
        let joined = work.appendingPathComponent("joined")
        let writer = try JournalWriter(directory: joined.path, configuration: JournalConfiguration(epoch: 1))
        var secondRecords = 0
        for (journal, from) in [(first, UInt64(1)), (second, SegmentName.firstSequence(of: segments[1])!)] {
            let reader = try JournalReader(directory: journal.path, from: from)
            while let entry = try reader.next() {
                if journal == second {
                    if entry.sequence == from { #expect(entry.kind == .layoutRepeat) }
                    if entry.kind == .record { secondRecords += 1 }
                }
                _ = try writer.append(kind: entry.kind, payload: entry.payload)
            }
        }
        try writer.close()

        let dump = try runProcess(Self.daqctl, ["journal", "dump", joined.path])
        #expect(dump.status == 0, "\(dump.stderr)")
        #expect(dump.stdout.split(separator: "\n").filter { $0.contains("\"group\": \"Two 5ms\"") }.count == secondRecords)
        let export = try runProcess(Self.daqctl, ["export", "--journal", joined.path, "--format", "csv",
                                                  "--out", work.appendingPathComponent("joined.csv").path])
        #expect(export.status == 0, "\(export.stderr)")
        let twoCSV = try #require(export.stdout.split(separator: "\n").first { $0.contains("Two_5ms") }, "\(export.stdout)")
        #expect(try String(contentsOfFile: String(twoCSV), encoding: .utf8).split(separator: "\n").count == secondRecords + 1)
    }

    /// Export reads the journal twice (counts, then writes). Retention deleting the first
    /// measurement between the passes shifted the second pass's measurement numbers: export
    /// trapped on an index and left its temporary files. It now stops, says why, leaves no file.
    @Test func retentionBetweenTheTwoPassesOfAnExportStopsItCleanly() throws {
        let work = try PackagePaths.temporaryDirectory("export-passes")
        let journal = work.appendingPathComponent("j")
        // Two measurements of different experiments (one group, then five).
        let one = try Self.fiveMillisecondExperiment(in: work, group: "One 5ms", channels: ["EngFast_00.EngFast_00_S0"])
        for experiment in [one.path, PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path] {
            let run = try runProcess(Self.daqlink, ["run", "--experiment", experiment,
                                                    "--source", "replay:\(PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path)",
                                                    "--speed", "max", "--journal", journal.path, "--quiet", "--segment-bytes", "65536"])
            #expect(run.status == 0, "\(run.stderr)")
        }
        // Retention takes the first measurement whole, the second's layout entry with it.
        let layouts = try runProcess(Self.daqctl, ["journal", "dump", journal.path]).stdout.split(separator: "\n")
            .filter { $0.contains("\"layout\": {") }.compactMap { UInt64($0.dropFirst("{\"seq\": ".count).prefix { $0.isNumber }) }
        try #require(layouts.count == 2)
        let segments = try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted()
        let doomed = segments.filter { (SegmentName.firstSequence(of: $0) ?? 0) <= layouts[1] }
        try #require(doomed.count < segments.count - 1, "\(segments)")
        let out = work.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        // The second write to stderr ends the first pass's progress line: held there 2 s while the
        // first measurement's segments go.
        let export = Process()
        export.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
        export.arguments = ["-f", "-qq", "-o", "/dev/null", "-e", "trace=write", "-e", "inject=write:delay_exit=2000000:when=2",
                            Self.daqctl, "export", "--journal", journal.path, "--format", "mdf", "--out", out.appendingPathComponent("x.mf4").path,
                            "--progress"]
        let stderr = Pipe()
        export.standardError = stderr
        export.standardOutput = FileHandle.nullDevice
        try export.run()
        usleep(1_000_000)
        for name in doomed { try FileManager.default.removeItem(at: journal.appendingPathComponent(name)) }
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        export.waitUntilExit()
        #expect(export.terminationStatus == 1 && text.contains("the journal changed while it was exported"), "\(text)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).isEmpty)
    }
}
