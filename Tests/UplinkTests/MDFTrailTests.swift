// The collector's MDF files trail its journal on a thread of idle priority (`MDFTrail`). Whether
// the commits reach that thread as the batch bodies they arrived in or are read back from the
// journal (the queue was full), and across a restart that finds a half-written file, the files
// come out byte-identical to the ones the device wrote from the same entries (`daqlink --mdf`).
// A write error is thrown; a layout entry it cannot read drops only that device's files.
import DAQCore
import Foundation
import Journal
import JournalStore
import Testing
import TestSupport
@testable import Collector

@Suite(.serialized) struct MDFTrailTests {
    /// A device journal and the MDF files the device wrote with it: the reference log replayed
    /// twice at full speed (two measurements), files cut every 3 s of measurement time (four each).
    struct DeviceRun {
        let work: URL
        var journal: String { work.appendingPathComponent("device/journal").path }
        var deviceMDF: URL { work.appendingPathComponent("device/mdf") }

        /// `segmentBytes`: daqlink's --segment-bytes (small segments: a layout repeat at each start).
        init(segmentBytes: Int? = nil) throws {
            work = try PackagePaths.temporaryDirectory("mdf-trail")
            let reference = PackagePaths.fixtures.appendingPathComponent("reference")
            for _ in 1...2 {
                let run = try runProcess(PackagePaths.executable("daqlink").path, [
                    "run", "--experiment", reference.appendingPathComponent("reference.toml").path, "--quiet",
                    "--source", "replay:\(reference.appendingPathComponent("engine-10s.log").path)", "--speed", "max",
                    "--journal", journal, "--mdf", deviceMDF.path, "--mdf-split-seconds", "3"]
                    + (segmentBytes.map { ["--segment-bytes", "\($0)"] } ?? []))
                #expect(run.status == 0, "\(run.stderr)")
            }
        }

        /// The sequence numbers of the entries of `kind` (layout entries: one per measurement).
        func layouts(_ kind: JournalEntryKind = .layout) throws -> [UInt64] {
            let reader = try JournalReader(directory: journal, from: 1)
            var layouts: [UInt64] = []
            while let entry = try reader.next() {
                if entry.kind == kind { layouts.append(entry.sequence) }
            }
            return layouts
        }

        /// The journal's entries as commits: runs of `perCommit` entries.
        func commits(perCommit: Int = 40) throws -> [(first: UInt64, body: [UInt8], entries: [Range<Int>])] {
            let reader = try JournalReader(directory: journal, from: 1)
            var commits: [(UInt64, [UInt8], [Range<Int>])] = []
            var body: [UInt8] = [], entries: [Range<Int>] = []
            while let run = try reader.readEntries(maxEntries: perCommit, maxBytes: .max, into: &body, ranges: &entries) {
                commits.append((run.firstSequence, body, entries))
                body = []
                entries = []
            }
            return commits
        }

        /// Where the collector's files for this device go (`trail`).
        var collectorMDF: URL { work.appendingPathComponent("collector-mdf") }

        /// A trail following this device ("trail-01") into `mdfDirectory` (`collectorMDF`), its
        /// journal holding `committed` entries.
        func trail(maxQueued: Int = 64 << 20, burstBytes: Int = 2 << 20, committed: UInt64 = 0,
                   mdfDirectory: String? = nil) throws -> MDFTrail {
            let trail = try MDFTrail(maxQueued: maxQueued, burstBytes: burstBytes)
            trail.follow(device: "trail-01", journalDirectory: journal, mdfDirectory: mdfDirectory ?? collectorMDF.path,
                         committed: committed)
            return trail
        }

