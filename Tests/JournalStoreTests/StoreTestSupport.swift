// Helpers for the journal store tests: temp journals, pattern payloads, reading everything back.
import Foundation
import DAQCore
import Journal
import JournalStore
import TestSupport


func freshJournalDirectory(_ label: String) throws -> String {
    try PackagePaths.temporaryDirectory("journal-\(label)").appendingPathComponent("journal").path
}

/// Removes the unique parent made by `freshJournalDirectory`.
func removeJournalDirectory(_ dir: String) {
    try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: dir).deletingLastPathComponent().path)
}

func pattern(_ sequence: UInt64, seed: UInt64 = 1, max: Int = 300) -> [UInt8] {
    JournalTestPattern.payload(sequence: sequence, seed: seed, minLength: 0, maxLength: max)
}

/// Every entry from `sequence` on.
func readAll(_ directory: String, from sequence: UInt64 = 1) throws -> [JournalEntry] {
    let reader = try JournalReader(directory: directory, from: sequence)
    var entries: [JournalEntry] = []
    while let entry = try reader.next() { entries.append(entry) }
    return entries
}

func segmentNames(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".jnl") }.sorted()
}

func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
}

/// A writer on `directory` (epoch `epoch`) that has appended the pattern entries 1…count, none
/// synced yet.
func writerWithPatternEntries(_ directory: String, epoch: UInt64, count: UInt64) throws -> JournalWriter {
    let writer = try JournalWriter(directory: directory, configuration: JournalConfiguration(epoch: epoch))
    for sequence in UInt64(1)...count { try writer.append(kind: .record, payload: pattern(sequence)) }
    return writer
}
