// After a kill -9 or power cut, the measurement that was recording left unfinalized MDF files.
// At the next start the device rebuilds them from its recovered journal — every synced record,
// by the same MDFRecording the collector uses — and finalizes them, so they come out byte-identical
// to the collector's files of that measurement (which it finalizes when the next layout arrives).
import Acquisition
import DAQCore
import Foundation
import Journal
import JournalStore
import MDFFiles

enum InterruptedMDF {
    /// Rebuilds and finalizes the measurements whose files in `mdfDirectory` are unfinalized.
    /// Returns the measurement names rebuilt; a measurement whose layout entry is no longer in
    /// the journal (trimmed) is left as it is.
    static func finalize(mdfDirectory: String, journalDirectory: String) throws(DAQError) -> [String] {
        var layouts: Set<UInt64> = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: mdfDirectory)) ?? [] {
            guard let sequence = layoutSequence(fileName: name) else { continue }
            guard let handle = FileHandle(forReadingAtPath: "\(mdfDirectory)/\(name)") else { continue }
            let head = handle.readData(ofLength: 8)
            try? handle.close()
            if head == Data("UnFinMF ".utf8) { layouts.insert(sequence) }
        }
        var rebuilt: [String] = []
        for sequence in layouts.sorted() {
            let reader = try JournalReader(directory: journalDirectory, from: sequence)
            guard let first = try reader.next(), first.sequence == sequence, first.kind == .layout else { continue }
            let layout = try first.payload.withUnsafeBytes { raw in
                Result { () throws(DAQError) in try MeasurementLayout(decoding: raw, source: "\(journalDirectory) seq \(sequence)") }
            }.get()
            let name = "measurement-\(sequence)"
            let recording = try MDFRecording(directory: mdfDirectory, name: name, layout: layout)
            while let entry = try reader.next(), entry.kind != .layout {
                guard entry.kind == .record else { continue }
                try entry.payload.withUnsafeBytes { raw in
                    Result { () throws(DAQError) in try recording.append(raw) }
                }.get()
            }
            try recording.finish()
            rebuilt.append(name)
        }
        return rebuilt
    }

    /// The layout entry's sequence number in `measurement-<seq>.mf4` or `measurement-<seq>_NNNN.mf4`.
    static func layoutSequence(fileName: String) -> UInt64? {
        guard fileName.hasPrefix("measurement-"), fileName.hasSuffix(".mf4") else { return nil }
        let stem = fileName.dropFirst("measurement-".count).dropLast(".mf4".count)
        return UInt64(stem.split(separator: "_", maxSplits: 1).first ?? "")
    }
}
