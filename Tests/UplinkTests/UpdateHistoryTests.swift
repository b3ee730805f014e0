// The collector's OTA history keeps the report numbers of each outbox apart: a device whose
// outbox started again (a new card, a wiped update directory) numbers from 1 again, and every
// report of the new outbox was dropped as a repeat of the old one's.
import Foundation
import Testing
import TestSupport
@testable import Collector

@Suite struct UpdateHistoryTests {
    private func report(_ seq: Int, _ outbox: String?, _ status: String) -> [UInt8] {
        Array("{\"seq\":\(seq),\"time\":1,\"kind\":\"firmware\",\"status\":\"\(status)\",\"version\":2\(outbox.map { ",\"outbox\":\"\($0)\"" } ?? "")}".utf8)
    }

    @Test func aNewOutboxNumberingFromOneIsRecordedAndRepeatsAreNot() throws {
        let output = try PackagePaths.temporaryDirectory("ota-history")
        let history = UpdateHistory(output: output.path)
        for seq in 1...3 { #expect(try history.record(device: "ecu-01", payload: report(seq, "aaaa", "s\(seq)"), source: "t")) }
        #expect(try !history.record(device: "ecu-01", payload: report(2, "aaaa", "s2"), source: "t"), "a repeat")
        // The new card's outbox: numbered from 1 again.
        #expect(try history.record(device: "ecu-01", payload: report(1, "bbbb", "new1"), source: "t"))
        #expect(try history.record(device: "ecu-01", payload: report(2, "bbbb", "new2"), source: "t"))
        // Reports from before outboxes had ids keep their own numbering too.
        #expect(try history.record(device: "ecu-01", payload: report(1, nil, "old1"), source: "t"))
        // After a restart of the collector, from the file.
        let again = UpdateHistory(output: output.path)
        #expect(try !again.record(device: "ecu-01", payload: report(2, "bbbb", "new2"), source: "t"))
        #expect(try !again.record(device: "ecu-01", payload: report(3, "aaaa", "s3"), source: "t"))
        #expect(try again.record(device: "ecu-01", payload: report(3, "bbbb", "new3"), source: "t"))
        let lines = try String(contentsOf: output.appendingPathComponent("ecu-01/ota-history.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 7, "\(lines)")
    }
}
