// daqlink run for real: the built binary, real files, real signals. Determinism across replay
// speeds, kill -9 at random moments, SIGTERM, and a full disk.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

enum Agent {
    static let daqlink = PackagePaths.executable("daqlink").path
    static let daqctl = PackagePaths.executable("daqctl").path
    static let experiment = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path
    static let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path

    static func run(_ journal: URL, speed: String = "max", extra: [String] = []) throws -> ProcessResult {
        try runProcess(daqlink, ["run", "--experiment", experiment, "--source", "replay:\(log)", "--speed", speed,
                                 "--journal", journal.path, "--quiet"] + extra)
    }

    /// The reference experiment for vcan0 as `work`/live.toml (its DBC by absolute path); returns that DBC's path.
    static func writeLiveExperiment(in work: URL) throws -> String {
        let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
        let experiment = try String(contentsOfFile: Agent.experiment, encoding: .utf8)
            .replacingOccurrences(of: "file = \"engine.dbc\"", with: "file = \"\(dbc)\"")
            .replacingOccurrences(of: "buses = [\"can0\", \"can1\"]", with: "buses = [\"vcan0\"]")
        try experiment.write(to: work.appendingPathComponent("live.toml"), atomically: true, encoding: .utf8)
        return dbc
    }

    /// Runs `script` with bash in the vcan rig (the UML guest here; the host itself where its
    /// kernel has CAN) with `buses` vcan interfaces, as `work`/`name`, and expects it to finish;
    /// returns a reader of the files it leaves in `work` ("" for one it did not write).
    static func runInVcanRig(_ script: String, buses: Int = 1, in work: URL, name: String) throws -> (String) -> String {
        let file = work.appendingPathComponent(name)
        try script.write(to: file, atomically: true, encoding: .utf8)
        let rig = try runProcess(PackagePaths.root.appendingPathComponent("vcan-setup.sh").path,
                                 ["--count", String(buses), "--run", "--", "bash", file.path])
        #expect(rig.status == 0, "\(rig.stdout)\(rig.stderr)")
        return { (try? String(contentsOf: work.appendingPathComponent($0), encoding: .utf8)) ?? "" }
    }

