// Crash safety for real: `daqctl journal write-test` is killed with SIGKILL at random moments and
// restarted; afterwards the journal verifies, has no gaps or duplicates, and every seq the child
// reported as synced is present with the payload re-derived from (seed, seq).
import Foundation
import Testing
import DAQCore
import Journal
import JournalStore
import TestSupport

/// Collects a pipe's bytes on a background queue (so the child never blocks on a full pipe).
private final class PipeCollector: @unchecked Sendable {
    // Written by the one reader block, read after `done` is waited on: the group orders them.
    private var data = Data()
    private let done = DispatchGroup()

    init(_ pipe: Pipe) {
        done.enter()
        DispatchQueue.global().async {
            self.data = pipe.fileHandleForReading.readDataToEndOfFile()
            self.done.leave()
        }
    }

    func text() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

@Suite struct JournalCrashTests {
    @Test(arguments: [101, 202] as [UInt64])
    func killNineAtRandomMomentsLosesNothingSynced(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let dir = try freshJournalDirectory("crash")
        defer { removeJournalDirectory(dir) }
        let daqctl = PackagePaths.executable("daqctl")
        let records: UInt64 = 6_000
        let arguments = ["journal", "write-test", "--dir", dir, "--records", String(records),
                         "--payload-min", "0", "--payload-max", "700", "--seed", String(seed),
                         "--sync-every-bytes", "8192", "--segment-bytes", "65536"]
        var reported: [UInt64] = []
        var killed = 0
        for round in 0..<15 {
            let process = Process()
            process.executableURL = daqctl
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            let stdout = PipeCollector(out), stderr = PipeCollector(err)
            try process.run()
            usleep(UInt32.random(in: 5_000...90_000, using: &random))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let lines = stdout.text().split(separator: "\n")
            if process.terminationReason == .uncaughtSignal {
                killed += 1
            } else {
                #expect(process.terminationStatus == 0, "round \(round): \(stderr.text())")
            }
            for line in lines {
                guard let sequence = UInt64(line) else {
                    Issue.record("round \(round): bad output line \(line)")
                    continue
                }
                reported.append(sequence)
            }
        }
        #expect(killed >= 10, "the child finished before it could be killed; raise --records")

        let final = try runProcess(daqctl.path, arguments)
        #expect(final.status == 0, "\(final.stderr)")
        reported += final.stdout.split(separator: "\n").compactMap { UInt64($0) }

        let verify = try runProcess(daqctl.path, ["journal", "verify", dir])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

        // A seq reported synced twice means it was lost and written again after a crash.
        #expect(Set(reported).count == reported.count, "a synced seq was reported twice")
        #expect(reported == reported.sorted())
        let entries = try readAll(dir)
        #expect(entries.map(\.sequence) == Array(1...records))
        for entry in entries {
            let expected = JournalTestPattern.payload(sequence: entry.sequence, seed: seed, minLength: 0, maxLength: 700)
            if entry.payload != expected { Issue.record("seq \(entry.sequence): payload differs") }
        }
        #expect(Set(reported).isSubset(of: Set(entries.map(\.sequence))))
    }

    /// kill -9 keeps the page cache; a power cut does not. After each kill this test also throws
    /// away a random part of the newest segment after the last entry the child reported synced and
    /// leaves random garbage or zeros there (pages half-written or never written), then restarts.
    @Test(arguments: [303, 404] as [UInt64])
    func powerCutLosesOnlyTheUnsyncedTail(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let dir = try freshJournalDirectory("powercut")
        defer { removeJournalDirectory(dir) }
        let daqctl = PackagePaths.executable("daqctl")
        let records: UInt64 = 5_000
        let arguments = ["journal", "write-test", "--dir", dir, "--records", String(records),
                         "--payload-min", "0", "--payload-max", "900", "--seed", String(seed),
                         "--sync-every-bytes", "16384", "--segment-bytes", "65536"]
        var reported: [UInt64] = []
        var cuts = 0
        // At least 12 rounds, and more (up to 40) until 5 of them left an unsynced tail to damage:
        // on a loaded machine more kills land before the child has written anything.
        var rounds = 0
        while rounds < 12 || (cuts < 5 && rounds < 40) {
            rounds += 1
            let process = Process()
            process.executableURL = daqctl
            process.arguments = arguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            let stdout = PipeCollector(out)
            try process.run()
            usleep(UInt32.random(in: 5_000...80_000, using: &random))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            reported += stdout.text().split(separator: "\n").compactMap { UInt64($0) }

            // The newest segment: keep at least everything up to the last reported-synced entry.
            // (A child killed within its first milliseconds may not have created the directory.)
            guard FileManager.default.fileExists(atPath: dir), let newest = try segmentNames(dir).last else { continue }
            let path = dir + "/" + newest
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            guard bytes.count >= SegmentHeader.length else { continue }
            var keep = SegmentHeader.length
            let lastReported = reported.last ?? 0
            _ = bytes.withUnsafeBytes { raw in
                SegmentScan.scan(raw) { offset, _, sequence, payloadLength in
                    if sequence <= lastReported { keep = offset + JournalFraming.framedLength(payloadLength: payloadLength) }
                }
            }
            guard keep < bytes.count else { continue }
            let cut = Int.random(in: keep...bytes.count, using: &random)
            var damaged = Array(bytes[0..<cut])
            let junk = Int.random(in: 0...3_000, using: &random)
            damaged += Bool.random(using: &random)
                ? [UInt8](repeating: 0, count: junk)
                : (0..<junk).map { _ in UInt8.random(in: 0...255, using: &random) }
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            cuts += 1
        }
        #expect(cuts >= 5, "too few rounds left an unsynced tail to damage")

        let final = try runProcess(daqctl.path, arguments)
        #expect(final.status == 0, "\(final.stderr)")
        reported += final.stdout.split(separator: "\n").compactMap { UInt64($0) }
        let verify = try runProcess(daqctl.path, ["journal", "verify", dir])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(Set(reported).count == reported.count, "a synced seq was lost and written again")
        let entries = try readAll(dir)
        #expect(entries.map(\.sequence) == Array(1...records))
        for entry in entries
        where entry.payload != JournalTestPattern.payload(sequence: entry.sequence, seed: seed, minLength: 0, maxLength: 900) {
            Issue.record("seq \(entry.sequence): payload differs")
        }
    }

