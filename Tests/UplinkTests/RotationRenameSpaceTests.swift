// A segment's rename refused for space (ENOSPC, as ext4 says when the directory needs a block it
// cannot get), injected by strace into daqlink's rename of one new segment. The writer frees one
// segment the collector has acknowledged and renames again; acquisition and the uplink go on.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Journal
import JournalStore
import Testing
import TestSupport

@Suite struct RotationRenameSpaceTests {
    /// The names of the segments the fixture's replay makes with `segmentBytes`, from a run without
    /// an uplink (the entries, and so the segment boundaries, do not depend on the epoch or speed).
    private func segmentNames(segmentBytes: Int, in work: URL) throws -> [String] {
        let journal = work.appendingPathComponent("dry-run")
        let run = try runProcess(UplinkRig.daqlink, ["run", "--experiment", UplinkRig.experiment, "--source", "replay:\(UplinkRig.log)",
                                                     "--speed", "max", "--journal", journal.path, "--quiet",
                                                     "--segment-bytes", "\(segmentBytes)"])
        #expect(run.status == 0, "\(run.stderr)")
        return try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted()
    }

    /// A rig with its collector running, the segments the replay makes with 64 KiB segments, and
    /// the eleventh of them with its temporary path: about 3 s into the run, so the collector has
    /// acknowledged the first ones even on a loaded machine (at the sixth, a run beside other tests
    /// had its cursor at 317, inside the second segment).
    private func rigAndVictim() throws -> (rig: UplinkRig, names: [String], victim: String, temporary: String) {
        let rig = try UplinkRig()
        let names = try segmentNames(segmentBytes: 65_536, in: rig.work)
        try #require(names.count > 12, "\(names)")
        try rig.startCollector()
        return (rig, names, names[10], rig.journal.appendingPathComponent(names[10] + ".new").path)
    }

