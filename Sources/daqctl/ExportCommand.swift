// `daqctl export`: a journal's records as MDF4 (the pure MDFWriter over each measurement) or as
// CSV (one file per channel group, physical values). Records are split by the layout entry that
// precedes them: each layout entry starts a measurement, and each measurement gets its own file.
// Two passes over the journal: one counts, one writes (`ExportFile`), so memory stays small
// whatever the journal's size (with --deflate, records wait in a temporary file until deflated).
import Acquisition
import ArgumentParser
import DAQCore
import Foundation
import Journal
import JournalStore
import MDF
import MDFFiles

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a journal's measurements as MDF4 (.mf4) or CSV.",
        discussion: """
            Every layout entry in the journal starts a measurement. The first measurement is \
            written to FILE, the k-th to FILE with "-k" before its extension (run.mf4, \
            run-2.mf4, …).

            MDF: one finalized MDF 4.11 file per measurement, one sorted data group per channel \
            group.

            CSV: one file per channel group, named FILE with "-<group>" before the extension (or \
            FILE itself with --group); header "t [s],<channel> [unit],…"; t is the record's time \
            master (seconds since the measurement start), raw channels are converted to physical \
            values (raw × factor + offset), and a channel not received yet (invalidation bit set) \
            is an empty cell.

            The journal is read twice (records counted, then written), so memory stays small \
            whatever its size; with --deflate each measurement's records wait in a temporary file \
            beside the output (as large as the plain file) and are deflated 4 MiB at a time when \
            it ends. Progress (entries read, share of the journal's bytes) goes to \
            stderr every 0.5 s for each pass when stderr is a terminal or with --progress. Entries damaged storage made unreadable are \
            read past: the files hold every other record, stderr names the missing entries, and \
            the exit status is 2 (1: nothing was exported).

            Example:
              daqctl export --journal /data/journal --format mdf --out run.mf4
              daqctl export --journal /data/journal --format csv --out run.csv \\
                --group "Time 10ms"
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case mdf, csv }

    @Option(help: "The journal directory.")
    var journal: String

    @Option(help: "Output format: mdf or csv.")
    var format: Format

    @Option(help: "Output file (further measurements and CSV groups get suffixes, see above).")
    var out: String

    @Option(help: "Export only this channel group.")
    var group: String?

    @Flag(help: "MDF: store each group's data as a ##DZ block (transposed + deflate) for compact files.")
    var deflate = false

    @Flag(help: "Print progress to stderr even when it is not a terminal.")
    var progress = false

    func run() throws {
        do {
            // Two passes, so no journal is held in memory (a quota's worth is half a gigabyte):
            // the first counts each measurement's records per group, the second writes them
            // where the files planned from those counts put them.
            let showing = progress || isatty(2) == 1
            let counted = try JournalMeasurements.scan(journal, progress: showing, label: "export: counting", record: { _, _, _ in })
            let measurements = counted.measurements
            let left = counted.left
            guard !measurements.isEmpty else {
                throw DAQError(.malformedInput, "no layout entry: nothing to export"
                               + (left.withoutLayout > 0 ? " (\(left.withoutLayout) records whose layout entry is no longer in the journal)" : ""),
                               at: InputLocation(file: journal))
            }
            if let group, !measurements.contains(where: { $0.layout.groups.contains { $0.name == group } }) {
                throw DAQError(.malformedInput, "no channel group named \"\(group)\"", at: InputLocation(file: journal, field: "--group"))
            }
            // Per measurement and group: where its records go (nil: not exported).
            var sinks: [[ExportSink?]] = []
            var written: [String] = []
            var files: [ExportFile] = []
            defer { for file in files { file.discard() } }
            for (index, measurement) in measurements.enumerated() {
                let base = ExportPaths.numbered(out, index + 1)
                let selected = measurement.layout.groups.indices.filter { group == nil || measurement.layout.groups[$0].name == group }
                var row = [ExportSink?](repeating: nil, count: measurement.layout.groups.count)
                guard !selected.isEmpty else {
                    sinks.append(row)
                    continue
                }
                switch format {
                case .mdf:
                    let layout = MeasurementLayout(start: measurement.layout.start, experiment: measurement.layout.experiment,
                                                   groups: selected.map { measurement.layout.groups[$0] })
                    let cycles = selected.map { UInt64(measurement.records[$0]) }
                    let file = deflate ? try ExportFile.deflatedMDF(path: base, layout: layout, cycles: cycles)
                                       : try ExportFile.plannedMDF(path: base, layout: layout, cycles: cycles)
                    files.append(file)
                    for (position, g) in selected.enumerated() { row[g] = ExportSink(file: file, group: position) }
                    written.append(base)
                case .csv:
                    for g in selected {
                        let name = measurement.layout.groups[g].name
                        var path = group == nil ? ExportPaths.suffixed(base, name) : base
                        // Names that differ only in characters a file name cannot hold ("Big 64",
                        // "Big/64") met in one file: the second wrote over the first.
                        var copy = 2
                        while written.contains(path) {
                            path = ExportPaths.suffixed(base, "\(name)-\(copy)")
                            copy += 1
                        }
                        let file = try ExportFile.csv(path: path, group: measurement.layout.groups[g])
                        files.append(file)
                        row[g] = ExportSink(file: file, group: 0)
                        written.append(path)
                    }
                }
                sinks.append(row)
            }
            // Measurements are known by their layout entry's sequence number: should retention
            // delete the oldest between the passes, the second pass numbers them otherwise.
            var index: [UInt64: Int] = [:]
            for (position, measurement) in measurements.enumerated() { index[measurement.layoutSequence] = position }
            var current = 0
            let changed = DAQError(.malformedInput, "the journal changed while it was exported (retention deleted entries between the "
                                   + "two passes): export it again, or a copy of it", at: InputLocation(file: journal))
            let second = try JournalMeasurements.scan(journal, progress: showing, label: "export: writing", through: counted.lastSequence) { layoutSequence, g, bytes in
                guard let m = index[layoutSequence], g < sinks[m].count else { throw changed }
                // A measurement over: its files written out and closed (a deflated one's records deflated).
                while current < m {
                    for sink in sinks[current].compactMap({ $0 }) { try sink.file.complete() }
                    current += 1
                }
                guard let sink = sinks[m][g] else { return }
                try sink.file.append(group: sink.group, bytes)
            }
            // Between the passes a writer may have added entries (not exported: after the first
            // pass's end) or retention deleted some (the files would have holes).
            guard second.measurements.map(\.records) == measurements.map(\.records),
                  second.measurements.map(\.layoutSequence) == measurements.map(\.layoutSequence) else { throw changed }
            // Every file whole before any is renamed: a failure leaves no mixed set.
            for file in files { try file.complete() }
            for file in files { try file.finish() }
            files.removeAll()
            let unreadable = counted.unreadable
            for path in written { print(path) }
            // Whatever is not in the files is said, and the exit status is 2 (the lost entries
            // were left out without a word).
            var notes: [String] = []
            if !unreadable.isEmpty { notes.append(UnreadableEntries.line(unreadable, what: ", not exported")) }
            if left.lost > 0 { notes.append("\(left.lost) entries are \"lost\" placeholders (the device could not read them back), not exported") }
            if left.withoutLayout > 0 {
                notes.append("\(left.withoutLayout) records before the first layout entry still in the journal (retention deleted it, or it is damaged), not exported")
            }
            if !notes.isEmpty {
                for note in notes { FileHandle.standardError.write(Data("daqctl export: \(note)\n".utf8)) }
                FileHandle.standardError.write(Data("daqctl export: the files hold every other record\n".utf8))
                throw ExitCode(2)
            }
        } catch let error as DAQError {
            FileHandle.standardError.write(Data("daqctl export: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The measurements of a journal: each layout entry and the records that follow it, split by group.
struct JournalMeasurements {
    var layout: MeasurementLayout
    /// The sequence number of the entry that started it (a layout entry, or a repeat).
    var layoutSequence: UInt64
    /// Per group: how many records it holds.
    var records: [Int]

    /// What a read left out: records whose layout entry is no longer in the journal (retention
    /// deleted it, or it is damaged), and a collector's `lost` placeholders.
    struct Left { var withoutLayout = 0, lost = 0 }

    struct Scan {
        var measurements: [JournalMeasurements] = []
        var unreadable: [ClosedRange<UInt64>] = []
        var left = Left()
        /// The last entry read (the second pass stops there).
        var lastSequence: UInt64 = 0
    }

    /// Reads `directory` from its oldest entry (up to `through`), handing each record to
    /// `record(its measurement's layoutSequence, group, MDF record bytes)` in journal order.
    static func scan(_ directory: String, progress: Bool, label: String, through last: UInt64 = .max,
                     record: (UInt64, Int, ArraySlice<UInt8>) throws -> Void) throws -> Scan {
        // From the oldest entry still there: retention deletes the oldest segments, and starting
        // at 1 refused such a journal ("seq 1 is no longer in the journal").
        let reader = try JournalReader(directory: directory, from: try JournalReader.oldestSequence(directory: directory) ?? 1)
        var scan = Scan()
        var meter = ReadProgress(enabled: progress, totalBytes: ReadProgress.journalBytes(directory), label: label)
        var layouts: [RecordLayout] = []
        var layoutBytes: [UInt8]?
        while let entry = try reader.nextReadable(damaged: { scan.unreadable.append($0.first...$0.last) }) {
            guard entry.sequence <= last else { break }
            scan.lastSequence = entry.sequence
            meter.entry(bytes: entry.framed.count)
            // A layout repeat (the first entry of a segment) starts a measurement only when its
            // layout entry is no longer in the journal: retention deleted it, or damage took it
            // (the repeat then differs from the layout in force).
            if entry.kind == .layout || (entry.kind == .layoutRepeat && entry.payload != layoutBytes) {
                layoutBytes = entry.payload
                let layout = try entry.payload.withUnsafeBytes { (raw) throws(DAQError) in
                    try MeasurementLayout(decoding: raw, source: "\(directory) seq \(entry.sequence)")
                }
                layouts = layout.groups.map(RecordLayout.init)
                scan.measurements.append(JournalMeasurements(layout: layout, layoutSequence: entry.sequence,
                                                             records: Array(repeating: 0, count: layout.groups.count)))
            } else if entry.kind == .record {
                guard !scan.measurements.isEmpty else {
                    scan.left.withoutLayout += 1
                    continue
                }
                let payload = entry.payload
                let group = payload.count >= 2 ? payload.withUnsafeBytes { RecordPayload.groupIndex($0) } : -1
                guard group >= 0, group < layouts.count, payload.count == RecordPayload.headerBytes + layouts[group].recordBytes else {
                    throw DAQError(.malformedInput, "record does not match the layout (group \(group), \(payload.count) bytes)",
                                   at: InputLocation(file: directory, field: "seq \(entry.sequence)"))
                }
                scan.measurements[scan.measurements.count - 1].records[group] += 1
                try record(scan.measurements[scan.measurements.count - 1].layoutSequence, group, payload[RecordPayload.headerBytes...])
            } else if entry.kind == .lost {
                scan.left.lost += 1
            }
        }
        meter.finish()
        return scan
    }
}

/// A progress line on stderr, rewritten at most every 0.5 s (export, verify).
struct ReadProgress {
    let enabled: Bool
    let totalBytes: Int
    /// What the line is about ("export: counting", "verify: the device's journal").
    var label: String
    private var entries = 0
    private var bytes = 0
    private var last = ContinuousClock.now

    init(enabled: Bool, totalBytes: Int, label: String) {
        self.enabled = enabled
        self.totalBytes = totalBytes
        self.label = label
    }

    /// Sum of the segment files' sizes (the denominator of the percentage).
    static func journalBytes(_ directory: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".jnl") }.reduce(0) { sum, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)")
            return sum + ((attributes?[.size] as? Int) ?? 0)
        }
    }

    mutating func entry(bytes framed: Int) {
        entries += 1
        bytes += framed
        guard enabled, entries % 1024 == 0 else { return }
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(500) else { return }
        last = now
        draw()
    }

    mutating func finish() {
        guard enabled else { return }
        bytes = max(bytes, totalBytes)  // segment headers are not counted per entry
        draw()
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw() {
        let percent = totalBytes > 0 ? min(100, bytes * 100 / totalBytes) : 100
        FileHandle.standardError.write(Data("\r\(label): \(entries) entries read (\(percent)% of \(totalBytes) journal bytes)".utf8))
    }
}

/// Output file names and writing.
enum ExportPaths {
    /// `path` for k = 1, else "-k" inserted before the extension.
    static func numbered(_ path: String, _ k: Int) -> String {
        k == 1 ? path : suffixed(path, "\(k)")
    }

    /// "-suffix" inserted before the extension of the file name (characters unsafe in names become "_").
    static func suffixed(_ path: String, _ suffix: String) -> String {
        let safe = String(suffix.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        let slash = path.lastIndex(of: "/")
        let name = slash.map { path[path.index(after: $0)...] } ?? Substring(path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return path + "-" + safe }
        return String(path[..<dot]) + "-" + safe + String(path[dot...])
    }

    static func write(_ bytes: [UInt8], to path: String) throws(DAQError) {
        do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw DAQError(.io, "cannot write: \(FileFailure.reason(error, path: path))", at: InputLocation(file: path))
        }
    }
}

/// One channel group's records as CSV text with physical values.
enum CSVTable {
    /// The header line.
    static func header(_ group: ChannelGroup) -> [UInt8] {
        if group.loggedBuses != nil {
            return Array((group.logsFDFrames ? "t [s],bus,id,ide,dlc,length,dir,edl,brs,esi,data\n" : "t [s],bus,id,ide,dlc,dir,data\n").utf8)
        }
        var out = Array("t [s]".utf8)
        for channel in group.channels {
            out.append(UInt8(ascii: ","))
            out += cell(channel.unit.isEmpty ? channel.name : "\(channel.name) [\(channel.unit)]")
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// A row per record of `records` (whole MDF records back to back), appended to `out`.
    static func rows(_ group: ChannelGroup, layout: RecordLayout, records raw: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        if let buses = group.loggedBuses { return frames(buses: buses, fd: group.logsFDFrames, records: raw, into: &out) }
        do {
            var start = 0
            while start + layout.recordBytes <= raw.count {
                out += Array("\(Double(bitPattern: load(raw, start, 8)))".utf8)
                for (index, channel) in group.channels.enumerated() {
                    out.append(UInt8(ascii: ","))
                    let invalid = raw[start + layout.dataBytes + index / 8] & (1 << UInt8(index % 8)) != 0
                    if invalid { continue }
                    out += Array(physical(channel, raw, start + layout.valueOffsets[index]).utf8)
                }
                out.append(UInt8(ascii: "\n"))
                start += layout.recordBytes
            }
        }
    }

    /// A bus-logging group: one row per frame, `t [s],bus,id,ide,dlc,dir,data` (data in hex); a
    /// CAN FD group adds the data length and the FD bits: `t [s],bus,id,ide,dlc,length,dir,edl,brs,esi,data`.
    private static func frames(buses: [String], fd: Bool, records raw: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        let recordBytes = BusFrameRecord.bytes(fd: fd)
        do {
            for start in stride(from: 0, to: raw.count - recordBytes + 1, by: recordBytes) {
                let frame = BusFrameRecord.fields(raw, at: start, fd: fd)
                let bus = frame.busChannel >= 1 && frame.busChannel <= buses.count ? buses[frame.busChannel - 1] : "?"
                var row = "\(Double(bitPattern: load(raw, start, 8))),\(bus),\(frame.id),\(frame.isExtended ? 1 : 0),\(frame.dlc),"
                if fd { row += "\(frame.data.count)," }
                row += frame.isTransmitted ? "Tx," : "Rx,"
                if fd {
                    let flags = BusFrameRecord.fdFlags(raw, at: start)
                    row += "\(flags.isFD ? 1 : 0),\(flags.bitRateSwitch ? 1 : 0),\(flags.errorStateIndicator ? 1 : 0),"
                }
                out += Array((row + hex(frame.data) + "\n").utf8)
            }
        }
    }

    /// Bytes as upper-case hex, two digits each.
    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { byte -> String in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    private static func physical(_ channel: ChannelSpec, _ raw: UnsafeRawBufferPointer, _ offset: Int) -> String {
        switch channel.storage {
        case .unsigned(let bits):
            let value = load(raw, offset, bits / 8)
            // Unscaled, the integer itself: as a double, 2^53 + 1 read 2^53 and 2^64 − 1 1.8e19.
            if channel.factor == 1 && channel.offset == 0 && value > 1 << 53 { return "\(value)" }
            return scaled(channel, Double(value))
        case .signed(let bits):
            let shift = UInt64(64 - bits)
            let value = Int64(bitPattern: load(raw, offset, bits / 8) << shift) >> Int64(shift)
            if channel.factor == 1 && channel.offset == 0 && value.magnitude > 1 << 53 { return "\(value)" }
            return scaled(channel, Double(value))
        case .float32: return "\(Float(bitPattern: UInt32(truncatingIfNeeded: load(raw, offset, 4))))"
        case .float64: return "\(Double(bitPattern: load(raw, offset, 8)))"
        }
    }

    private static func scaled(_ channel: ChannelSpec, _ raw: Double) -> String {
        "\(raw * channel.factor + channel.offset)"
    }

    private static func load(_ raw: UnsafeRawBufferPointer, _ offset: Int, _ size: Int) -> UInt64 {
        var value: UInt64 = 0
        for byte in 0..<size { value |= UInt64(raw[offset + byte]) << (8 * UInt64(byte)) }
        return value
    }

    private static func cell(_ text: String) -> [UInt8] {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return Array(text.utf8) }
        var quoted = "\""
        for character in text { quoted += character == "\"" ? "\"\"" : String(character) }
        return Array((quoted + "\"").utf8)
    }
}
