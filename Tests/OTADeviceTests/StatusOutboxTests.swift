// The status outbox on disk: reports survive a restart until acknowledged, numbering continues,
// a torn last line is dropped, a fully sent outbox is emptied once it grew, and a firmware report
// a power cut took between its boot state and its append is appended once at the next start.
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport

@Suite struct StatusOutboxTests {
    @Test func reportsSurviveARestartUntilAcknowledgedAndNumberingContinues() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try StatusOutbox(directory: directory.path)
        for version: UInt64 in 1...3 {
            try first.append(kind: .firmware, status: "downloading", version: version, slot: .b, reason: "a \"quoted\"\nreason", time: 100)
        }
        first.acknowledge(upTo: 1)
        // A power cut tore a fourth line in half.
        let handle = try FileHandle(forWritingTo: directory.appendingPathComponent("outbox"))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":4,\"time\":1".utf8))
        try handle.close()

        let second = try StatusOutbox(directory: directory.path)
        #expect(second.pending.map(\.sequence) == [2, 3])
        let parsed = try JSONSerialization.jsonObject(with: Data(second.pending[0].json.utf8)) as? [String: Any]
        #expect(parsed?["reason"] as? String == "a \"quoted\"\nreason")
        let next = try second.append(kind: .experiment, status: "installed", version: 7, time: 101)
        #expect(next.sequence == 4)
        // The torn half is gone from the file: the new report is a line of its own (it was
        // appended onto the torn half, one line of invalid JSON numbered 4).
        let reopened = try StatusOutbox(directory: directory.path)
        #expect(reopened.pending.map(\.sequence) == [2, 3, 4])
        let appended = try JSONSerialization.jsonObject(with: Data((reopened.pending.last?.json ?? "").utf8)) as? [String: Any]
        #expect(appended?["status"] as? String == "installed", "\(reopened.pending)")
        second.acknowledge(upTo: 4)
        #expect(try StatusOutbox(directory: directory.path).pending.isEmpty)
    }

    @Test func aFullySentOutboxIsEmptiedOnceItGrewAndNumberingContinues() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox-compact")
        defer { try? FileManager.default.removeItem(at: directory) }
        let outbox = try StatusOutbox(directory: directory.path)
        var last: UInt64 = 0
        while (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("outbox").path)[.size] as? Int) ?? 0 <= 256 << 10 {
            last = try outbox.append(kind: .firmware, status: "refused", version: 1, reason: String(repeating: "x", count: 500), time: 1).sequence
        }
        outbox.acknowledge(upTo: last)
        #expect((try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("outbox").path)[.size] as? Int) == 0)
        #expect(try StatusOutbox(directory: directory.path).append(kind: .firmware, status: "downloading", version: 2, time: 2).sequence == last + 1)
    }

    @Test func aFirmwareReportLostBetweenItsBootStateAndItsAppendIsAppendedOnceAtTheNextStart() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox-prepared")
        defer { try? FileManager.default.removeItem(at: directory) }
        let committed = SlotReport(status: "committed", version: 7, slot: .b)
        // The shell's order: prepare (generation 5), persist boot state 5, then the power cut.
        try StatusOutbox(directory: directory.path).prepare(committed, bootGeneration: 5)

        // A start whose boot state is still 4 (the persist never happened): nothing is said.
        #expect(try StatusOutbox(directory: directory.path).recoverFirmwareReport(persistedGeneration: 4, time: 10) == nil)
        // Boot state 5 was persisted: the report is appended, once.
        let start = try StatusOutbox(directory: directory.path)
        let recovered = try start.recoverFirmwareReport(persistedGeneration: 5, time: 11)
        #expect(recovered?.status == "committed" && recovered?.version == 7 && recovered?.slot == .b && recovered?.bootGeneration == 5)
        #expect(try StatusOutbox(directory: directory.path).recoverFirmwareReport(persistedGeneration: 5, time: 12) == nil)
        #expect(try StatusOutbox(directory: directory.path).pending.map(\.json).filter { $0.contains("\"committed\"") }.count == 1)

        // A report appended in the usual way (after its persist) is not appended again either,
        // even after the outbox was sent and emptied.
        let rolledBack = SlotReport(status: "rolled-back", version: 8, slot: .a, reason: "health check: no ack\nwithin 30 s")
        try start.prepare(rolledBack, bootGeneration: 6)
        try start.append(kind: .firmware, status: "rolled-back", version: 8, slot: .a, reason: rolledBack.reason, time: 13, bootGeneration: 6)
        var last: UInt64 = 0
        while (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("outbox").path)[.size] as? Int) ?? 0 <= 256 << 10 {
            last = try start.append(kind: .experiment, status: "refused", version: 1, reason: String(repeating: "x", count: 500), time: 14).sequence
        }
        start.acknowledge(upTo: last)
        let afterCompaction = try StatusOutbox(directory: directory.path)
        #expect(afterCompaction.pending.isEmpty && afterCompaction.reportedBootGeneration == 6)
        #expect(try afterCompaction.recoverFirmwareReport(persistedGeneration: 6, time: 15) == nil)

        // Its reason (two lines) survives the prepared file.
        try afterCompaction.prepare(rolledBack, bootGeneration: 7)
        let again = try afterCompaction.recoverFirmwareReport(persistedGeneration: 7, time: 16)
        #expect(again?.reason == "health check: no ack\nwithin 30 s" && again?.sequence == last + 1)
    }

    /// Experiments and certificates: a start appends the report of the last step the kind's state
    /// proves when the outbox lacks it, once, and a compaction keeps what it compares with.
    @Test func aStartAppendsTheStateReportOfAKindThatAPowerCutTook() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox-state")
        defer { try? FileManager.default.removeItem(at: directory) }
        let outbox = try StatusOutbox(directory: directory.path)
        try outbox.append(kind: .experiment, status: "downloading", version: 3, time: 1)
        // Versions say installed 3: "installed" was lost.
        let installed = try #require(ProvenReport(kind: .experiment, versions: ArtifactVersions(installed: 3, floor: 0, accepted: 3),
                                                  failed: nil, pendingInstalled: false))
        let recovered = try StatusOutbox(directory: directory.path).recoverStateReport(of: .experiment, installed, time: 2)
        #expect(recovered?.status == "installed" && recovered?.version == 3 && recovered?.reason?.contains("power cut") == true)
        #expect(try StatusOutbox(directory: directory.path).recoverStateReport(of: .experiment, installed, time: 3) == nil)
        // A state that proves an earlier step than the newest report adds nothing (the step after
        // was reported: e.g. a promotion of certificates whose record did not follow yet).
        try outbox.append(kind: .certificates, status: "installed", version: 4, time: 4)
        let accepted = try #require(ProvenReport(kind: .certificates, versions: ArtifactVersions(installed: 0, floor: 0, accepted: 4),
                                                 failed: nil, pendingInstalled: false))
        #expect(accepted.statuses == ["downloading"])
        #expect(try StatusOutbox(directory: directory.path).recoverStateReport(of: .certificates, accepted, time: 5) == nil)
        // A bundle that failed after it was installed rolled back; never accepted: nothing.
        let failed = try #require(ProvenReport(kind: .certificates, versions: ArtifactVersions(installed: 0, floor: 0, accepted: 4),
                                               failed: 4, pendingInstalled: false))
        let start = try StatusOutbox(directory: directory.path)
        #expect(try start.recoverStateReport(of: .certificates, failed, time: 6)?.status == "rolled-back")
        #expect(ProvenReport(kind: .experiment, versions: ArtifactVersions(), failed: nil, pendingInstalled: false) == nil)

        // After the outbox was sent and emptied, the newest state report of each kind is kept.
        var last: UInt64 = 0
        while (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("outbox").path)[.size] as? Int) ?? 0 <= 256 << 10 {
            last = try start.append(kind: .experiment, status: "refused", version: 9, reason: String(repeating: "x", count: 500), time: 7).sequence
        }
        start.acknowledge(upTo: last)
        let compacted = try StatusOutbox(directory: directory.path)
        #expect(try compacted.recoverStateReport(of: .experiment, installed, time: 8) == nil)
        #expect(try compacted.recoverStateReport(of: .certificates, failed, time: 9) == nil)
        let kept = try String(contentsOf: directory.appendingPathComponent("outbox"), encoding: .utf8).split(separator: "\n")
        #expect(kept.count == 2 && kept[0].contains("\"installed\"") && kept[1].contains("\"rolled-back\""), "\(kept)")

        // An outbox with no state report of the kind (one an older daqlink emptied, keeping only
        // its firmware line, or a new one): a finished update is not reported again as new; only
        // a `downloading` can be the report a power cut took.
        let other = try PackagePaths.temporaryDirectory("outbox-state-none")
        defer { try? FileManager.default.removeItem(at: other) }
        let none = try StatusOutbox(directory: other.path)
        #expect(try none.recoverStateReport(of: .experiment, installed, time: 10) == nil)
        #expect(try none.recoverStateReport(of: .certificates, failed, time: 11) == nil)
        let downloading = try #require(ProvenReport(kind: .experiment, versions: ArtifactVersions(installed: 3, floor: 0, accepted: 4),
                                                    failed: nil, pendingInstalled: false))
        #expect(try none.recoverStateReport(of: .experiment, downloading, time: 12)?.status == "downloading")
    }

    /// Renewals (version 0) are told apart by serial: a start puts back the report of the step
    /// that the links and the refused serials prove, once, and only after the step before it was
    /// reported; each renewal's newest report outlives a compaction.
    @Test func aStartAppendsTheRenewalReportThatAPowerCutTook() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox-renewal")
        defer { try? FileManager.default.removeItem(at: directory) }
        let outbox = try StatusOutbox(directory: directory.path)
        // Armed, and the cut came before its report: put back.
        var recovered = try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: "0a", current: nil, rolledBack: [], time: 1)
        #expect(recovered.map(\.status) == ["renewal-installed"] && recovered.first?.serial == "0a" && recovered.first?.version == 0)
        #expect(recovered.first?.json().contains("\"serial\":\"0a\"") == true, "\(recovered)")
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: "0a", current: nil, rolledBack: [], time: 2).isEmpty)
        // Promoted, and the cut came before "renewed": put back, once.
        recovered = try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0a", rolledBack: [], time: 3)
        #expect(recovered.map(\.status) == ["renewed"] && recovered.first?.serial == "0a")
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0a", rolledBack: [], time: 4).isEmpty)
        // A later renewal installed, then recorded as refused before its rollback was reported;
        // the one in use stays reported as renewed (the newest report of the kind is another
        // serial's: a rule on the newest report alone would report "0a" renewed again).
        try outbox.append(kind: .certificates, status: "renewal-installed", version: 0, time: 5, serial: "0b")
        recovered = try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0a", rolledBack: ["0b"], time: 6)
        #expect(recovered.map(\.status) == ["renewal-rolled-back"] && recovered.first?.serial == "0b", "\(recovered)")
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0a", rolledBack: ["0b"], time: 7).isEmpty)
        // A serial with no report at all (an outbox an older daqlink emptied) is not reported.
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0c", rolledBack: ["0d"], time: 8).isEmpty)

        // Sent and emptied: each renewal's newest report stays, and nothing is put back again.
        let start = try StatusOutbox(directory: directory.path)
        var last: UInt64 = 0
        while (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent("outbox").path)[.size] as? Int) ?? 0 <= 256 << 10 {
            last = try start.append(kind: .experiment, status: "refused", version: 9, reason: String(repeating: "x", count: 500), time: 9).sequence
        }
        start.acknowledge(upTo: last)
        let kept = try String(contentsOf: directory.appendingPathComponent("outbox"), encoding: .utf8).split(separator: "\n")
        #expect(kept.filter { $0.contains("\"serial\"") }.count == 2, "\(kept)")
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0a", rolledBack: ["0b"], time: 10).isEmpty)

        // A line of the daqlink before the "serial" key names the serial in its reason only.
        try start.append(kind: .certificates, status: "renewal-installed", version: 0, reason: "serial 0E9F, valid until 2027-01-01", time: 11)
        #expect(try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: "0E9F", current: nil, rolledBack: [], time: 12).isEmpty,
                "not reported again as a power cut's")
        recovered = try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0E9F", rolledBack: [], time: 13)
        #expect(recovered.map(\.status) == ["renewed"] && recovered.first?.serial == "0E9F", "\(recovered)")

        // Rolled back (the certificate in use expired), tried again and promoted, and the cut came
        // before "renewed": put back.
        try start.append(kind: .certificates, status: "renewal-rolled-back", version: 0, time: 14, serial: "0f")
        recovered = try StatusOutbox(directory: directory.path).recoverRenewalReports(pending: nil, current: "0f", rolledBack: [], time: 15)
        #expect(recovered.map(\.status) == ["renewed"] && recovered.first?.serial == "0f", "\(recovered)")
    }

    /// Each outbox has an id of its own, kept across restarts and carried by its reports: the
    /// collector keeps the numbers of each outbox apart (a new card numbers from 1 again).
    @Test func anOutboxKeepsItsIdAndItsReportsCarryIt() throws {
        let directory = try PackagePaths.temporaryDirectory("outbox-id")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try StatusOutbox(directory: directory.path)
        let report = try first.append(kind: .experiment, status: "installed", version: 3, time: 1)
        #expect(report.outbox == first.outboxID && first.outboxID.count == 16)
        #expect(report.json().contains("\"outbox\":\"\(first.outboxID)\""))
        #expect(try StatusOutbox(directory: directory.path).outboxID == first.outboxID)
        let other = try PackagePaths.temporaryDirectory("outbox-id-2")
        defer { try? FileManager.default.removeItem(at: other) }
        #expect(try StatusOutbox(directory: other.path).outboxID != first.outboxID)
    }
}
