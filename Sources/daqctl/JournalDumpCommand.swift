// `daqctl journal dump`: every journal entry as one JSON line, records decoded with the layout
// entry that precedes them (no experiment file needed).
import Acquisition
import ArgumentParser
import DAQCore
import Foundation
import Journal
import JournalStore

struct JournalDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print journal entries as JSON lines (seq, group, time, channel values).",
        discussion: """
            Layout entries print as
              {"seq": N, "layout": {"experiment": …, "start": <s>, "groups": [...]}}
            Records print as
              {"seq": N, "group": "<name>", "t": <s>, "dt": <s>,
               "values": {"<channel>": v, …}}
            (records of a bus-logging group: "values": {} and "frame": {"bus", "id", \
            "extended", "dlc", "tx", "data" in hex}), where dt is the record's time master \
            (seconds since the measurement start, exactly as stored), t = start + dt, v is the \
            stored value (the DBC raw integer for raw channels, the physical value for float \
            channels) and null marks a channel not received yet (invalidation bit set).

            Entries damaged storage made unreadable print as {"seq": N, "through": M, "unreadable": \
            "<segment> offset <o>: <defect>"}; the rest is printed, stderr names them, and the exit \
            status is 2 (1: the dump stopped). A collector's copy may hold {"seq": N, "lost": \
            "<why>"}: an entry the device could not read back (stderr counts them, exit 2). A \
            newest segment that ends inside an entry or its header (a crash's unsynced tail, or a \
            write under way) is named on stderr, exit 2.

            daqlink starts each segment with the layout in force ({"seq": N, "layout_repeat": \
            true}), so retention, which deletes the oldest segments, never takes what decodes the \
            rest: the dump starts at the oldest entry still there. Records no layout there \
            describes (a journal written before layout repeats, damage) print as {"seq": N, \
            "undecoded": <bytes>} (stderr counts them).

            Example:
              daqctl journal dump /data/journal --from 1000 \\
                | jq 'select(.group == "Time 10ms")'
            """
    )

    @Argument(help: "The journal directory.")
    var directory: String

    @Option(help: "First sequence number to print.")
    var from: UInt64 = 1

    @Option(help: "Print at most this many entries.")
    var limit: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, not \(limit)") }
    }

    func run() throws {
        var out = JSONLineBuffer()
        var unreadable: [ClosedRange<UInt64>] = []
        var (lost, undecoded) = (0, 0)
        var tail: JournalReader.UnreadTail?
        do {
            // `journal dump .` in the wrong directory printed nothing and exited 0. Without segments
            // it is as `journal verify` says: an empty journal (a writer killed before its first
            // segment), or not a journal when other files are there.
            guard let oldest = try JournalReader.oldestSequence(directory: directory) else {
                guard try JournalVerifier.verify(directory: directory).isValid else {
                    throw DAQError(.malformedInput, "not a journal directory (no segment files)", at: InputLocation(file: directory))
                }
                return
            }
            // The layout that governs `from` may be earlier: read from the oldest entry still
            // there (retention deletes the oldest segments: starting at 1 refused such a journal).
            let reader = try JournalReader(directory: directory, from: oldest)
            var layout: MeasurementLayout?
            var layoutBytes: [UInt8]?
            var layouts: [RecordLayout] = []
            var printed = 0
            var stoppedAtLimit = false
            // Damaged storage (a device's journal): a line for each run of entries it took.
            while let entry = try reader.nextReadable(damaged: { damage in
                guard damage.last >= from else { return }
                unreadable.append(max(damage.first, from)...damage.last)
                out.text("{\"seq\": \(max(damage.first, from)), \"through\": \(damage.last), \"unreadable\": "
                         + "\(JSONText.quoted("\(damage.segment) offset \(damage.offset): \(damage.defect)"))}\n")
            }) {
                // A layout repeat (the first entry of a segment) is the layout in force; it
                // decodes what follows when retention deleted the layout entry itself, or damage
                // took the layout entry of a new measurement (the repeat then differs).
                if entry.kind == .layout || (entry.kind == .layoutRepeat && entry.payload != layoutBytes) {
                    layoutBytes = entry.payload
                    layout = try entry.payload.withUnsafeBytes { (raw) throws(DAQError) in
                        try MeasurementLayout(decoding: raw, source: "\(directory) seq \(entry.sequence)")
                    }
                    layouts = layout!.groups.map(RecordLayout.init)
                }
                guard entry.sequence >= from else { continue }
                if let limit, printed >= limit {
                    stoppedAtLimit = true
                    break
                }
                printed += 1
                if entry.kind == .layout, let layout {
                    out.layoutLine(seq: entry.sequence, layout)
                } else if entry.kind == .record {
                    guard let layout else {
                        // Its layout entry was trimmed by retention, or damaged.
                        undecoded += 1
                        out.text("{\"seq\": \(entry.sequence), \"undecoded\": \(entry.payload.count)}\n")
                        continue
                    }
                    try out.recordLine(seq: entry.sequence, payload: entry.payload, layout: layout, layouts: layouts,
                                       source: directory)
                } else if entry.kind == .layoutRepeat {
                    out.text("{\"seq\": \(entry.sequence), \"layout_repeat\": true}\n")
                } else if entry.kind == .lost {
                    // A collector's stand-in for an entry the device could not read back.
                    lost += 1
                    out.text("{\"seq\": \(entry.sequence), \"lost\": \(JSONText.quoted(String(decoding: entry.payload, as: UTF8.self)))}\n")
                }
                out.flushIfLarge()
            }
            // The newest segment may end inside an entry: `journal verify` calls it a fault, and the
            // dump, which said nothing and exited 0, names it.
            if !stoppedAtLimit { tail = try reader.unreadTail() }
        } catch let error as DAQError {
            out.flush()
            FileHandle.standardError.write(Data("daqctl journal dump: \(error)\n".utf8))
            throw ExitCode(1)
        }
        out.flush()
        if undecoded > 0 {
            FileHandle.standardError.write(Data(("daqctl journal dump: \(undecoded) records before the first layout entry still in the journal "
                + "(retention deleted it, or it is damaged): printed as \"undecoded\"\n").utf8))
        }
        if lost > 0 {
            FileHandle.standardError.write(Data("daqctl journal dump: \(lost) entries are \"lost\" (the device could not read them back)\n".utf8))
        }
        if !unreadable.isEmpty {
            let line = UnreadableEntries.line(unreadable)
            FileHandle.standardError.write(Data("daqctl journal dump: \(line); their lines say \"unreadable\"\n".utf8))
        }
        if let tail {
            FileHandle.standardError.write(Data(("daqctl journal dump: \(directory)/\(tail): a crash's unsynced tail "
                + "(daqlink drops it at its next start), or a write under way; the dump ends before it\n").utf8))
        }
        if !unreadable.isEmpty || lost > 0 || tail != nil { throw ExitCode(2) }
    }
}