    /// A kill at each step of creating a segment, the first one and later ones (rotation): strace
    /// stops the writer at its K-th call of one of the syscalls that create a segment, before the
    /// call runs. Whatever that leaves, the journal verifies (no segment file without its whole
    /// header), and the next writer carries on from it to every entry.
    @Test func aKillAtAnyStepOfASegmentsCreationLeavesAValidJournal() throws {
        let strace = "/usr/bin/strace"
        try #require(FileManager.default.isExecutableFile(atPath: strace), "strace is missing: ./vcan-setup.sh --install")
        let daqctl = PackagePaths.executable("daqctl").path
        let records: UInt64 = 40
        func arguments(_ dir: String) -> [String] {
            ["journal", "write-test", "--dir", dir, "--records", String(records), "--payload-min", "100",
             "--payload-max", "300", "--segment-bytes", "1024", "--sync-every-bytes", "512"]
        }
        // The loader and the runtime open files before the journal's: the openat sweep starts past them.
        let opensBefore = try Self.opensBeforeTheJournal(strace, daqctl, arguments)
        var killed = 0, leftTemporary = 0
        for syscall in ["openat", "write", "fsync", "rename"] {
            for when in 1...6 {
                let dir = try freshJournalDirectory("create-kill")
                defer { removeJournalDirectory(dir) }
                let arguments = arguments(dir)
                let which = "\(syscall) #\(when)"
                let nth = syscall == "openat" ? opensBefore + when : when
                let run = try runProcess(strace, ["-f", "-o", "/dev/null", "-e", "trace=\(syscall)",
                                                  "-e", "inject=\(syscall):error=EIO:signal=KILL:when=\(nth)", daqctl] + arguments)
                if run.status != 0 { killed += 1 }
                let verify = try runProcess(daqctl, ["journal", "verify", dir])
                #expect(verify.status == 0, "killed at \(which): \(verify.stdout)\(verify.stderr)")
                // A stray segment.tmp is explained, not ignored.
                if FileManager.default.fileExists(atPath: dir + "/segment.tmp") {
                    leftTemporary += 1
                    #expect(verify.stdout.contains("note: segment.tmp: a segment's creation was cut short"), "\(verify.stdout)")
                }
                let rest = try runProcess(daqctl, arguments)
                #expect(rest.status == 0, "after a kill at \(which): \(rest.stderr)")
                #expect(try readAll(dir).map(\.sequence) == Array(1...records), "after a kill at \(which)")
                #expect(!FileManager.default.fileExists(atPath: dir + "/segment.tmp"), "after a kill at \(which)")
            }
        }
        #expect(killed >= 20, "only \(killed) of 24 runs were killed")
        #expect(leftTemporary >= 3, "only \(leftTemporary) kills left a segment.tmp: the sweep missed the creations")
    }

    /// How many files `daqctl journal write-test` opens before its journal directory (one run
    /// under strace, counting).
    private static func opensBeforeTheJournal(_ strace: String, _ daqctl: String,
                                              _ arguments: (String) -> [String]) throws -> Int {
        let dir = try freshJournalDirectory("count-opens")
        defer { removeJournalDirectory(dir) }
        let run = try runProcess(strace, ["-f", "-e", "trace=openat", daqctl] + arguments(dir))
        let opens = run.stderr.split(separator: "\n").filter { $0.contains("openat(") }
        let before = try #require(opens.firstIndex { $0.contains(dir) }, "write-test never opened \(dir): \(run.stderr)")
        #expect(before > 0)
        return before
    }
}

