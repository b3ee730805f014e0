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
    /// the journal (trimmed), or whose start time differs from the file's, is left as it is. A
    /// file a power cut left shorter than its head is rebuilt when the journal has its layout.
    static func finalize(mdfDirectory: String, journalDirectory: String) throws(DAQError) -> [String] {
        // Layout sequence → the start time in the unfinalized file's ##HD (at 0x40, data at +72);
        // nil when a power cut left the file shorter than its head (its data never reached the
        // card: nothing in it to lose, and the journal holds the measurement).
        var layouts: [UInt64: Int64?] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: mdfDirectory)) ?? [] {
            guard let sequence = layoutSequence(fileName: name) else { continue }
            guard let handle = FileHandle(forReadingAtPath: "\(mdfDirectory)/\(name)") else { continue }
            let head = [UInt8](handle.readData(ofLength: 0x40 + 80))
            try? handle.close()
            guard head.count == 0x40 + 80 else {
                if layouts[sequence] == nil { layouts[sequence] = .some(nil) }
                continue
            }
            guard head.prefix(8).elementsEqual("UnFinMF ".utf8) else { continue }
            var start: UInt64 = 0
            for index in 0..<8 { start |= UInt64(head[0x40 + 72 + index]) << (8 * UInt64(index)) }
            layouts[sequence] = Int64(bitPattern: start)
        }
        var rebuilt: [String] = []
        for (sequence, start) in layouts.sorted(by: { $0.key < $1.key }) {
            let reader: JournalReader
            do {
                reader = try JournalReader(directory: journalDirectory, from: sequence)
            } catch where error.code == .journalMisuse {
                continue  // trimmed from the journal since: the file stays as the cut left it
            }
            // Damaged storage (docs/journal.md) costs the rebuilt file the records it took (and,
            // below, what follows when it took the next layout entry); a damaged layout entry of
            // its own costs the whole file (as if it were no longer in the journal).
            guard let first = try reader.nextReadable(damaged: { _ in }), first.sequence == sequence, first.kind == .layout
            else { continue }
            let layout = try first.payload.withUnsafeBytes { raw in
                Result { () throws(DAQError) in try MeasurementLayout(decoding: raw, source: "\(journalDirectory) seq \(sequence)") }
            }.get()
            // A file from another journal that happens to share the name is not this measurement's.
            if let start, layout.start.nanoseconds != start { continue }
            let name = "measurement-\(sequence)"
            let recording = try MDFRecording(directory: mdfDirectory, name: name, layout: layout)
            // Damaged entries may have held the next measurement's layout entry: what follows
            // them goes in by `MeasurementContinuity`'s rule, the collector's after a `lost`
            // placeholder; a layout repeat of another layout, or after records were held out,
            // ends the file.
            var continuity = MeasurementContinuity()
            while let entry = try reader.nextReadable(damaged: { _ in continuity.lost() }), entry.kind != .layout {
                if entry.kind == .layoutRepeat {
                    guard continuity.layoutRepeated(same: entry.payload == first.payload) else { break }
                    continue
                }
                guard entry.kind == .record else { continue }
                // A record that is not this measurement's: the next layout entry was damaged,
                // and what follows belongs to a measurement whose layout is unknown.
                let fits = try entry.payload.withUnsafeBytes { raw in
                    Result { () throws(DAQError) in
                        guard recording.fits(raw) else { return false }
                        if continuity.admits(raw) { try recording.append(raw) }
                        return true
                    }
                }.get()
                if !fits { break }
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