        /// Each of the device's MDF files against the file of that name in `directory`.
        func expectSameFiles(in directory: URL, _ what: Comment) throws {
            let names = try FileManager.default.contentsOfDirectory(atPath: deviceMDF.path).sorted()
            #expect(names.count == 8, "twice 10 s in 3 s files: \(names)")
            let ours = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".mf4") }
            #expect(ours.sorted() == names, what)
            for name in names {
                let ours = try Data(contentsOf: directory.appendingPathComponent(name))
                let device = try Data(contentsOf: deviceMDF.appendingPathComponent(name))
                let same = ours == device  // a Bool: Testing's diff of two large Data values takes minutes
                #expect(same, "\(name): \(ours.count) bytes here, \(device.count) at the device; \(what)")
            }
        }
    }

    /// Feeds `commits` to `trail` (taking completions every few commits, as the collector's loop
    /// does when the thread wakes it), then finishes it.
    /// Each commit in a window of its own (no burst; `aBurstIsWrittenAfterIt` makes one).
    private func feed(_ trail: MDFTrail, _ commits: ArraySlice<(first: UInt64, body: [UInt8], entries: [Range<Int>])>) throws {
        for (index, commit) in commits.enumerated() {
            trail.committed(commit, now: Int64(index) * MDFTrail.burstWindow)
            if index % 7 == 0 { usleep(1_000); #expect(try trail.takeCompletions().isEmpty) }
        }
    }

    @Test(arguments: [64 << 20, 200_000, 0])
    func filesMatchTheDevicesWhetherBodiesAreQueuedOrReadBack(maxQueued: Int) throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let trail = try device.trail(maxQueued: maxQueued)
        try feed(trail, try device.commits()[...])
        #expect(try trail.finish().isEmpty)
        try device.expectSameFiles(in: device.collectorMDF, "queue of \(maxQueued) bytes")
    }

    /// A damaged entry under the rebuilt journal (its disk flipped a bit) costs the files read
    /// back from it that record, not the device's files altogether.
    @Test func aDamagedEntryCostsTheFilesOnlyItsRecord() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let commits = try device.commits()
        let layouts = try device.layouts()
        let names = try FileManager.default.contentsOfDirectory(atPath: device.journal).filter { $0.hasSuffix(".jnl") }.sorted()
        let segment = URL(fileURLWithPath: device.journal).appendingPathComponent(names[0])
        var bytes = [UInt8](try Data(contentsOf: segment))
        var offsets: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
        let victim = offsets.keys.sorted()[offsets.count / 3]
        #expect(!layouts.contains(victim))
        bytes[offsets[victim]! + JournalFraming.headerLength + 6] ^= 0x02
        try Data(bytes).write(to: segment)

        let trail = try device.trail(maxQueued: 0)  // every commit read back from the journal
        try feed(trail, commits[...])
        #expect(try trail.finish().isEmpty)
        let files = try FileManager.default.contentsOfDirectory(atPath: device.deviceMDF.path).sorted()
        let differing = try files.filter {
            try Data(contentsOf: device.collectorMDF.appendingPathComponent($0)) != Data(contentsOf: device.deviceMDF.appendingPathComponent($0))
        }
        #expect(files.count == 8 && differing.count == 1, "\(differing)")
    }

    /// The second measurement's layout entry as a `lost` placeholder (the device could not read it
    /// back). Its records fit the first measurement's layout (the same experiment), so they went on
    /// into the first measurement's file, at times counted from its start, and so did every record
    /// after them. The file now ends at the placeholder, and the next segment's layout repeat,
    /// which differs from it, starts a file of its own.
    @Test func aLostLayoutEntryEndsTheFileAndTheNextLayoutRepeatStartsOne() throws {
        let device = try DeviceRun(segmentBytes: 65_536)
        defer { try? FileManager.default.removeItem(at: device.work) }
        let layouts = try device.layouts()
        try #require(layouts.count == 2)
        let repeatAfter = try #require(try device.layouts(.layoutRepeat).first { $0 > layouts[1] })
        var commits = try device.commits()
        // The placeholder's kind in place of the layout entry's (the follower reads kinds and payloads).
        let index = try #require(commits.firstIndex { $0.first <= layouts[1] && layouts[1] < $0.first + UInt64($0.entries.count) })
        let entry = commits[index].entries[Int(layouts[1] - commits[index].first)]
        commits[index].body[entry.lowerBound + 4] = JournalEntryKind.lost.rawValue

        let trail = try device.trail()
        try feed(trail, commits[...])
        #expect(try trail.finish().isEmpty)
        let names = try FileManager.default.contentsOfDirectory(atPath: device.collectorMDF.path).filter { $0.hasSuffix(".mf4") }.sorted()
        let device1 = try FileManager.default.contentsOfDirectory(atPath: device.deviceMDF.path).filter { $0.hasPrefix("measurement-1") && !($0.dropFirst("measurement-1".count).first?.isNumber ?? true) }.sorted()
        #expect(names.contains { $0.hasPrefix("measurement-\(repeatAfter)") }, "\(names)")
        #expect(!names.contains { $0.hasPrefix("measurement-\(layouts[1])") }, "\(names)")
        // The first measurement's files are the device's: nothing of the second went into them.
        #expect(!device1.isEmpty)
        for name in device1 {
            let same = try Data(contentsOf: device.collectorMDF.appendingPathComponent(name)) == Data(contentsOf: device.deviceMDF.appendingPathComponent(name))
            #expect(same, "\(name)")
        }
    }

    /// A record of the first measurement as a `lost` placeholder: the file goes on (the next
    /// record's time does not go back), and the next layout repeat, of the same layout, starts
    /// no file. Before, the file ended at the placeholder and the repeat started
    /// `measurement-<repeat>`: one lost record cost the file the rest of the segment.
    @Test func aLostRecordDoesNotEndTheFile() throws {
        let device = try DeviceRun(segmentBytes: 65_536)
        defer { try? FileManager.default.removeItem(at: device.work) }
        let layouts = try device.layouts()
        try #require(layouts.count == 2)
        let repeats = try device.layouts(.layoutRepeat).filter { $0 < layouts[1] }
        try #require(!repeats.isEmpty, "the first measurement spans segments")
        var commits = try device.commits()
        // Mid-segment: the records between it and the next repeat go on into the file.
        let target = (layouts[0] + repeats[0]) / 2
        let index = try #require(commits.firstIndex { $0.first <= target && target < $0.first + UInt64($0.entries.count) })
        let entry = commits[index].entries[Int(target - commits[index].first)]
        try #require(commits[index].body[entry.lowerBound + 4] == JournalEntryKind.record.rawValue)
        commits[index].body[entry.lowerBound + 4] = JournalEntryKind.lost.rawValue

        let trail = try device.trail()
        try feed(trail, commits[...])
        #expect(try trail.finish().isEmpty)
        let names = try FileManager.default.contentsOfDirectory(atPath: device.collectorMDF.path).filter { $0.hasSuffix(".mf4") }.sorted()
        let deviceNames = try FileManager.default.contentsOfDirectory(atPath: device.deviceMDF.path).filter { $0.hasSuffix(".mf4") }.sorted()
        #expect(names == deviceNames, "repeats \(repeats), lost \(target)")
        // The second measurement's files are the device's, byte for byte; the first's lack one record.
        for name in deviceNames where name.hasPrefix("measurement-\(layouts[1])") {
            #expect(try Data(contentsOf: device.collectorMDF.appendingPathComponent(name))
                    == Data(contentsOf: device.deviceMDF.appendingPathComponent(name)), "\(name)")
        }
        func samples(_ directory: URL) throws -> Int {
            let parts = deviceNames.filter { $0.hasPrefix("measurement-1.") || $0.hasPrefix("measurement-1_") }
            let result = try runPython("""
                import sys
                from asammdf import MDF
                total = 0
                for path in sys.argv[1:]:
                    m = MDF(path)
                    total += sum(len(m.get_master(i)) for i in range(len(m.groups)))
                print(total)
                """, parts.map { directory.appendingPathComponent($0).path })
            return Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        let original = try samples(device.deviceMDF), collected = try samples(device.collectorMDF)
        #expect(original > 0 && collected == original - 1, "\(collected) of \(original)")
    }

    /// Commits arriving as a burst (over `burstBytes` in one window: a backlog draining) give the
    /// thread nothing, and their bodies are not kept; once a window passes without one, the thread
    /// reads the burst back from the journal, and the files come out the same.
    @Test func aBurstIsWrittenAfterIt() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let commits = try device.commits()
        let total = commits.reduce(0) { $0 + $1.body.count }
        let trail = try device.trail(burstBytes: total / 10)
        var queuedInBurst: [Int] = []  // what the thread was given before it, and no more
        for commit in commits {  // all in the first window
            trail.committed(commit, now: 0)
            if trail.holding { queuedInBurst.append(trail.queued) }
        }
        #expect(trail.holding && trail.isBehind)
        #expect(queuedInBurst.count > 1 && Set(queuedInBurst).count == 1,
                "bodies kept during the burst: \(queuedInBurst.first ?? 0) → \(queuedInBurst.max() ?? 0) bytes")
        // The window with the burst ends: still held. The next one had none: read back.
        trail.tick(now: MDFTrail.burstWindow)
        #expect(trail.holding)
        trail.tick(now: 2 * MDFTrail.burstWindow)
        #expect(!trail.holding)
        let deadline = Date().addingTimeInterval(20)
        while trail.isBehind && Date() < deadline {
            usleep(2_000)
            #expect(try trail.takeCompletions().isEmpty)
        }
        #expect(!trail.isBehind)
        #expect(try trail.finish().isEmpty)
        try device.expectSameFiles(in: device.collectorMDF, "after a burst")
    }

    /// Commits that keep coming faster than a burst (a large fleet's live data) are held for
    /// `maxHold` at most, then go to the thread as they come; a new hold needs a quiet window first.
    @Test func aHoldEndsAfterMaxHoldWhenTheRateStaysHigh() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let commits = try device.commits()
        let trail = try device.trail(burstBytes: 1)  // every window with a commit is a burst
        let window = MDFTrail.burstWindow
        var now: Int64 = 0
        var holds: [Bool] = []
        for commit in commits.prefix(30) {
            trail.committed(commit, now: now)
            holds.append(trail.holding)
            now += window  // one commit per window, each a burst
        }
        let heldFor = holds.prefix { $0 }.count
        #expect(heldFor >= 9 && heldFor <= 11, "held for \(heldFor) windows of 100 ms: \(holds)")
        #expect(!holds.dropFirst(heldFor).contains(true), "held again without a quiet window: \(holds)")
        // A quiet window re-arms it.
        trail.tick(now: now + window)
        let next = commits[30]
        trail.committed(next, now: now + 2 * window)
        #expect(trail.holding)
        for commit in commits.dropFirst(31) {
            trail.committed(commit, now: now + 3 * window)
        }
        #expect(try trail.finish().isEmpty)
        try device.expectSameFiles(in: device.collectorMDF, "after a long hold")
    }

    /// Entries read back from the journal are written run by run: RAM holds one run's MDF bytes,
    /// not a whole measurement's (a restart rewrites the current one from its start).
    @Test func aReadBackIsWrittenRunByRun() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let last = try device.commits().last!
        let runBytes = 64 << 10
        let follower = MDFFollower(deviceID: "trail-01", journalDirectory: device.journal,
                                   mdfDirectory: device.collectorMDF.path, committed: 0, runBytes: runBytes)
        try follower.catchUp(through: last.first + UInt64(last.entries.count) - 1)
        try follower.finish()
        // A run of journal entries gives at most its record bytes, plus the blocks around them.
        #expect(follower.mostUnwritten > 0 && follower.mostUnwritten <= runBytes + 4096,
                "\(follower.mostUnwritten) MDF bytes in RAM at once, from runs of \(runBytes) journal bytes")
        try device.expectSameFiles(in: device.collectorMDF, "read back in runs of \(runBytes) bytes")
    }

    @Test func aRestartRewritesTheFileItWasWriting() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let out = device.collectorMDF
        let commits = try device.commits()
        let cut = commits.count * 3 / 4  // in the second measurement
        // Up to the cut, then a stop without finishing: the current file is left as a kill
        // leaves it, here cut short mid-record on top.
        let first = try device.trail()
        try feed(first, commits[..<cut])
        _ = try first.finish()
        let current = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".mf4") }.sorted().last!
        let path = out.appendingPathComponent(current).path
        #expect(truncate(path, off_t(try Data(contentsOf: URL(fileURLWithPath: path)).count / 2 + 3)) == 0)

        let committed = commits[cut - 1].first + UInt64(commits[cut - 1].entries.count) - 1
        let second = try device.trail(committed: committed)
        try feed(second, commits[cut...])
        #expect(try second.finish().isEmpty)
        try device.expectSameFiles(in: out, "after a restart at seq \(committed)")
    }

    /// Killed while its files trailed the journal by more than a measurement: the log still names
    /// the first one, whose file is half written, and the second was never started. Both are
    /// written in full after the restart, though the journal's last layout is the second's.
    @Test func aRestartAfterTrailingAcrossAMeasurementRewritesBoth() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        let out = device.collectorMDF
        let layouts = try device.layouts()
        #expect(layouts.count == 2 && layouts[0] == 1, "\(layouts)")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("1\n".utf8).write(to: out.appendingPathComponent(".measurements"))
        let head = try Data(contentsOf: device.deviceMDF.appendingPathComponent("measurement-1.mf4"))
        try Data(head.prefix(head.count / 3)).write(to: out.appendingPathComponent("measurement-1.mf4"))

        let commits = try device.commits()
        let trail = try device.trail(committed: layouts[1] + 100)
        try feed(trail, commits.drop { $0.first + UInt64($0.entries.count) <= layouts[1] + 100 })
        #expect(try trail.finish().isEmpty)
        try device.expectSameFiles(in: out, "after trailing across a measurement")
        let log = try String(contentsOf: out.appendingPathComponent(".measurements"), encoding: .utf8)
        #expect(log == "1\n1\n\(layouts[1])\n", "\(log)")
    }

    @Test func aWriteErrorIsThrown() throws {
        let device = try DeviceRun()
        defer { try? FileManager.default.removeItem(at: device.work) }
        // The MDF directory's parent is a regular file: the first file cannot be created.
        let blocker = device.work.appendingPathComponent("not-a-directory")
        try Data("x".utf8).write(to: blocker)
        let trail = try device.trail(mdfDirectory: blocker.appendingPathComponent("mdf").path)
        for commit in try device.commits().prefix(3) {
            trail.committed(commit, now: 0)
        }
        #expect {
            _ = try trail.finish()
        } throws: { error in
            guard let error = error as? DAQError else { return false }
            return error.code == .io && error.description.contains("not-a-directory/mdf/")
        }
    }

    @Test func anUnreadableLayoutDropsOnlyThatDevicesFiles() throws {
        let work = try PackagePaths.temporaryDirectory("mdf-trail-layout")
        defer { try? FileManager.default.removeItem(at: work) }
        // A journal whose layout entry is well framed (its CRC holds) but says nothing readable.
        let journal = work.appendingPathComponent("journal").path
        let writer = try JournalWriter(directory: journal, configuration: JournalConfiguration(epoch: 1))
        _ = try writer.append(kind: .layout, payload: [0xDE, 0xAD, 0xBE, 0xEF])
        _ = try writer.append(kind: .record, payload: [0, 0, 1, 2, 3, 4])
        try writer.sync()
        try writer.close()
        let reader = try JournalReader(directory: journal, from: 1)
        var body: [UInt8] = [], entries: [Range<Int>] = []
        _ = try reader.readEntries(maxEntries: 10, maxBytes: .max, into: &body, ranges: &entries)

        let trail = try MDFTrail()
        trail.follow(device: "bad-01", journalDirectory: journal, mdfDirectory: work.appendingPathComponent("mdf").path, committed: 0)
        trail.committed(device: "bad-01", first: 1, body: body, entries: entries, now: 0)
        var dropped: [DAQError] = []
        let deadline = Date().addingTimeInterval(10)
        while dropped.isEmpty && Date() < deadline {
            usleep(2_000)
            dropped = try trail.takeCompletions()
        }
        #expect(dropped.count == 1 && dropped[0].code == .malformedInput && dropped[0].description.contains("bad-01 seq 1"),
                "\(dropped)")
        // Later commits of that device are ignored; the trail still finishes cleanly.
        trail.committed(device: "bad-01", first: 3, body: body, entries: entries, now: MDFTrail.burstWindow)
        #expect(try trail.finish().isEmpty)
    }
}

extension MDFTrail {
    /// One of `DeviceRun.commits()`, committed to "trail-01" at `now`.
    func committed(_ commit: (first: UInt64, body: [UInt8], entries: [Range<Int>]), now: Int64) {
        committed(device: "trail-01", first: commit.first, body: commit.body, entries: commit.entries, now: now)
    }
}
