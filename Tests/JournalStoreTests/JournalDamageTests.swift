// Damaged storage under a journal (a flipped bit, a zeroed block, a cut-off segment): the reader
// names the entries it cannot read and reads on after them (`skipDamaged`), and verify says
// which entries are gone instead of blaming the next segment for a gap.
import Foundation
import Testing
import DAQCore
import Journal
import JournalStore
import TestSupport

@Suite struct JournalDamageTests {
    private static let smallSegments = JournalConfiguration(epoch: 3, segmentSizeLimit: 2_048, quotaBytes: 1 << 22)

    /// A closed journal of `count` pattern entries (in 2 KiB segments unless told otherwise),
    /// acknowledged up to `acknowledged`.
    private func journal(_ label: String, count: UInt64 = 120, configuration: JournalConfiguration = smallSegments,
                         acknowledged: UInt64? = nil) throws -> String {
        let dir = try freshJournalDirectory(label)
        let writer = try JournalWriter(directory: dir, configuration: configuration)
        for sequence in UInt64(1)...count { try writer.append(kind: .record, payload: pattern(sequence)) }
        if let acknowledged {
            try writer.sync()
            try writer.acknowledge(upTo: acknowledged)
        }
        try writer.close()
        return dir
    }

    /// Where each entry of a segment starts (sequence → offset).
    private func offsets(_ path: String) throws -> [UInt64: Int] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var found: [UInt64: Int] = [:]
        _ = bytes.withUnsafeBytes { SegmentScan.scan($0) { offset, _, sequence, _ in found[sequence] = offset } }
        return found
    }

    private func edit(_ path: String, _ change: (inout [UInt8]) -> Void) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        change(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Reads everything, passing damage; returns the sequence numbers read and the damage met.
    private func readPastDamage(_ dir: String, from: UInt64 = 1) throws -> ([UInt64], [JournalReader.Damage]) {
        let reader = try JournalReader(directory: dir, from: from)
        var read: [UInt64] = [], damage: [JournalReader.Damage] = []
        while true {
            do {
                guard let entry = try reader.next() else { break }
                read.append(entry.sequence)
            } catch {
                #expect(error.code == .journalCorrupt)
                guard let passed = try reader.skipDamaged() else { throw error }
                damage.append(passed)
            }
        }
        return (read, damage)
    }

    /// A closed segment in the middle of the journal, its name's first sequence and entry offsets.
    private func middleSegment(_ dir: String) throws -> (path: String, first: UInt64, offsets: [UInt64: Int]) {
        let names = try segmentNames(dir)
        #expect(names.count >= 4)
        let name = names[names.count / 2]
        let path = "\(dir)/\(name)"
        return (path, UInt64(name.prefix(20))!, try offsets(path))
    }

    @Test func aFlippedPayloadBitLosesOneEntryAndTheRestReads() throws {
        let dir = try journal("flip")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        let victim = first + 2
        try edit(path) { $0[offsets[victim]! + JournalFraming.headerLength + 3] ^= 0x10 }
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...120).filter { $0 != victim })
        #expect(damage.count == 1)
        #expect(damage.first?.first == victim && damage.first?.last == victim)
        #expect(damage.first?.offset == offsets[victim] && damage.first?.segmentFirstSequence == first)
        #expect(damage.first?.defect.contains("CRC32C mismatch") == true, "\(damage)")
    }

    @Test func aDamagedLengthFieldIsPassedBySearchingForTheNextEntry() throws {
        let dir = try journal("length")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        let victim = first + 1
        // The length field now points far past the entry: only the search finds where entries go on.
        try edit(path) { $0[offsets[victim]! + 1] ^= 0x04 }
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...120).filter { $0 != victim })
        #expect(damage.map { $0.first...$0.last } == [victim...victim])
    }

    @Test func aZeroedBlockLosesTheEntriesInItOnly() throws {
        let dir = try journal("zeroed")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        // Zero from inside entry first+1 to inside entry first+3: entries first+1…first+3 are hit.
        let from = offsets[first + 1]! + 5, to = offsets[first + 3]! + 7
        try edit(path) { bytes in for index in from..<to { bytes[index] = 0 } }
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...120).filter { $0 < first + 1 || $0 > first + 3 })
        #expect(damage.map { $0.first...$0.last } == [(first + 1)...(first + 3)])
    }

    @Test func aClosedSegmentCutShortLosesItsTailUpToTheNextSegment() throws {
        let dir = try journal("cut")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        let last = offsets.keys.max()!
        // Cut inside its second-to-last entry: that one and the last are gone.
        try edit(path) { $0.removeLast($0.count - (offsets[last - 1]! + 9)) }
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...120).filter { $0 < last - 1 || $0 > last })
        #expect(damage.map { $0.first...$0.last } == [(last - 1)...last])
        #expect(damage.first?.segmentFirstSequence == first)
        // Verify names the cut, and the gap it leaves before the next segment.
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.faults.count == 2, "\(report.faults)")
        #expect(report.entries == 118)
    }

    @Test func runsStopBeforeTheDamageAndGoOnAfterIt() throws {
        let dir = try journal("runs")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        let victim = first + 2
        try edit(path) { $0[offsets[victim]! + JournalFraming.headerLength] ^= 0x01 }
        let reader = try JournalReader(directory: dir, from: 1)
        var sequences: [UInt64] = [], damage: [JournalReader.Damage] = []
        var bytes: [UInt8] = [], ranges: [Range<Int>] = []
        while true {
            bytes.removeAll()
            ranges.removeAll()
            do {
                guard let run = try reader.readEntries(maxEntries: 1_000, maxBytes: 1 << 20, into: &bytes, ranges: &ranges) else { break }
                sequences += Array(run.firstSequence...run.lastSequence)
            } catch {
                guard let passed = try reader.skipDamaged() else { throw error }
                damage.append(passed)
            }
        }
        #expect(sequences == Array(1...120).filter { $0 != victim })
        #expect(damage.map { $0.first...$0.last } == [victim...victim])
    }

    @Test func damageBeforeTheReadersStartIsPassedWithNothingLost() throws {
        let dir = try journal("before-start")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        let victim = first + 1
        try edit(path) { $0[offsets[victim]! + JournalFraming.headerLength] ^= 0x01 }
        let (read, damage) = try readPastDamage(dir, from: victim + 2)
        #expect(read == Array((victim + 2)...120))
        #expect(damage.count == 1 && damage.first?.count == 0)
    }

    @Test func damageAtTheEndOfTheNewestSegmentIsNotPassed() throws {
        let dir = try journal("newest")
        defer { removeJournalDirectory(dir) }
        let newest = "\(dir)/\(try segmentNames(dir).last!)"
        let offsets = try offsets(newest)
        let last = offsets.keys.max()!
        try edit(newest) { $0[offsets[last]! + JournalFraming.headerLength] ^= 0x01 }
        let reader = try JournalReader(directory: dir, from: last)
        #expect(throws: DAQError.self) { try reader.next() }
        // Entries appended after it may still come: nothing to read on to yet.
        #expect(try reader.skipDamaged() == nil)
    }

    /// A live writer's synced entries are known to exist (`skipDamaged(written:)`): damage at the
    /// end of the newest segment with nothing valid after it costs those entries only, and what
    /// the writer appends after the damaged bytes is read on from there, none of it lost.
    @Test func damageAtTheEndOfTheNewestSegmentIsPassedWhenItsEntriesWereWritten() throws {
        let dir = try freshJournalDirectory("newest-written")
        defer { removeJournalDirectory(dir) }
        let writer = try writerWithPatternEntries(dir, epoch: 3, count: 40)
        try writer.sync()
        // A flipped bit in the last entry, in place (the writer's file stays the same file).
        let newest = "\(dir)/\(try segmentNames(dir).last!)"
        let at = try offsets(newest)[40]! + JournalFraming.headerLength
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: newest))
        try file.seek(toOffset: UInt64(at))
        let byte = try file.read(upToCount: 1)![0]
        try file.seek(toOffset: UInt64(at))
        try file.write(contentsOf: [byte ^ 0x01])
        try file.close()

        let reader = try JournalReader(directory: dir, from: 39)
        #expect(try reader.next()?.sequence == 39)
        #expect(throws: DAQError.self) { try reader.next() }
        #expect(try reader.skipDamaged() == nil, "without the writer's word, the end may still be written")
        let damage = try reader.skipDamaged(written: 40)
        #expect(damage?.first == 40 && damage?.last == 40, "\(String(describing: damage))")

        for sequence in UInt64(41)...42 { try writer.append(kind: .record, payload: pattern(sequence)) }
        try writer.sync()
        #expect(throws: DAQError.self) { try reader.next() }  // the damaged bytes, met again
        let passed = try reader.skipDamaged(written: 42)
        #expect(passed?.first == 41 && passed?.count == 0, "\(String(describing: passed))")
        #expect(try reader.next()?.sequence == 41)
        #expect(try reader.next()?.sequence == 42)
        #expect(try reader.next() == nil)
        try writer.close()
    }

    @Test func verifyNamesTheUnreadableEntriesAndReadsOnPastThem() throws {
        let dir = try journal("verify")
        defer { removeJournalDirectory(dir) }
        let (path, first, offsets) = try middleSegment(dir)
        try edit(path) { $0[offsets[first + 2]! + JournalFraming.headerLength + 1] ^= 0x20 }
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.faults.count == 1, "\(report.faults)")
        #expect(report.faults.first?.problem.contains("entries \(first + 2)…\(first + 2) unreadable") == true, "\(report.faults)")
        #expect(report.entries == 119 && report.lostEntries == 1 && report.lastSequence == 120)
    }

    /// A flipped bit in synced entries of the newest segment is no torn tail: reopening keeps the
    /// entries after it (cutting there would number new entries like ones a collector may hold
    /// already, and it would drop them as duplicates) and cuts only a tail nothing valid follows.
    @Test func reopeningKeepsTheEntriesAfterDamageInTheNewestSegment() throws {
        let configuration = JournalConfiguration(epoch: 4)
        let dir = try journal("reopen", count: 50, configuration: configuration)
        defer { removeJournalDirectory(dir) }
        let path = "\(dir)/\(SegmentName.name(firstSequence: 1))"
        let offsets = try offsets(path)
        let intact = try fileSize(path)
        try edit(path) { bytes in
            bytes[offsets[20]! + JournalFraming.headerLength + 2] ^= 0x40
            // And a torn tail after the last entry, as a crash leaves one.
            bytes += JournalFraming.encode(kind: .record, sequence: 51, payload: [9, 9, 9]).dropLast(2)
        }
        let reopened = try JournalWriter(directory: dir, configuration: configuration)
        #expect(reopened.lastSequence == 50)
        #expect(reopened.recovery.damaged.map { $0.first...$0.last } == [20...20])
        #expect(reopened.recovery.damaged.first?.offset == offsets[20])
        #expect(reopened.recovery.truncatedAtOffset == intact && reopened.recovery.truncatedBytes == 21)
        #expect(try reopened.append(kind: .record, payload: pattern(51)) == 51)
        try reopened.close()
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...51).filter { $0 != 20 })
        #expect(damage.map { $0.first...$0.last } == [20...20])
    }

    /// Damage at the very end of acknowledged entries looks like a torn tail and is cut; the
    /// next entries must still be numbered after what the collector acknowledged, or it would
    /// drop them as duplicates of the entries it holds.
    @Test func entriesAfterACutAcknowledgedTailAreNumberedAfterIt() throws {
        let configuration = JournalConfiguration(epoch: 6)
        let dir = try journal("cut-acked", count: 30, configuration: configuration, acknowledged: 30)
        defer { removeJournalDirectory(dir) }
        let path = "\(dir)/\(SegmentName.name(firstSequence: 1))"
        let offsets = try offsets(path)
        try edit(path) { bytes in for index in (offsets[28]! + 3)..<bytes.count { bytes[index] = 0 } }
        let reopened = try JournalWriter(directory: dir, configuration: configuration)
        #expect(reopened.recovery.truncatedAtOffset == offsets[28])
        #expect(reopened.recovery.numberedAfterAcknowledged == 28...30)
        #expect(reopened.acknowledgedUpTo == 30 && reopened.lastSequence == 30)
        #expect(try reopened.append(kind: .record, payload: pattern(31)) == 31)
        try reopened.close()
        // Readers pass the gap between the segments as damage; the uplink starts after it.
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...27) + [31])
        #expect(damage.map { $0.first...$0.last } == [28...30])
        #expect(try readAll(dir, from: 31).map(\.sequence) == [31])
    }

    /// A closed segment's damaged header costs none of its entries: reading goes on at its first
    /// valid entry, numbered from the file name's.
    @Test func aDamagedHeaderOfAClosedSegmentIsPassed() throws {
        let dir = try journal("header")
        defer { removeJournalDirectory(dir) }
        let (path, first, _) = try middleSegment(dir)
        try edit(path) { $0[1] ^= 0x20 }  // the magic
        let (read, damage) = try readPastDamage(dir)
        #expect(read == Array(1...120))
        #expect(damage.count == 1 && damage.first?.count == 0 && damage.first?.segmentFirstSequence == first, "\(damage)")
        #expect(damage.first?.defect.hasPrefix("segment header:") == true, "\(damage)")
        // Its first entry damaged as well: that one is lost, no more.
        let offsets = try offsets(path)  // none: the scan stops at the header
        #expect(offsets.isEmpty)
        try edit(path) { $0[SegmentHeader.length + JournalFraming.headerLength + 1] ^= 0x01 }
        let (again, lost) = try readPastDamage(dir)
        #expect(again == Array(1...120).filter { $0 != first })
        #expect(lost.map { $0.first...$0.last } == [first...first])
    }

    /// A damaged header holds nothing the journal does not know: verify reads the entries after
    /// it, and a writer opening the journal rewrites it, byte for byte the original.
    @Test func aClosedSegmentsZeroedHeaderIsReadPastAndRewritten() throws {
        let dir = try journal("rewrite-closed")
        defer { removeJournalDirectory(dir) }
        let (path, first, _) = try middleSegment(dir)
        let intact = try Data(contentsOf: URL(fileURLWithPath: path))
        try edit(path) { for index in 0..<SegmentHeader.length { $0[index] = 0 } }
        let report = try JournalVerifier.verify(directory: dir)
        #expect(report.entries == 120 && report.lostEntries == 0 && report.lastSequence == 120, "\(report.faults)")
        #expect(report.faults.count == 1 && report.faults.first?.problem.hasPrefix("damaged header (not a journal segment (bad magic)); its entries were read on") == true,
                "\(report.faults)")
        let writer = try JournalWriter(directory: dir, configuration: Self.smallSegments)
        #expect(writer.recovery.repairedHeaders.map(\.segment) == [SegmentName.name(firstSequence: first)])
        #expect(writer.recovery.repairedHeaders.first?.from == "the other segments' epoch")
        try writer.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == intact)
        #expect(try JournalVerifier.verify(directory: dir).faults.isEmpty)
    }

    /// The newest segment's damaged header used to stop the writer (daqlink would not start):
    /// now it is rewritten and appending goes on after its last entry.
    @Test func theNewestSegmentsDamagedHeaderNoLongerStopsTheWriter() throws {
        let dir = try journal("rewrite-newest")
        defer { removeJournalDirectory(dir) }
        let newest = "\(dir)/\(try segmentNames(dir).last!)"
        let intact = try Data(contentsOf: URL(fileURLWithPath: newest))
        try edit(newest) { $0[17] ^= 0x02; $0[21] ^= 0x40 }  // two bits of the epoch
        let writer = try JournalWriter(directory: dir, configuration: Self.smallSegments)
        #expect(writer.recovery.repairedHeaders.count == 1 && writer.lastSequence == 120)
        #expect(try Data(contentsOf: URL(fileURLWithPath: newest)) == intact)
        #expect(try writer.append(kind: .record, payload: pattern(121)) == 121)
        try writer.close()
        #expect(try readAll(dir).map(\.sequence) == Array(1...121))
    }

    /// A journal of one segment: its header's epoch comes from one flipped bit's CRC, from the ack
    /// cursor, or from an epoch recorded beside the journal (before any new one); with none a
    /// collector's writer refuses, and says why, and a device's gives it a new epoch.
    @Test func aSingleSegmentsHeaderComesFromItsCRCTheAckCursorOrARecordedEpoch() throws {
        let configuration = JournalConfiguration(epoch: 77)
        let dir = try journal("rewrite-single", count: 40, configuration: configuration)
        defer { removeJournalDirectory(dir) }
        let path = "\(dir)/\(SegmentName.name(firstSequence: 1))"
        let intact = try Data(contentsOf: URL(fileURLWithPath: path))
        try edit(path) { $0[18] ^= 0x08 }
        let bitFixed = try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        #expect(bitFixed.epoch == 77 && bitFixed.recovery.repairedHeaders.first?.from == "its CRC32C (one flipped bit)", "\(bitFixed.recovery)")
        try bitFixed.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == intact)

        try edit(path) { for index in 0..<SegmentHeader.length { $0[index] = 0 } }
        #expect {
            try JournalWriter(directory: dir, configuration: JournalConfiguration(epoch: 5))
        } throws: { error in
            (error as? DAQError)?.code == .journalCorrupt && "\(error)".contains("cannot be rewritten")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) != intact)
        // An epoch recorded beside the journal (a collector's copy) rebuilds it byte for byte.
        var copy = JournalConfiguration(epoch: 5)
        copy.recordedEpoch = 77
        copy.newEpochForUnknownHeaders = true
        let fromRecord = try JournalWriter(directory: dir, configuration: copy)
        #expect(fromRecord.epoch == 77 && fromRecord.recovery.repairedHeaders.first?.from == "the epoch recorded beside the journal"
                && fromRecord.recovery.repairedHeaders.first?.newStream == false, "\(fromRecord.recovery)")
        try fromRecord.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == intact)

        try edit(path) { for index in 0..<SegmentHeader.length { $0[index] = 0 } }
        // A device's writer (daqlink) gives it a new epoch: the entries go on as a new stream.
        var device = JournalConfiguration(epoch: 5)
        device.newEpochForUnknownHeaders = true
        let renewed = try JournalWriter(directory: dir, configuration: device)
        #expect(renewed.epoch == 5 && renewed.lastSequence == 40, "\(renewed.recovery)")
        #expect(renewed.recovery.repairedHeaders.first?.newStream == true
                && "\(renewed.recovery.repairedHeaders[0])".contains("new epoch 5"), "\(renewed.recovery)")
        try renewed.close()
        #expect(try readAll(dir).map(\.sequence) == Array(1...40))

        let acknowledging = try JournalWriter(directory: freshJournalDirectory("rewrite-single-ack"), configuration: configuration)
        defer { removeJournalDirectory(acknowledging.directory) }
        for sequence in UInt64(1)...40 { try acknowledging.append(kind: .record, payload: pattern(sequence)) }
        try acknowledging.sync()
        try acknowledging.acknowledge(upTo: 12)
        try acknowledging.close()
        let ackedPath = "\(acknowledging.directory)/\(SegmentName.name(firstSequence: 1))"
        let ackedIntact = try Data(contentsOf: URL(fileURLWithPath: ackedPath))
        try edit(ackedPath) { for index in 0..<SegmentHeader.length { $0[index] = 0 } }
        let fromAck = try JournalWriter(directory: acknowledging.directory, configuration: JournalConfiguration(epoch: 5))
        #expect(fromAck.epoch == 77 && fromAck.acknowledgedUpTo == 12)
        #expect(fromAck.recovery.repairedHeaders.first?.from == "the ack cursor's epoch")
        try fromAck.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: ackedPath)) == ackedIntact)
    }
}
