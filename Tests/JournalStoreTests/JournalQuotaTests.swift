// Retention and full disks: the quota deletes only acknowledged segments; a quota or filesystem
// full of unacknowledged entries refuses appends loudly and loses nothing.
import Foundation
import Testing
import DAQCore
import Journal
import JournalStore
import TestSupport

@Suite struct JournalQuotaTests {
    @Test func quotaFullOfUnacknowledgedEntriesRefusesAndLosesNothing() throws {
        let dir = try freshJournalDirectory("quota-full")
        defer { removeJournalDirectory(dir) }
        let config = JournalConfiguration(epoch: 1, segmentSizeLimit: 4_096, quotaBytes: 16_384)
        let writer = try JournalWriter(directory: dir, configuration: config)
        var refused: DAQError?
        var refusedPayload: [UInt8] = []
        while refused == nil {
            let payload = pattern(writer.nextSequence, max: 200)
            do {
                try writer.append(kind: .record, payload: payload)
            } catch {
                refused = error
                refusedPayload = payload
            }
            #expect(writer.journalBytes <= config.quotaBytes)
        }
        #expect(refused?.code == .journalFull)
        #expect(refused?.message.contains("quota") == true)
        let last = writer.lastSequence
        #expect(last > 50)
        // Refused again, not silently accepted, and the sequence did not move.
        #expect(throws: DAQError.self) { try writer.append(kind: .record, payload: refusedPayload) }
        #expect(writer.lastSequence == last && writer.oldestSequence == 1)
        // A refused append starts no new (empty) segment.
        #expect(try fileSize(dir + "/" + writer.activeSegmentName) > SegmentHeader.length)
        try writer.sync()
        #expect(try readAll(dir).map(\.sequence) == Array(1...last))
        #expect(try JournalVerifier.verify(directory: dir).isValid)

        // Acknowledging part of it frees exactly the segments wholly below the cursor.
        let acked = last / 2
        try writer.acknowledge(upTo: acked)
        var appended = 0
        while (try? writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 200))) != nil { appended += 1 }
        #expect(appended > 0)
        #expect(writer.oldestSequence > 1 && writer.oldestSequence <= acked + 1, "deleted an unacknowledged entry")
        #expect(writer.journalBytes <= config.quotaBytes)
        try writer.sync()
        let remaining = try readAll(dir, from: writer.oldestSequence)
        #expect(remaining.map(\.sequence) == Array(writer.oldestSequence...writer.lastSequence))
        #expect(remaining.allSatisfy { $0.payload == pattern($0.sequence, max: 200) })
        #expect(throws: DAQError.self) { _ = try JournalReader(directory: dir, from: 1) }
        try writer.close()
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.isValid, "\(report.faults)")
        #expect(report.bytes + 28 <= config.quotaBytes)
    }

    @Test(arguments: [1, 2] as [UInt64])
    func quotaDeletesOnlyAcknowledgedSegmentsOldestFirst(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let dir = try freshJournalDirectory("quota-retain")
        defer { removeJournalDirectory(dir) }
        let config = JournalConfiguration(epoch: 1, segmentSizeLimit: 2_048, quotaBytes: 12_288)
        let writer = try JournalWriter(directory: dir, configuration: config)
        for _ in 0..<3_000 {
            do {
                try writer.append(kind: .record, payload: pattern(writer.nextSequence, seed: seed, max: 150))
            } catch {
                #expect(error.code == .journalFull)
                try writer.sync()
                let target = writer.acknowledgedUpTo + UInt64.random(in: 0...(writer.lastSyncedSequence - writer.acknowledgedUpTo),
                                                                     using: &random)
                try writer.acknowledge(upTo: target)
            }
            #expect(writer.oldestSequence <= writer.acknowledgedUpTo + 1)
            #expect(writer.journalBytes <= config.quotaBytes)
            let names = try segmentNames(dir)
            #expect(names.first == SegmentName.name(firstSequence: writer.oldestSequence))
        }
        try writer.close()
        #expect(try JournalVerifier.verify(directory: dir).isValid)
    }

    @Test func readerSurvivesRetentionOfTheSegmentItReads() throws {
        let dir = try freshJournalDirectory("reader-retention")
        defer { removeJournalDirectory(dir) }
        let config = JournalConfiguration(epoch: 1, segmentSizeLimit: 2_048, quotaBytes: 8_192)
        let writer = try JournalWriter(directory: dir, configuration: config)
        // Fill the first segment and start a second, so the first can be wholly acknowledged.
        while writer.activeSegmentName == SegmentName.name(firstSequence: 1) {
            try writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 100))
        }
        try writer.sync()
        let reader = try JournalReader(directory: dir, from: 1)
        var seen: [UInt64] = []
        for _ in 0..<5 { seen.append(try #require(try reader.next()).sequence) }
        try writer.acknowledge(upTo: writer.lastSyncedSequence)
        while writer.oldestSequence == 1 {
            try writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 100))
        }
        try writer.sync()
        #expect(!(try segmentNames(dir)).contains(SegmentName.name(firstSequence: 1)))
        while let entry = try reader.next() {
            #expect(entry.payload == pattern(entry.sequence, max: 100))
            seen.append(entry.sequence)
        }
        #expect(seen == Array(1...writer.lastSequence))
        try writer.close()
    }

    @Test(.enabled(if: TemporaryFilesystem.canMount, "needs root and `mount -t tmpfs` to fill a real filesystem"))
    func filesystemFullBecomesJournalFullWithoutATornEntry() throws {
        let mountPoint = try PackagePaths.temporaryDirectory("journal-enospc").path
        try #require(try runProcess("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]).status == 0)
        defer {
            _ = try? runProcess("umount", ["-l", mountPoint])
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
        let dir = mountPoint + "/journal"
        // Quota far above the filesystem: the filesystem fills first.
        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 1, segmentSizeLimit: 32_768, quotaBytes: 64 << 20))
        var refused: DAQError?
        while refused == nil {
            do {
                try writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 1_500))
            } catch {
                refused = error
            }
        }
        #expect(refused?.code == .journalFull, "\(String(describing: refused))")
        #expect(refused?.message.hasPrefix("disk full (") == true && refused?.message.contains("No space left on device") == true, "\(String(describing: refused))")
        let last = writer.lastSequence
        #expect(last > 20)
        try writer.sync()
        #expect(try readAll(dir).map(\.sequence) == Array(1...last))
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.isValid, "a torn entry was left behind: \(report.faults)")

        // Once the collector acknowledges, the writer frees a segment and goes on.
        try writer.acknowledge(upTo: last)
        for _ in 0..<50 { try writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 1_500)) }
        try writer.close()
        let reopened = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 1, segmentSizeLimit: 32_768,
                                                                                             quotaBytes: 64 << 20))
        #expect(reopened.recovery.truncatedBytes == 0)
        #expect(reopened.lastSequence == last + 50)
        try reopened.close()
        let after = try readAll(dir, from: reopened.oldestSequence)
        #expect(after.last?.sequence == last + 50)
        #expect(after.allSatisfy { $0.payload == pattern($0.sequence, max: 1_500) })
        #expect(try JournalVerifier.verify(directory: dir).isValid)
    }

    /// A deferred rotation (the device's) whose first entry the full card refuses is undone: no
    /// unnamed segment is left to hold retention back, and the journal goes on where it was.
    @Test(.enabled(if: TemporaryFilesystem.canMount, "needs root and `mount -t tmpfs` to fill a real filesystem"))
    func aDeferredRotationWhoseFirstEntryIsRefusedIsUndone() throws {
        try TemporaryFilesystem.withMounted("journal-enospc-rotation", size: "256k") { mountPoint in try deferredRotationRefused(mountPoint) }
    }

    private func deferredRotationRefused(_ mountPoint: String) throws {
        let dir = mountPoint + "/journal"
        let config = JournalConfiguration(epoch: 1, segmentSizeLimit: 8192, quotaBytes: 64 << 20)
        let writer = try JournalWriter(directory: dir, configuration: config)
        writer.defersRotationSyncs = true
        // One 5,020-byte entry per segment: the next one rotates, and needs a second page.
        let payload = { (sequence: UInt64) in [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: 5000) }
        for _ in 0..<3 { try writer.append(kind: .record, payload: payload(writer.nextSequence)) }
        try writer.sync()
        #expect(writer.startsSegment(payloadLength: 5000))
        // The card full but one page: the new segment's header fits, its first entry does not.
        let filler = mountPoint + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o644)
        let page = [UInt8](repeating: 0, count: 4096)
        var size = 0
        while page.withUnsafeBytes({ write(fd, $0.baseAddress, 4096) }) == 4096 { size += 4096 }
        #expect(ftruncate(fd, off_t(size - 4096)) == 0)
        close(fd)
        let last = writer.lastSequence
        let refused = try #require(throws: DAQError.self) { try writer.append(kind: .record, payload: payload(writer.nextSequence)) }
        #expect(refused.code == .journalFull, "\(refused)")
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: dir)).contains { $0.hasSuffix(".new") },
                "the refused rotation left its unnamed segment")
        #expect(writer.lastSequence == last && writer.startsSegment(payloadLength: 5000), "the closed segment is the active one again")
        // Room again: the same entry opens the new segment, which a sync names.
        try FileManager.default.removeItem(atPath: filler)
        try writer.append(kind: .record, payload: payload(writer.nextSequence))
        try writer.sync()
        try writer.close()
        #expect(try readAll(dir).map(\.sequence) == Array(1...(last + 1)))
        #expect(try JournalVerifier.verify(directory: dir).isValid)
    }

    @Test(.enabled(if: TemporaryFilesystem.canMount, "needs root and `mount -t tmpfs` to fill a real filesystem"))
    func filesystemFullInsideAnEntryWriteCutsItBack() throws {
        let mountPoint = try PackagePaths.temporaryDirectory("journal-enospc-write").path
        try #require(try runProcess("mount", ["-t", "tmpfs", "-o", "size=128k", "tmpfs", mountPoint]).status == 0)
        defer {
            _ = try? runProcess("umount", ["-l", mountPoint])
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
        let dir = mountPoint + "/journal"
        // One segment bigger than the filesystem: ENOSPC hits the entry write itself (no rotation).
        let config = JournalConfiguration(epoch: 1, segmentSizeLimit: 1 << 20, quotaBytes: 64 << 20)
        let writer = try JournalWriter(directory: dir, configuration: config)
        var refusals = 0
        var attempts = 0
        // Keep trying entries of varied sizes: big ones are refused, small ones may still fit.
        while refusals < 20 && attempts < 10_000 {
            attempts += 1
            do {
                try writer.append(kind: .record, payload: pattern(writer.nextSequence, max: 3_000))
            } catch {
                #expect(error.code == .journalFull)
                refusals += 1
            }
        }
        #expect(refusals == 20)
        let last = writer.lastSequence
        let segment = dir + "/" + writer.activeSegmentName
        try writer.sync()
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.isValid, "a torn entry was left behind: \(report.faults)")
        #expect(report.lastSequence == last && report.segments.count == 1)
        #expect(try fileSize(segment) == report.bytes)
        try writer.close()
        let reopened = try JournalWriter(directory: dir, configuration: config)
        #expect(reopened.recovery.truncatedBytes == 0 && reopened.lastSequence == last)
        try reopened.close()
        let entries = try readAll(dir)
        #expect(entries.map(\.sequence) == Array(1...last))
        #expect(entries.allSatisfy { $0.payload == pattern($0.sequence, max: 3_000) })
    }
}