    /// A log of the fixture's first frame alone, in `directory`.
    private func oneFrameLog(_ directory: URL) throws -> URL {
        let log = directory.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: log, atomically: true, encoding: .utf8)
        return log
    }

    /// The thread of `pid` named `name` (`/proc/<pid>/task/<tid>/comm`), once it exists.
    private func thread(named name: String, of pid: pid_t, within seconds: Double) -> pid_t? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                if (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) == name + "\n" { return pid_t(task) }
            }
            usleep(5_000)
        } while Date() < deadline
        return nil
    }

    @Test func aRenameRefusedForSpaceFreesAnAcknowledgedSegmentAndGoesOn() throws {
        let (rig, names, victim, temporary) = try rigAndVictim()
        try rig.startDevice(speed: "2", extra: ["--segment-bytes", "65536", "--drain-timeout", "30"])
        let device = try #require(rig.device)
        // strace on the sync thread alone: strace counts `when` per thread, and the retry runs on
        // the loop's thread, so this refuses the first rename and lets the retry through.
        let tid = try #require(thread(named: "journal-sync", of: device.processIdentifier, within: 5))
        let output = rig.work.appendingPathComponent("rename.strace")
        let strace = Process()
        strace.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
        strace.arguments = ["-qq", "-o", output.path, "-p", "\(tid)", "-P", temporary, "-e", "trace=rename,renameat,renameat2",
                            "-e", "inject=rename,renameat,renameat2:error=ENOSPC:when=1"]
        try strace.run()
        defer { if strace.isRunning { strace.terminate() } }
        let attached = Date().addingTimeInterval(5)
        while !((try? String(contentsOfFile: "/proc/\(tid)/status", encoding: .utf8))?.contains("TracerPid:\t\(strace.processIdentifier)") ?? false),
              Date() < attached { usleep(5_000) }
        let before = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path).filter { $0.contains(".jnl") }.sorted()
        try #require(!before.contains(victim) && !before.contains(victim + ".new"), "attached too late: \(before)")

        let (status, log) = rig.waitForDevice()
        strace.waitUntilExit()
        #expect(status == 0 && !log.contains("not drained") && !log.contains("ALARM"), "\(log)")
        let injected = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(injected.contains("ENOSPC") && injected.contains("(INJECTED)"), "the rename was not refused: \(injected)")

        // The oldest segment, acknowledged, made room; every other one is there under its name.
        let left = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path).filter { $0.contains(".jnl") }.sorted()
        #expect(left == Array(names.dropFirst()), "\(left)")
        // The collector holds everything; the device's journal reads whole from its oldest entry on.
        let verify = try rig.verify(within: 20)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let journalVerify = try runProcess(UplinkRig.daqctl, ["journal", "verify", rig.journal.path])
        #expect(journalVerify.status == 0, "\(journalVerify.stdout)\(journalVerify.stderr)")
    }

    /// Refused on every thread (the retry too), the writer stops as journal full, with the new
    /// segment's entries synced under its temporary name. The next start names it (it continues
    /// the journal) and drains it: the open removed it before, and its entries with it.
    @Test func aRenameRefusedTwiceStopsTheRunAndTheNextStartKeepsTheSegment() throws {
        let (rig, _, victim, temporary) = try rigAndVictim()
        try rig.startDevice(speed: "2", extra: ["--segment-bytes", "65536", "--drain-timeout", "10"],
                            wrapper: ["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null", "-P", temporary,
                                      "-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=ENOSPC:when=1"])
        let (status, log) = rig.waitForDevice()
        #expect(status != 0 && log.contains("rename the new segment into place failed: No space left on device")
                && log.contains("JOURNAL FULL"), "\(log)")
        let stopped = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path).filter { $0.contains(".jnl") }.sorted()
        // (A later rotation may have come before the failure was known: its segment waits unnamed too.)
        #expect(stopped.contains(victim + ".new") && !stopped.contains(victim), "\(stopped)")
        let unnamed = try Data(contentsOf: URL(fileURLWithPath: temporary))
        #expect(unnamed.count > 40, "the segment holds entries")

        // The disk still full at the next start, and nothing acknowledged to free (a copy of the
        // journal, with no ack cursor): the segment cannot be named, and goes, as before. The
        // open used to fail there, so the device did not start at all.
        let copy = rig.work.appendingPathComponent("full-copy")
        try FileManager.default.copyItem(at: rig.journal, to: copy)
        try? FileManager.default.removeItem(at: copy.appendingPathComponent("ack"))
        let full = try runProcess("/usr/bin/strace", ["-f", "-qq", "-o", "/dev/null", "-P", copy.appendingPathComponent(victim + ".new").path,
                                                      "-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=ENOSPC",
                                                      UplinkRig.daqlink, "run", "--experiment", UplinkRig.experiment, "--quiet",
                                                      "--source", "replay:\(try oneFrameLog(rig.work).path)", "--speed", "max",
                                                      "--journal", copy.path, "--segment-bytes", "65536"])
        // It starts and acquires (the next rotation's rename, of the same name, is refused again:
        // journal full, as the card is).
        #expect(full.stderr.contains("journal recovery: removed \(victim).new, a new segment no sync had renamed into place")
                && full.stderr.contains("frames: 1 (decoded 1"), "\(full.status) \(full.stderr)")

        // The next start, on the same journal, with its first rename of the segment refused too:
        // an acknowledged segment makes room, the segment is named, and everything drains.
        let acknowledged = try #require(JournalVerifier.verify(directory: rig.journal.path).acknowledgedUpTo)
        let oldest = try #require(stopped.first { $0.hasSuffix(".jnl") })
        let second = try #require(stopped.filter { $0.hasSuffix(".jnl") }.dropFirst().first)
        try #require(SegmentName.firstSequence(of: second)! - 1 <= acknowledged, "the oldest segment is acknowledged: \(acknowledged)")
        try rig.startDevice(speed: "max", extra: ["--segment-bytes", "65536", "--drain-timeout", "30"],
                            wrapper: ["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null", "-P", temporary,
                                      "-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=ENOSPC:when=1"])
        let (again, restarted) = rig.waitForDevice()
        #expect(again == 0 && !restarted.contains("not drained"), "\(restarted)")
        #expect(restarted.contains("journal recovery: named \(victim), a new segment no sync had renamed into place"), "\(restarted)")
        #expect(!FileManager.default.fileExists(atPath: rig.journal.appendingPathComponent(oldest).path), "the oldest segment made room")
        #expect(restarted.contains("journal recovery: deleted \(oldest), acknowledged by the collector, to make room"), "\(restarted)")
        for name in stopped where name.hasSuffix(".new") {
            #expect(restarted.contains("journal recovery: named \(name.dropLast(4)),"), "every unrenamed segment, in order: \(restarted)")
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path)
        #expect(left.contains(victim) && !left.contains { $0.hasSuffix(".new") }, "\(left)")
        let named = try Data(contentsOf: rig.journal.appendingPathComponent(victim))
        #expect(named.starts(with: unnamed), "the entries of the unrenamed segment are those of the named one")
        let collected = try Data(contentsOf: rig.collected.appendingPathComponent(rig.deviceID).appendingPathComponent("journal").appendingPathComponent(victim))
        #expect(collected.starts(with: unnamed), "and the collector holds them")
        let verify = try rig.verify(within: 20)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
}