/// JSON lines built into one buffer and written in large chunks.
struct JSONLineBuffer {
    private var bytes: [UInt8] = []

    mutating func text(_ s: String) { bytes += Array(s.utf8) }

    mutating func string(_ s: String) {
        bytes.append(0x22)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": text("\\\"")
            case "\\": text("\\\\")
            case "\n": text("\\n")
            case "\t": text("\\t")
            case "\r": text("\\r")
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    text("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                } else {
                    bytes += Array(String(scalar).utf8)
                }
            }
        }
        bytes.append(0x22)
    }

    mutating func number(_ value: Double) {
        text(value.isFinite ? "\(value)" : "null")
    }

    mutating func layoutLine(seq: UInt64, _ layout: MeasurementLayout) {
        text("{\"seq\": \(seq), \"layout\": {\"experiment\": ")
        string(layout.experiment)
        text(", \"start\": \(seconds(layout.start.nanoseconds)), \"groups\": [")
        for (index, group) in layout.groups.enumerated() {
            if index > 0 { text(", ") }
            text("{\"name\": ")
            string(group.name)
            text(", \"channels\": [")
            for (c, channel) in group.channels.enumerated() {
                if c > 0 { text(", ") }
                string(channel.name)
            }
            text("]")
            if let buses = group.loggedBuses {
                text(", \"buses\": [")
                for (b, bus) in buses.enumerated() {
                    if b > 0 { text(", ") }
                    string(bus)
                }
                text("], \"fd\": \(group.logsFDFrames)")
            }
            text("}")
        }
        text("]}}\n")
    }

    mutating func recordLine(seq: UInt64, payload: [UInt8], layout: MeasurementLayout, layouts: [RecordLayout],
                             source: String) throws(DAQError) {
        guard payload.count >= RecordPayload.headerBytes + 8 else {
            throw DAQError(.malformedInput, "record too short", at: InputLocation(file: source, field: "seq \(seq)"))
        }
        let group = payload.withUnsafeBytes { RecordPayload.groupIndex($0) }
        guard group >= 0, group < layout.groups.count,
              payload.count == RecordPayload.headerBytes + layouts[group].recordBytes else {
            throw DAQError(.malformedInput, "record does not match the layout (group \(group), \(payload.count) bytes)",
                           at: InputLocation(file: source, field: "seq \(seq)"))
        }
        let recordLayout = layouts[group]
        let base = RecordPayload.headerBytes
        payload.withUnsafeBytes { raw in
            let dt = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt64.self)))
            text("{\"seq\": \(seq), \"group\": ")
            string(layout.groups[group].name)
            text(", \"t\": \(offsetNanoseconds(layout.start.nanoseconds, seconds: dt).map(seconds) ?? "null"), \"dt\": ")
            number(dt)
            text(", \"values\": {")
            for (index, channel) in layout.groups[group].channels.enumerated() {
                if index > 0 { text(", ") }
                string(channel.name)
                text(": ")
                let invalid = raw[base + recordLayout.dataBytes + index / 8] & (1 << UInt8(index % 8)) != 0
                if invalid { text("null"); continue }
                let offset = base + recordLayout.valueOffsets[index]
                switch channel.storage {
                case .unsigned(let bits): text("\(load(raw, offset, bits))")
                case .signed(let bits):
                    let value = load(raw, offset, bits)
                    let shift = UInt64(64 - bits)
                    text("\(Int64(bitPattern: value << shift) >> Int64(shift))")
                case .float32: number(Double(Float(bitPattern: UInt32(truncatingIfNeeded: load(raw, offset, 32)))))
                case .float64: number(Double(bitPattern: load(raw, offset, 64)))
                }
            }
            text("}")
            if let buses = layout.groups[group].loggedBuses {
                let frame = BusFrameRecord.fields(raw, at: base, fd: layout.groups[group].logsFDFrames)
                text(", \"frame\": {\"bus\": ")
                string(frame.busChannel >= 1 && frame.busChannel <= buses.count ? buses[frame.busChannel - 1] : "?")
                text(", \"id\": \(frame.id), \"extended\": \(frame.isExtended), \"dlc\": \(frame.dlc), "
                     + "\"tx\": \(frame.isTransmitted), \"data\": \"\(CSVTable.hex(frame.data))\"")
                // CAN FD frames (EDL) also show their bit-rate switch and error state indicator.
                let flags = BusFrameRecord.fdFlags(raw, at: base)
                if flags.isFD { text(", \"fd\": true, \"brs\": \(flags.bitRateSwitch), \"esi\": \(flags.errorStateIndicator)") }
                text("}")
            }
            text("}\n")
        }
    }

    private func load(_ raw: UnsafeRawBufferPointer, _ offset: Int, _ bits: Int) -> UInt64 {
        var value: UInt64 = 0
        for byte in 0..<(bits / 8) { value |= UInt64(raw[offset + byte]) << (8 * UInt64(byte)) }
        return value
    }

    /// Nanoseconds as seconds with nine decimals.
    private func seconds(_ ns: Int64) -> String {
        let negative = ns < 0
        let magnitude = negative ? -ns : ns
        let fraction = String(magnitude % 1_000_000_000)
        return (negative ? "-" : "") + "\(magnitude / 1_000_000_000)." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }

    mutating func flushIfLarge() { if bytes.count > 1 << 20 { flush() } }

    mutating func flush() {
        FileHandle.standardOutput.write(Data(bytes))
        bytes.removeAll(keepingCapacity: true)
    }
}
