// A backlog on damaged storage (a flipped bit on the device's SD card): the device sends a `lost`
// placeholder for each entry it cannot read back and drains everything after it; the collector
// commits the placeholders, says so, and its copy stays a valid journal; `daqctl verify` names the
// lost entries on both sides and finds every other entry identical. Real mosquitto (mTLS), the
// real collector and daqlink.
import Foundation
import Journal
import JournalStore
import Testing
import TestSupport

@Suite(.serialized) struct DamagedJournalTests {
    /// A log of the fixture's first frame: a device run that appends little and drains its backlog.
    private func oneFrameLog(_ rig: UplinkRig) throws -> URL {
        let oneFrame = rig.work.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: oneFrame, atomically: true, encoding: .utf8)
        return oneFrame
    }

    /// A backlog in 64 KiB segments, acquired with the link down; returns the device's output.
    private func acquireWithTheLinkDown(_ rig: UplinkRig) throws -> String {
        rig.proxy.set(.down)
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "1", "--segment-bytes", "65536"])
        let (_, log) = rig.waitForDevice()
        #expect(log.contains("acknowledged up to 0"), "\(log)")
        return log
    }

    /// The device replays the fixture into 64 KiB segments with the collector up, everything is
    /// acknowledged, and the collector stops; returns the last sequence number.
    private func acquireAcknowledged(_ rig: UplinkRig) throws -> String {
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--segment-bytes", "65536"])
        let (status, log) = rig.waitForDevice()
        let last = log.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last.map(String.init) ?? "?"
        #expect(status == 0 && log.contains("acknowledged up to \(last),"), "\(log)")
        rig.stopCollector()
        return last
    }

    private func segmentNames(_ directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".jnl") }.sorted()
    }

    /// The link back up and a collector started, the device drains its backlog (replaying one
    /// frame, in batches of 64 entries); its exit status and output.
    private func drainWithTheLinkBack(_ rig: UplinkRig) throws -> (Int32, String) {
        let oneFrame = try oneFrameLog(rig)
        rig.proxy.set(.up)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--batch-entries", "64",
                                                  "--segment-bytes", "65536"])
        return rig.waitForDevice()
    }

    @Test func aDamagedEntryInTheBacklogIsSentAsLostAndTheRestDrains() throws {
        let rig = try UplinkRig()
        let backlogLog = try acquireWithTheLinkDown(rig)
        // The run says what it left behind when it stopped waiting for the collector.
        let backlogEnd = backlogLog.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last ?? "?"
        #expect(backlogLog.contains("uplink: not drained within --drain-timeout 1.0 s: entries 1…\(backlogEnd) stay in the journal"),
                "\(backlogLog)")

        // Flip one payload bit of an entry in a closed segment in the middle.
        let names = try segmentNames(rig.journal)
        #expect(names.count >= 6, "\(names)")
        let segment = rig.journal.appendingPathComponent(names[names.count / 2])
        var bytes = [UInt8](try Data(contentsOf: segment))
        var offsets: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
        let victim = offsets.keys.sorted()[10]
        bytes[offsets[victim]! + JournalFraming.headerLength + 4] ^= 0x08
        try Data(bytes).write(to: segment)

        // The link is back: drain.
        let (status, log) = try drainWithTheLinkBack(rig)
        #expect(status == 0, "\(log)")
        // One alarm naming the entry, the segment and the offset; everything after it acknowledged.
        let alarms = log.split(separator: "\n").filter { $0.hasPrefix("ALARM:") }
        #expect(alarms.count == 1, "\(log)")
        #expect(alarms.first?.contains("entries \(victim)…\(victim) unreadable in \(names[names.count / 2]) from offset \(offsets[victim]!)") == true,
                "\(log)")
        #expect(log.contains("1 entries sent as 'lost' (unreadable or deleted here)"), "\(log)")
        // The operator sees the backlog's size at the connect and when it is drained.
        // (This run's own frame may add an entry before the connect.)
        let sizes = [UInt64(backlogEnd)!, UInt64(backlogEnd)! + 1]
        // (1.3 MB: the reference journal's 1.0 MB and a 15 kB layout repeat opening each 64 kB segment.)
        #expect(sizes.contains { log.contains("backlog: \($0) entries (≈ 1.3 MB), seq 1…\($0), draining") }, "\(log)")
        #expect(sizes.contains { log.contains("backlog: \($0) entries (≈ 1.3 MB) drained in ") }, "\(log)")
        let summary = log.split(separator: "\n").first { $0.hasPrefix("journal: ") } ?? ""
        let lastSequence = summary.split(separator: "…").last.map(String.init) ?? "?"
        #expect(log.contains("acknowledged up to \(lastSequence),") && !log.contains("not drained"), "\(log)")

        rig.stopCollector()
        let collectorLog = rig.read("collector")
        #expect(collectorLog.contains("ecu-01: entries \(victim)…\(victim) committed as lost: unreadable on the device"), "\(collectorLog)")
        #expect(collectorLog.contains("1 entries lost on the device"), "\(collectorLog)")

        // verify: not byte-identical (the device holds damaged bytes), every other entry identical.
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 1, "\(verify.stdout)")
        #expect(verify.stdout.contains("device: entries \(victim)…\(victim) unreadable: \(names[names.count / 2]) offset \(offsets[victim]!)"),
                "\(verify.stdout)")
        #expect(verify.stdout.contains("collector: entries \(victim)…\(victim) committed as lost"), "\(verify.stdout)")
        #expect(verify.stdout.contains("every other entry identical: yes"), "\(verify.stdout)")
        #expect(verify.stdout.contains("segment \(names[names.count / 2]): bytes differ"), "\(verify.stdout)")

        // The collector's copy is a valid journal, the placeholder a readable entry.
        let copy = rig.collected.appendingPathComponent("ecu-01/journal").path
        let check = try runProcess(UplinkRig.daqctl, ["journal", "verify", copy])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let dump = try runProcess(UplinkRig.daqctl, ["journal", "dump", copy, "--from", "\(victim)", "--limit", "1"])
        #expect(dump.stdout.hasPrefix("{\"seq\": \(victim), \"lost\": \"unreadable on the device: \(names[names.count / 2])"), "\(dump.stdout)")
    }

    /// The end of the device's synced, acknowledged entries damaged (a power cut corrupting the
    /// last pages written, as MLC flash does): the restart cuts it like a torn tail, and the new
    /// entries must still reach the collector, numbered after what it holds, not dropped there
    /// as duplicates of entries it already has.
    @Test func entriesAfterADamagedAcknowledgedTailReachTheCollector() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--segment-bytes", "65536"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        func range(_ log: String) -> (UInt64, UInt64) {
            let line = log.split(separator: "\n").first { $0.hasPrefix("journal: ") } ?? ""
            let numbers = line.split(separator: " ").last?.split(separator: "…").compactMap { UInt64($0) } ?? []
            return numbers.count == 2 ? (numbers[0], numbers[1]) : (0, 0)
        }
        let last = range(log).1
        #expect(last > 100 && log.contains("acknowledged up to \(last),"), "\(log)")

        // Zero the newest segment from inside its third-to-last entry on.
        let names = try segmentNames(rig.journal)
        let newest = rig.journal.appendingPathComponent(names.last!)
        var bytes = [UInt8](try Data(contentsOf: newest))
        var offsets: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
        let cut = try #require(offsets[last - 2])
        for index in (cut + 3)..<bytes.count { bytes[index] = 0 }
        try Data(bytes).write(to: newest)

        let oneFrame = try oneFrameLog(rig)
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--segment-bytes", "65536"])
        let (again, log2) = rig.waitForDevice()
        #expect(again == 0, "\(log2)")
        #expect(log2.contains("recovery: cut"), "\(log2)")
        #expect(log2.contains("entries \(last - 2)…\(last) went with it (the collector holds them); new entries are numbered from \(last + 1)"),
                "\(log2)")
        let (newFirst, newLast) = range(log2)
        #expect(newFirst == last + 1, "\(log2)")
        #expect(log2.contains("acknowledged up to \(newLast),") && !log2.contains("not drained"), "\(log2)")
        rig.stopCollector()
        #expect(rig.read("collector").contains("committed up to \(newLast) "), "\(rig.read("collector"))")

        let verify = try rig.verify(within: 0)
        #expect(verify.stdout.contains("device: entries \(last - 2)…\(last) unreadable"), "\(verify.stdout)")
        #expect(verify.stdout.contains("every other entry identical: yes"), "\(verify.stdout)")
    }

    /// Segment headers damaged on the device's card: a closed segment's zeroed, the newest one's
    /// epoch hit by two flipped bits (which stopped daqlink from starting before). The restart
    /// rewrites both from the journal's epoch, so nothing is lost, no alarm is raised, and the
    /// collector's copy is byte-identical to the device's journal.
    @Test func damagedSegmentHeadersAreRewrittenAndTheBacklogDrainsByteIdentical() throws {
        let rig = try UplinkRig()
        let backlogLog = try acquireWithTheLinkDown(rig)

        let names = try segmentNames(rig.journal)
        #expect(names.count >= 6, "\(names)")
        let closed = rig.journal.appendingPathComponent(names[names.count / 2])
        var closedBytes = [UInt8](try Data(contentsOf: closed))
        for index in 0..<SegmentHeader.length { closedBytes[index] = 0 }
        try Data(closedBytes).write(to: closed)
        let newest = rig.journal.appendingPathComponent(names.last!)
        var newestBytes = [UInt8](try Data(contentsOf: newest))
        newestBytes[16] ^= 0x01
        newestBytes[20] ^= 0x10
        try Data(newestBytes).write(to: newest)
        let damaged = try runProcess(UplinkRig.daqctl, ["journal", "verify", rig.journal.path])
        #expect(damaged.status != 0, "\(damaged.stdout)\(damaged.stderr)")
        #expect(damaged.stderr.contains("\(names.last!) offset 0: damaged header (segment header CRC32C mismatch); its entries were read on"),
                "\(damaged.stderr)")
        // Every entry still counted: the damage cost none.
        let backlogEnd = backlogLog.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last ?? "?"
        #expect(damaged.stdout.contains(" \(backlogEnd) entries, "), "\(damaged.stdout)")

        let (status, log) = try drainWithTheLinkBack(rig)
        #expect(status == 0, "\(log)")
        #expect(log.contains("rewrote the damaged header of \(names[names.count / 2]) (not a journal segment (bad magic))"), "\(log)")
        #expect(log.contains("rewrote the damaged header of \(names.last!) (segment header CRC32C mismatch)"), "\(log)")
        #expect(!log.contains("ALARM") && !log.contains("not drained"), "\(log)")
        rig.stopCollector()

        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0, "\(verify.stdout)")
        #expect(verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        let healed = try runProcess(UplinkRig.daqctl, ["journal", "verify", rig.journal.path])
        #expect(healed.status == 0, "\(healed.stdout)\(healed.stderr)")
    }

    /// The collector's own copy loses entries it had acknowledged: the end of its newest segment
    /// damaged (its restart cuts it like a torn tail), or the whole directory restored from an
    /// older backup. It asks from just after what it holds, below the device's cursor; the device
    /// used to ignore that (never below the cursor) and the collector waited at the gap for ever.
    /// Now the device sends those entries again, with one alarm, and the copy ends byte-identical.
    @Test(arguments: ["damaged tail", "restored backup"])
    func aCollectorThatLostAcknowledgedEntriesIsRefilledByTheDevice(loss: String) throws {
        let rig = try UplinkRig()
        let last = try acquireAcknowledged(rig)
        let copy = rig.collected.appendingPathComponent("ecu-01/journal")
        let names = try segmentNames(copy)
        let lostFrom: UInt64
        if loss == "damaged tail" {
            // Zero the collector's newest segment from inside its tenth-to-last entry on.
            let newest = copy.appendingPathComponent(names.last!)
            var bytes = [UInt8](try Data(contentsOf: newest))
            var offsets: [UInt64: Int] = [:]
            _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
            lostFrom = UInt64(last)! - 9
            let cut = try #require(offsets[lostFrom])
            for index in (cut + 5)..<bytes.count { bytes[index] = 0 }
            try Data(bytes).write(to: newest)
        } else {
            // Last known good: only its first three segments survive.
            for name in names.dropFirst(3) { try FileManager.default.removeItem(at: copy.appendingPathComponent(name)) }
            lostFrom = UInt64(names[3].prefix(20))!
            try? FileManager.default.removeItem(at: rig.collected.appendingPathComponent("ecu-01/mdf"))
        }

        let oneFrame = try oneFrameLog(rig)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--segment-bytes", "65536",
                                                  "--drain-timeout", "30"])
        let (again, log2) = rig.waitForDevice()
        #expect(again == 0, "\(log2)")
        let alarms = log2.split(separator: "\n").filter { $0.hasPrefix("ALARM:") }
        #expect(alarms.count == 1 && alarms.first?.contains("the collector asks again for entries from \(lostFrom), "
                + "which it had acknowledged up to \(last): its copy lost them") == true, "\(log2)")
        let newLast = UInt64(last)! + 1
        #expect(log2.contains("acknowledged up to \(newLast),") && !log2.contains("not drained"), "\(log2)")
        rig.stopCollector()
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
    }

    /// Entries the collector lost that the device's retention has since removed: they come as
    /// `lost` placeholders saying so, the entries the device still holds come as they are, and the
    /// stream goes on past them.
    @Test func entriesRetiredOnTheDeviceComeAsLostPlaceholders() throws {
        let rig = try UplinkRig()
        let last = try acquireAcknowledged(rig)
        // The collector's copy back to its first segment only.
        let copy = rig.collected.appendingPathComponent("ecu-01/journal")
        let names = try segmentNames(copy)
        for name in names.dropFirst() { try FileManager.default.removeItem(at: copy.appendingPathComponent(name)) }
        try? FileManager.default.removeItem(at: rig.collected.appendingPathComponent("ecu-01/mdf"))
        let lostFrom = try #require(UInt64(names[1].prefix(20)))

        // The device restarts with a quota a third of its journal: retention removes the oldest
        // acknowledged segments as it appends.
        let oneFrame = try oneFrameLog(rig)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--segment-bytes", "65536",
                                                  "--quota-bytes", "350000", "--drain-timeout", "30"])
        let (again, log2) = rig.waitForDevice()
        #expect(again == 0, "\(log2)")
        let deviceNames = try segmentNames(rig.journal)
        let oldest = try #require(UInt64(deviceNames.first?.prefix(20) ?? ""))
        #expect(lostFrom < oldest, "\(names) \(deviceNames)")
        #expect(log2.contains("ALARM: the collector asks again for entries from \(lostFrom), which it had acknowledged up to \(last)"),
                "\(log2)")
        #expect(log2.contains("acknowledged up to \(UInt64(last)! + 1),") && !log2.contains("not drained"), "\(log2)")
        #expect(log2.contains("\(oldest - lostFrom) entries sent as 'lost' (unreadable or deleted here)"), "\(log2)")
        rig.stopCollector()
        let collectorLog = rig.read("collector")
        // One line for the run (it came in several batches), and one for all of it at the stop.
        let lostLines = collectorLog.split(separator: "\n").filter { $0.contains("committed as lost") }
        #expect(lostLines.first?.contains("ecu-01: entries \(lostFrom)…") == true
                && lostLines.first?.contains("committed as lost: deleted on the device") == true, "\(collectorLog)")
        #expect(lostLines.count <= 3 && lostLines.last?.contains("entries \(lostFrom)…\(oldest - 1) committed as lost") == true,
                "\(collectorLog)")
        #expect(collectorLog.contains("\(oldest - lostFrom) entries lost on the device"), "\(collectorLog)")
        // The copy is a valid journal again. verify compares from the device's oldest entry on
        // (it used to stop at "seq 1 is no longer in the journal"): byte-identical there.
        let check = try runProcess(UplinkRig.daqctl, ["journal", "verify", copy.path])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("device: entries 1…\(oldest - 1) retired (acknowledged, then removed by retention): "
                                       + "compared from seq \(oldest) on"), "\(verify.stdout)")
        // Its Fig. 4 table counts the same range on both sides, the groups named by the collector's layout.
        let table = verify.stdout.split(separator: "\n").filter { $0.hasPrefix("Time 5ms") }
        #expect(table.count == 1 && !table[0].contains("differs") && !table[0].contains(" 0 "), "\(verify.stdout)")
    }

    /// One device's rebuilt journal at the collector too damaged to open (its only segment's header
    /// gone, nothing after it a valid entry, no other segment to take the epoch from): that
    /// device's batches are refused with one alarm, and the collector goes on for the others.
    /// It used to stop for every device at that device's first batch.
    @Test func aDeviceWhoseCopyCannotBeOpenedDoesNotStopTheCollector() throws {
        let rig = try UplinkRig()
        try rig.broker.issueDevice("ecu-02")
        let broken = rig.collected.appendingPathComponent("ecu-01/journal")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try Data(repeating: 0, count: 100).write(to: broken.appendingPathComponent(SegmentName.name(firstSequence: 1)))
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "3"])
        let other = try rig.launchDevice(id: "ecu-02", journal: rig.work.appendingPathComponent("ecu-02/journal"), speed: "max",
                                         extra: ["--segment-bytes", "65536"])
        other.waitUntilExit()
        #expect(other.terminationStatus == 0)
        let verify = try rig.verify(device: "ecu-02", journal: rig.work.appendingPathComponent("ecu-02/journal"))
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
        _ = rig.waitForDevice()
        let log = rig.read("device-1")  // ecu-01's (the rig numbers runs of every device)
        #expect(log.contains("acknowledged up to 0") && log.contains("not drained within --drain-timeout"), "\(log)")
        #expect(rig.collector?.isRunning == true, "\(rig.read("collector"))")
        let alarms = rig.read("collector").split(separator: "\n").filter { $0.contains("ALARM: ecu-01: its rebuilt journal cannot be opened") }
        #expect(alarms.count == 1, "\(rig.read("collector"))")
        rig.stopCollector()

        // ecu-02's copy with its first segment's header zeroed: the collector's next start
        // rewrites it (from the other segments' epoch) instead of failing, and the copy is whole.
        let copy = rig.collected.appendingPathComponent("ecu-02/journal")
        let first = copy.appendingPathComponent(try segmentNames(copy)[0])
        var bytes = [UInt8](try Data(contentsOf: first))
        for index in 0..<SegmentHeader.length { bytes[index] = 0 }
        try Data(bytes).write(to: first)
        try rig.startCollector()
        #expect(rig.collector?.isRunning == true && !rig.read("collector").contains("ecu-02: its rebuilt journal"),
                "\(rig.read("collector"))")
        rig.stopCollector()
        let healed = try rig.verify(within: 0, device: "ecu-02", journal: rig.work.appendingPathComponent("ecu-02/journal"))
        #expect(healed.status == 0 && healed.stdout.contains("byte-identical: yes"), "\(healed.stdout)")
    }

    /// A device's first copy of one segment whose header is gone past repair (zeroed: no other
    /// segment, more than one bit, and a collector's copy has no ack cursor). That copy could hold
    /// any of the device's streams, so it used to stay unopened with an alarm, and the device's
    /// batches were refused. Its epoch is now recorded beside it (`stream-epoch`), which rebuilds
    /// the header, and the device's next entries land in it.
    @Test func aFirstCopysHeaderLostForGoodIsRebuiltFromItsRecordedEpoch() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        try rig.startDevice(speed: "max")
        let (first, firstLog) = rig.waitForDevice()
        let last = try #require(firstLog.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last
            .flatMap { UInt64($0) })
        #expect(first == 0 && firstLog.contains("acknowledged up to \(last),"), "\(firstLog)")
        rig.stopCollector()
        let home = rig.collected.appendingPathComponent("ecu-01")
        let recorded = try String(contentsOf: home.appendingPathComponent("stream-epoch"), encoding: .utf8)
        #expect(recorded == "\(try epoch(of: rig.journal))\n")
        let copy = home.appendingPathComponent("journal")
        let segments = try segmentNames(copy)
        #expect(segments.count == 1, "\(segments)")
        let only = copy.appendingPathComponent(segments[0])
        var bytes = [UInt8](try Data(contentsOf: only))
        for index in 0..<SegmentHeader.length { bytes[index] = 0 }
        try Data(bytes).write(to: only)

        // A collector started again reopens it with no alarm; the device, a frame more, drains into it.
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try oneFrameLog(rig).path)"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && log.contains("acknowledged up to \(last + 1),") && !log.contains("not drained"), "\(log)")
        rig.stopCollector()
        let collectorLog = rig.read("collector")
        #expect(!collectorLog.contains("ALARM") && !collectorLog.contains("a new stream"), "\(collectorLog)")
        #expect(collectorLog.contains("reopened 1 stream of 1 device"), "\(collectorLog)")
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent("epoch-\(try epoch(of: rig.journal))").path))
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
    }

    /// A device whose journal starts afresh again and again (on tmpfs, wiped at every boot): every
    /// stream is kept whole, and the third new one in a run raises one alarm naming the device, so
    /// a fleet hears of it (before, the copies only added up).
    @Test func aJournalThatKeepsStartingAfreshRaisesOneAlarm() throws {
        let rig = try UplinkRig()
        let oneFrame = try oneFrameLog(rig)
        try rig.startCollector()
        for _ in 0..<5 {
            try? FileManager.default.removeItem(at: rig.journal)
            try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)"])
            let (status, log) = rig.waitForDevice()
            #expect(status == 0 && !log.contains("not drained"), "\(log)")
        }
        rig.stopCollector()
        let log = rig.read("collector")
        #expect(log.components(separatedBy: ": a new stream, epoch").count - 1 == 4, "\(log)")
        // Which streams it hears from: one line each, at its first batch of the run.
        #expect(log.components(separatedBy: ": first batch of this run, entries 1…").count - 1 == 5, "\(log)")
        let alarms = log.split(separator: "\n").filter { $0.contains("ALARM: ecu-01: 3 new streams in this run") }
        #expect(alarms.count == 1 && alarms[0].contains("see to the device's storage"), "\(log)")
        let copies = try FileManager.default.contentsOfDirectory(atPath: rig.collected.appendingPathComponent("ecu-01").path)
            .filter { $0.hasPrefix("epoch-") }
        #expect(copies.count == 4, "\(copies)")
        let last = try rig.verify(within: 0)
        #expect(last.status == 0 && last.stdout.contains("byte-identical: yes"), "\(last.stdout)")
    }

    /// The epoch of the journal in `directory` (daqlink gives every new journal a fresh one).
    private func epoch(of directory: URL) throws -> UInt64 {
        let epoch = try JournalVerifier.verify(directory: directory.path).epoch
        #expect(epoch != nil, "no epoch in \(directory.path)")
        return epoch ?? 0
    }

    /// A journal acquired and acknowledged, then taken out of the device (moved to `card-1`):
    /// returns its epoch and where it is.
    private func firstCardTakenOut(_ rig: UplinkRig) throws -> (epoch: UInt64, card: URL) {
        _ = try acquireAcknowledged(rig)
        let card = rig.work.appendingPathComponent("card-1")
        let epoch = try epoch(of: rig.journal)
        try FileManager.default.moveItem(at: rig.journal, to: card)
        return (epoch, card)
    }

    /// A journal of one segment whose header and ack cursor are both gone (a zeroed block, a lost
    /// file) and never acknowledged: nothing tells its epoch. daqlink used to refuse to start, so
    /// acquisition stopped; now the header gets a new epoch and its entries go on as a new stream.
    @Test func aHeaderWhoseEpochIsLostForGoodGoesOnAsANewStream() throws {
        let rig = try UplinkRig()
        rig.proxy.set(.down)
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "1"])
        _ = rig.waitForDevice()
        let segments = try segmentNames(rig.journal)
        #expect(segments.count == 1, "\(segments)")
        let segment = rig.journal.appendingPathComponent(segments[0])
        var bytes = try Data(contentsOf: segment)
        bytes.replaceSubrange(0..<40, with: [UInt8](repeating: 0, count: 40))
        try bytes.write(to: segment)
        try? FileManager.default.removeItem(at: rig.journal.appendingPathComponent("ack"))

        rig.proxy.set(.up)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try oneFrameLog(rig).path)"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && !log.contains("not drained"), "\(log)")
        #expect(log.contains("with a new epoch") && log.contains("its entries go on as a new stream"), "\(log)")
        rig.stopCollector()
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
    }

    /// Damage at the very end of the newest segment while the device waits for its link (a bit
    /// flipped in the last entry it wrote): the entry leaves from the device's RAM ring, so the
    /// collector's copy holds it intact. `daqctl verify` used to fail to read the device's journal
    /// there (exit 2, "entry CRC32C mismatch"); it now names the entry unreadable on the device,
    /// since the collector holds it, and compares every other entry. Bytes past what the collector
    /// holds that are no entry (a write cut short by a power loss) are named as such.
    @Test func damageAtTheEndOfTheNewestSegmentIsNamedByVerify() throws {
        let rig = try UplinkRig()
        rig.proxy.set(.down)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "25"])
        // The replay appends for well under a second, then the device waits for the link.
        var sizes: [Int] = []
        repeat {
            UplinkRig.pause(0.5)
            let newest = try segmentNames(rig.journal).last.map { rig.journal.appendingPathComponent($0) }
            sizes.append(newest.flatMap { try? FileManager.default.attributesOfItem(atPath: $0.path)[.size] as? Int } ?? 0)
        } while sizes.count < 20 && (sizes.count < 3 || sizes.suffix(3).contains { $0 != sizes.last })
        let name = try segmentNames(rig.journal).last!
        let path = rig.journal.appendingPathComponent(name).path
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var offsets: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in offsets[sequence] = offset } }
        let victim = offsets.keys.max()!
        let at = offsets[victim]! + JournalFraming.headerLength + 2
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try file.seek(toOffset: UInt64(at))
        try file.write(contentsOf: [bytes[at] ^ 0x10])
        try file.close()

        rig.proxy.set(.up)
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && log.contains("acknowledged up to \(victim),") && !log.contains("not drained"), "\(log)")
        rig.stopCollector()
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 1, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("device: entries \(victim)…\(victim) unreadable: \(name) offset \(offsets[victim]!)"),
                "\(verify.stdout)")
        #expect(verify.stdout.contains("every other entry identical: yes"), "\(verify.stdout)")
        #expect(!verify.stdout.contains("ends in bytes"), "\(verify.stdout)")

        // The entry mended, then bytes past the collector's last entry that are no entry: named.
        let tail = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try tail.seek(toOffset: UInt64(at))
        try tail.write(contentsOf: [bytes[at]])
        try tail.seekToEnd()
        try tail.write(contentsOf: [UInt8](repeating: 0xAB, count: 40))
        try tail.close()
        let torn = try rig.verify(within: 0)
        #expect(torn.status == 1 && torn.stdout.contains("\(name) ends in bytes that do not read as an entry"),
                "\(torn.stdout)\(torn.stderr)")
        #expect(torn.stdout.contains("entries: device \(victim) (last seq \(victim)), collector \(victim)"), "\(torn.stdout)")
    }

    /// The same traffic as the fixture's without its first second (a device's other journal).
    private func otherTraffic(_ rig: UplinkRig) throws -> URL {
        let lines = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")
        let other = rig.work.appendingPathComponent("other.log")
        try (lines.dropFirst(lines.count / 10).joined(separator: "\n") + "\n").write(to: other, atomically: true, encoding: .utf8)
        return other
    }

    /// The device's journal started again with the same epoch given by hand (`--epoch`: a new card,
    /// a wiped directory): its new entries carry the numbers of entries the collector holds. They
    /// used to be dropped as duplicates and acknowledged, so the device could retire them: lost
    /// without a word. Now the collector compares what it already holds, refuses the device's
    /// batches with one alarm and acknowledges nothing, so the device keeps every entry; its copy
    /// stays as it was. (daqlink's default, a fresh epoch per journal, never gets here: next test.)
    @Test func aJournalStartedAgainWithTheSameEpochIsRefusedNotDropped() throws {
        let rig = try UplinkRig()
        let (firstEpoch, before) = try firstCardTakenOut(rig)

        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try otherTraffic(rig).path)", "--drain-timeout", "3",
                                                  "--epoch", "\(firstEpoch)"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && log.contains("acknowledged up to 0,") && log.contains("not drained"), "\(log)")
        rig.stopCollector()
        let collectorLog = rig.read("collector")
        let alarms = collectorLog.split(separator: "\n").filter { $0.contains("ALARM: ecu-01: ") }
        #expect(alarms.count == 1 && alarms.first?.contains("differs from the one committed under the same epoch and number") == true,
                "\(collectorLog)")
        let verify = try rig.verify(within: 0, journal: before)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")

        // As the alarm says: the copy moved aside, the collector rebuilds the new stream whole.
        try FileManager.default.moveItem(at: rig.collected.appendingPathComponent("ecu-01"),
                                         to: rig.work.appendingPathComponent("ecu-01-first"))
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try oneFrameLog(rig).path)"])
        let (status2, log2) = rig.waitForDevice()
        #expect(status2 == 0 && !log2.contains("not drained"), "\(log2)")
        rig.stopCollector()
        let rebuilt = try rig.verify(within: 0)
        #expect(rebuilt.status == 0 && rebuilt.stdout.contains("byte-identical: yes"), "\(rebuilt.stdout)")
    }

    /// The device's journal restored from an older backup (same epoch; its cursor behind its last
    /// entries), then acquisition goes on over a slow link, where batches are coded (codec 4)
    /// against the entries before them. The backup's unacknowledged entries go again as they were;
    /// the new ones take numbers the collector had committed with other contents. A coded batch
    /// whose entries the collector all held was dropped as a duplicate without being decoded, so
    /// nothing compared it, and it was acknowledged: the device retired entries the collector never
    /// had. It is now decoded and compared like the others.
    @Test func aJournalRestoredFromABackupIsRefusedOverASlowLinkToo() throws {
        let rig = try UplinkRig()
        let log = try acquireWithTheLinkDown(rig)
        let backedUp = try #require(log.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last.map(String.init))
        let backup = rig.work.appendingPathComponent("backup")
        try FileManager.default.copyItem(at: rig.journal, to: backup)
        rig.proxy.set(.up)
        let committed = try acquireAcknowledged(rig)
        try FileManager.default.removeItem(at: rig.journal)
        try FileManager.default.copyItem(at: backup, to: rig.journal)

        rig.proxy.limitUplink(bytesPerSecond: 150_000)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try otherTraffic(rig).path)", "--drain-timeout", "10",
                                                  "--segment-bytes", "65536"])
        let (status, restored) = rig.waitForDevice()
        rig.stopCollector()
        #expect(status == 0 && restored.contains("not drained") && !restored.contains("codec-4 0"), "coded, and not drained: \(restored)")
        // Acknowledged: the backup's entries, which the collector holds as they are; nothing after.
        let cursor = try #require(JournalVerifier.verify(directory: rig.journal.path).acknowledgedUpTo)
        #expect(cursor <= UInt64(backedUp)!, "acknowledged up to \(cursor), past the backup's \(backedUp) (the collector holds \(committed))")
        let collectorLog = rig.read("collector")
        let alarms = collectorLog.split(separator: "\n").filter { $0.contains("ALARM: ecu-01: ") }
        #expect(alarms.count == 1 && alarms.first?.contains("entry \(UInt64(backedUp)! + 1) differs from the one committed under the same epoch") == true,
                "\(collectorLog)")
    }

    /// A card swapped in a test vehicle: daqlink starts a new journal with a fresh epoch, and the
    /// collector keeps that stream in a copy of its own beside the first (it used to refuse it
    /// until an operator moved the first copy aside). The old card put back resumes its own copy,
    /// across a collector restart; `daqctl verify` picks the copy of each journal's epoch.
    @Test func aJournalStartedAfreshGetsAFreshEpochAndACopyBesideTheFirst() throws {
        let rig = try UplinkRig()
        let (firstEpoch, firstCard) = try firstCardTakenOut(rig)

        // The new card: another stream, drained whole with no alarm.
        try rig.startCollector()
        let secondMDF = rig.work.appendingPathComponent("card-2-mdf")
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try otherTraffic(rig).path)", "--mdf", secondMDF.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0 && !log.contains("not drained"), "\(log)")
        let secondEpoch = try epoch(of: rig.journal)
        #expect(secondEpoch != firstEpoch)
        #expect(log.contains("a new journal, stream epoch \(secondEpoch)"), "\(log)")
        rig.stopCollector()
        let collectorLog = rig.read("collector")
        #expect(!collectorLog.contains("ALARM"), "\(collectorLog)")
        #expect(collectorLog.contains("ecu-01: a new stream, epoch \(secondEpoch)")
                && collectorLog.contains("beside epoch \(firstEpoch)'s"), "\(collectorLog)")
        #expect(collectorLog.contains("collector: ecu-01 epoch \(secondEpoch): committed up to"), "\(collectorLog)")
        let beside = rig.collected.appendingPathComponent("ecu-01/epoch-\(secondEpoch)/journal")
        #expect(FileManager.default.fileExists(atPath: beside.path))
        // Its MDF files too, written by the collector into epoch-<E>/mdf/.
        let second = try rig.verify(within: 0, mdf: secondMDF)
        #expect(second.status == 0 && second.stdout.contains("byte-identical: yes") && second.stdout.contains(", identical"),
                "\(second.stdout)")
        let first = try rig.verify(within: 0, journal: firstCard)
        #expect(first.status == 0 && first.stdout.contains("byte-identical: yes"), "\(first.stdout)")
        // Given another stream's copy, verify says so.
        let other = try rig.verify(within: 0, device: "ecu-01/epoch-\(secondEpoch)", journal: firstCard)
        #expect(other.status == 1 && other.stdout.contains("epoch: device \(firstEpoch), collector \(secondEpoch)"), "\(other.stdout)")

        // The second copy's header zeroed (it is one segment, and a collector's copy has no ack
        // cursor): named after its epoch, the copy is rebuilt whole when the collector starts.
        let besideSegment = beside.appendingPathComponent(try segmentNames(beside)[0])
        var copyBytes = [UInt8](try Data(contentsOf: besideSegment))
        #expect(try segmentNames(beside).count == 1)
        for index in 0..<SegmentHeader.length { copyBytes[index] = 0 }
        try Data(copyBytes).write(to: besideSegment)

        // The first card back, with a frame more: its own copy goes on (a collector started again
        // reopens both streams).
        let secondCard = rig.work.appendingPathComponent("card-2")
        try FileManager.default.moveItem(at: rig.journal, to: secondCard)
        try FileManager.default.moveItem(at: firstCard, to: rig.journal)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(try oneFrameLog(rig).path)"])
        let (status2, log2) = rig.waitForDevice()
        #expect(status2 == 0 && !log2.contains("not drained"), "\(log2)")
        rig.stopCollector()
        #expect(!rig.read("collector").contains("ALARM") && !rig.read("collector").contains("a new stream"), "\(rig.read("collector"))")
        #expect(rig.read("collector").contains("reopened 2 streams of 1 device in "), "\(rig.read("collector"))")
        let resumed = try rig.verify(within: 0)
        #expect(resumed.status == 0 && resumed.stdout.contains("byte-identical: yes"), "\(resumed.stdout)")
        let kept = try rig.verify(within: 0, journal: secondCard)
        #expect(kept.status == 0 && kept.stdout.contains("byte-identical: yes"), "\(kept.stdout)")  // its header rebuilt
        // The first copy moved away (archived by an operator): the second is still found.
        try FileManager.default.moveItem(at: rig.collected.appendingPathComponent("ecu-01/journal"),
                                         to: rig.work.appendingPathComponent("archived-first-copy"))
        let alone = try rig.verify(within: 0, journal: secondCard)
        #expect(alone.status == 0 && alone.stdout.contains("byte-identical: yes"), "\(alone.stdout)\(alone.stderr)")
    }
}