    /// All segment files of a journal, by name, with their bytes.
    static func segments(_ journal: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: journal.path) where name.hasSuffix(".jnl") {
            out[name] = try Data(contentsOf: journal.appendingPathComponent(name))
        }
        return out
    }

    /// Sequence numbers and kinds from `daqctl journal dump`.
    static func dump(_ journal: URL) throws -> [[String: Any]] {
        let result = try runProcess(daqctl, ["journal", "dump", journal.path])
        #expect(result.status == 0, "dump failed: \(result.stderr)")
        return result.stdout.split(separator: "\n").map {
            try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}

@Suite(.serialized) struct AcquisitionRunTests {
    @Test func theReferenceReplayRecordsTheSeedsGroups() throws {
        let journal = try PackagePaths.temporaryDirectory("j")
        let result = try Agent.run(journal)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("group \"Time 5ms\": 2000 records"), "\(result.stderr)")
        #expect(result.stderr.contains("group \"Time 10ms\": 1000 records"), "\(result.stderr)")
        #expect(result.stderr.contains("frames: 103272 (decoded 103272"), "\(result.stderr)")
        let verify = try runProcess(Agent.daqctl, ["journal", "verify", journal.path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let entries = try Agent.dump(journal)
        #expect(entries.first?["layout"] != nil, "the layout entry comes first")
        let groups = Dictionary(grouping: entries.compactMap { $0["group"] as? String }, by: { $0 }).mapValues(\.count)
        #expect(groups["Seg 2"] == groups["Seg 1"])
        #expect((groups["Seg 2"] ?? 0) > 300)
        // The 5 ms raster: consecutive records exactly 5 ms apart in the time master.
        let fast = entries.filter { $0["group"] as? String == "Time 5ms" }.compactMap { $0["dt"] as? Double }
        #expect(zip(fast, fast.dropFirst()).allSatisfy { abs(($1 - $0) - 0.005) < 1e-9 })
    }

    @Test func replaysAtAnySpeedGiveByteIdenticalJournals() throws {
        let a = try PackagePaths.temporaryDirectory("ja"), b = try PackagePaths.temporaryDirectory("jb")
        let c = try PackagePaths.temporaryDirectory("jc")
        // The epoch given (a new journal's default is a fresh one, from the clock and a random source).
        let epoch = ["--epoch", "7"]
        #expect(try Agent.run(a, extra: epoch).status == 0)
        #expect(try Agent.run(b, speed: "40", extra: epoch).status == 0)
        #expect(try Agent.run(c, speed: "max", extra: epoch + ["--sync-bytes", "4096", "--sync-ms", "1"]).status == 0)
        let first = try Agent.segments(a)
        #expect(!first.isEmpty)
        #expect(first == (try Agent.segments(b)), "×40 differs from max speed")
        #expect(first == (try Agent.segments(c)), "a different fsync policy changed the bytes")
    }

    /// Each new journal gets a fresh epoch (the Unix time and six random digits), kept when it is
    /// opened again; `--epoch` pins it, and 0 (an unknown epoch) is refused by name.
    @Test func aNewJournalGetsAFreshEpochThatItKeeps() throws {
        func epoch(_ journal: URL) throws -> UInt64? {
            let verify = try runProcess(Agent.daqctl, ["journal", "verify", journal.path])
            return verify.stdout.split(separator: ",").first { $0.hasPrefix(" epoch ") }.flatMap { UInt64($0.dropFirst(7)) }
        }
        let a = try PackagePaths.temporaryDirectory("epoch-a"), b = try PackagePaths.temporaryDirectory("epoch-b")
        #expect(try Agent.run(a, extra: ["--duration", "1"]).status == 0)
        #expect(try Agent.run(b, extra: ["--duration", "1"]).status == 0)
        let first = try epoch(a), second = try epoch(b)
        let now = UInt64(Date().timeIntervalSince1970)
        #expect(first != nil && first != second, "\(String(describing: first)) \(String(describing: second))")
        #expect((first ?? 0) / 1_000_000 >= now - 120 && (first ?? 0) / 1_000_000 <= now, "\(String(describing: first))")
        #expect(try Agent.run(a, extra: ["--duration", "1", "--epoch", "9"]).status == 0)
        #expect(try epoch(a) == first, "an existing journal keeps its epoch")
        let zero = try Agent.run(b, extra: ["--epoch", "0"])
        #expect(zero.status == 64 && zero.stderr.contains("--epoch must be at least 1"), "\(zero.stderr)")
        // On disk (not tmpfs) no warning about it.
        let fileSystem = try runProcess("/usr/bin/stat", ["-f", "-c", "%T", a.path]).stdout
        if !fileSystem.contains("tmpfs") && !fileSystem.contains("ramfs") {
            #expect(!(try Agent.run(a, extra: ["--duration", "1"])).stderr.contains("tmpfs"))
        }
    }

    /// A journal on tmpfs is gone at power-off, and each boot would start a new stream: daqlink
    /// says so (the collector would otherwise just gather a copy per boot).
    @Test func aJournalOnTmpfsIsWarnedAbout() throws {
        let journal = URL(fileURLWithPath: "/dev/shm").appendingPathComponent("daqlink-test-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: journal) }
        let result = try Agent.run(journal, extra: ["--duration", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("is on tmpfs/ramfs: it is gone at power-off"), "\(result.stderr)")
    }

    @Test func sigtermFlushesAndClosesCleanly() throws {
        let journal = try PackagePaths.temporaryDirectory("jt")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Agent.daqlink)
        process.arguments = ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)", "--speed", "1",
                             "--journal", journal.path, "--quiet"]
        let err = Pipe()
        process.standardError = err
        try process.run()
        usleep(1_500_000)
        process.terminate()
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(stderr.contains("stopped by signal"), "\(stderr)")
        let verify = try runProcess(Agent.daqctl, ["journal", "verify", journal.path])
        #expect(verify.status == 0, "\(verify.stdout)")
        // Everything appended before the signal was flushed, synced and is in the journal: the
        // summary's last sequence number is the journal's last entry.
        let entries = try Agent.dump(journal)
        let last = entries.compactMap { $0["seq"] as? Int }.last ?? 0
        #expect(last > 0)
        #expect(stderr.contains("seq 1…\(last)"), "\(stderr)")
        let fast = entries.filter { $0["group"] as? String == "Time 5ms" }.count
        #expect(fast > 0 && fast < 400, "\(fast) records of the 5 ms group after about 1.5 s")
    }

    @Test(arguments: [UInt64(7), 11])
    func killMinus9AtRandomMomentsNeverBreaksTheJournal(seed: UInt64) throws {
        let journal = try PackagePaths.temporaryDirectory("jk")
        var rng = seed
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        var lastSeq = 0
        for round in 0..<8 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Agent.daqlink)
            process.arguments = ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)",
                                 "--speed", "20", "--journal", journal.path, "--quiet", "--sync-ms", "20"]
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32(80_000 + next() % 400_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let verify = try runProcess(Agent.daqctl, ["journal", "verify", journal.path])
            #expect(verify.status == 0, "round \(round): \(verify.stdout)\(verify.stderr)")
            let seqs = try Agent.dump(journal).compactMap { $0["seq"] as? Int }
            #expect(seqs == Array(stride(from: 1, through: seqs.count, by: 1)), "round \(round): gap or duplicate")
            #expect(seqs.count >= lastSeq, "round \(round): synced entries were lost")
            lastSeq = seqs.count
        }
        #expect(lastSeq > 100)
    }

    @Test func aFullDiskRaisesTheAlarmAndLosesNothingWritten() throws {
        let mountPoint = try PackagePaths.temporaryDirectory("jfull")
        let mounted = try runProcess("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint.path])
        let journal: URL
        var quota: [String] = []
        if mounted.status == 0 {
            journal = mountPoint.appendingPathComponent("journal")
        } else {
            // Without the right to mount, a quota full of unacknowledged data is the same alarm.
            journal = mountPoint
            quota = ["--quota-bytes", "262144", "--segment-bytes", "65536"]
        }
        defer { if mounted.status == 0 { _ = try? runProcess("umount", [mountPoint.path]) } }
        let result = try Agent.run(journal, extra: quota)
        #expect(result.status == 3, "\(result.stderr)")
        #expect(result.stderr.contains("ALARM"), "\(result.stderr)")
        #expect(result.stderr.contains("JOURNAL FULL"), "\(result.stderr)")
        let verify = try runProcess(Agent.daqctl, ["journal", "verify", journal.path])
        #expect(verify.status == 0, "\(verify.stdout)")
        // What was written is intact and is exactly the start of a complete run's journal.
        let entries = try Agent.dump(journal)
        #expect(entries.count > 100)
        let full = try PackagePaths.temporaryDirectory("jref")
        #expect(try Agent.run(full).status == 0)
        let reference = try Agent.dump(full)
        #expect(entries.count < reference.count)
        for (a, b) in zip(entries, reference) {
            #expect(NSDictionary(dictionary: a).isEqual(to: b))
        }
    }
}
