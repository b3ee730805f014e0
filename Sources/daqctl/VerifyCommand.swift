// `daqctl verify`: the device's journal next to the collector's rebuilt copy — per channel group
// cycles and bytes on each side (seed 000, Fig. 4), SHA-256 of both, and the byte-identity verdict.
import Acquisition
import ArgumentParser
import DAQCore
import Foundation
import Journal
import JournalStore
import Uplink

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare a device journal with the collector's copy: Fig. 4 table, SHA-256, byte identity.",
        discussion: """
            Exit status 0 only when both journals have the same segment files with the same bytes \
            (and, with --mdf, the device's MDF files equal the collector's); 1 when they differ (or the \
            collector holds no segments for the device); 2 when a journal cannot be read; 64 when an \
            argument is no such directory, or the device's holds no journal segments.

            A device whose retention has removed acknowledged segments is compared from its oldest \
            entry on: the retired range is named, and the collector's segments before it are not \
            compared. Entries lost on either side (damaged storage, `lost` placeholders) are named, \
            and every other entry is compared by its CRC32C. A device journal whose newest segment \
            ends in bytes that are no entry (a write cut short by a power loss, or damage) is read up \
            to them, and they are named.

            The collector keeps each stream of a device apart: <dir>/journal/ holds the first one it \
            met, <dir>/epoch-<E>/journal/ each journal started afresh since (a new card: another \
            epoch). Given <dir>, verify compares the copy of the device journal's epoch.

            Example: daqctl verify /data/journal collected/ecu-01
            """
    )

    @Argument(help: "The device's journal directory.")
    var device: String

    @Argument(help: "The collector's directory for that device (or a journal/ sub-directory of it).")
    var collector: String

    @Flag(help: "Print progress to stderr even when it is not a terminal (it is printed on a terminal).")
    var progress = false

    @Option(help: "The device's MDF directory (daqlink --mdf): its files are compared with the collector's <dir>/mdf/.")
    var mdf: String?

    /// The collector's copy of the stream `epoch` (the device journal's) within `collector` (a
    /// device's directory at the collector, or a journal directory itself): `journal/`, or
    /// `epoch-<E>/journal/` when E is not the first stream's.
    static func copy(ofEpoch epoch: UInt64?, in collector: String) -> String {
        let first = "\(collector)/journal"
        if let epoch, FileManager.default.fileExists(atPath: "\(collector)/epoch-\(epoch)/journal"), Self.epoch(of: first) != epoch {
            return "\(collector)/epoch-\(epoch)/journal"
        }
        return FileManager.default.fileExists(atPath: first) ? first : collector
    }

    /// The epoch of a journal's first readable entry (nil: none, or unreadable).
    static func epoch(of journal: String) -> UInt64? {
        guard let names = try? segmentNames(journal), let first = names.first.flatMap({ SegmentName.firstSequence(of: $0) }),
              let reader = try? JournalReader(directory: journal, from: first), (try? reader.next()) != nil else { return nil }
        return reader.epoch
    }

    struct Side {
        var groups: [String: (cycles: UInt64, bytes: UInt64)] = [:]
        var order: [String] = []
        /// Per segment file: its SHA-256 and length (the bytes themselves were held for both
        /// sides: a 512 MiB journal needed over 1 GB).
        var segments: [String: String] = [:]
        var sha256 = ""
        var entries: UInt64 = 0
        var lastSequence: UInt64 = 0
        /// Entries the journal no longer holds readable (damaged storage), and runs of `lost`
        /// placeholders (a collector's, for entries its device could not read), each with what
        /// happened to them.
        var lost: [ClosedRange<UInt64>] = []
        var lostReasons: [String] = []
        /// Every other entry: its sequence number and CRC32C trailer (which covers all its bytes),
        /// in order, to compare what both sides hold apart from the lost entries.
        var checksums: [(sequence: UInt64, crc: UInt32)] = []
        /// Each layout entry: its sequence number and the group names it gives.
        var layouts: [(sequence: UInt64, groups: [String])] = []
        /// Segments before the compared range (the collector's, for entries the device retired).
        var retired: [String] = []
        /// The newest segment's end, when it does not read as entries.
        var tail: String?

        /// Adds lost entries `first…last`, joining the run before them when it has the same reason.
        mutating func addLost(_ first: UInt64, through last: UInt64, _ reason: String) {
            if let previous = lost.last, previous.upperBound + 1 == first, lostReasons.last == reason {
                lost[lost.count - 1] = previous.lowerBound...last
            } else {
                lost.append(first...last)
                lostReasons.append(reason)
            }
        }
    }

    func validate() throws {
        try Self.checkDirectory(device, "the device's journal")
        guard let names = try? Self.segmentNames(device) else { throw ValidationError("\(device): cannot be listed (the device's journal)") }
        guard !names.isEmpty else {
            throw ValidationError("\(device): no journal segments (*\(SegmentName.suffix)) here; is it the device's journal directory?")
        }
        try Self.checkDirectory(collector, "the collector's directory for the device", missing: ": <out>/<device>")
    }

    /// `path` is a directory, or an error that says what it is instead (`role`: what it should be).
    private static func checkDirectory(_ path: String, _ role: String, missing hint: String = "") throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path): no such directory (\(role)\(hint))")
        }
        guard isDirectory.boolValue else { throw ValidationError("\(path): not a directory (\(role))") }
    }

    func run() throws {
        let deviceEpoch = Self.epoch(of: device)
        let collectorJournal = Self.copy(ofEpoch: deviceEpoch, in: collector)
        let deviceSide: Side, collectorSide: Side
        // Retention may have removed the device's oldest segments once the collector acknowledged
        // them: compare from the device's oldest entry on (the collector's layouts name the groups).
        let deviceOldest = (try? Self.segmentNames(device).first.flatMap { SegmentName.firstSequence(of: $0) }) ?? 1
        if (try? Self.segmentNames(collectorJournal))?.isEmpty != false {
            FileHandle.standardError.write(Data("daqctl verify: \(collector): the collector holds no journal segments for this device\n".utf8))
            throw ExitCode(1)
        }
        do {
            // Progress for long work: a quota's worth is half a gigabyte on each side.
            let showing = progress || isatty(2) == 1
            var meter = ReadProgress(enabled: showing, totalBytes: ReadProgress.journalBytes(collectorJournal), label: "verify: the collector's copy")
            collectorSide = try Self.read(collectorJournal, countFrom: deviceOldest, meter: &meter)
            meter.finish()
            let groups = collectorSide.layouts.last { $0.sequence < deviceOldest }?.groups ?? []
            meter = ReadProgress(enabled: showing, totalBytes: ReadProgress.journalBytes(device), label: "verify: the device's journal")
            deviceSide = try Self.read(device, countFrom: deviceOldest, groups: groups, written: collectorSide.lastSequence, meter: &meter)
            meter.finish()
        } catch {
            FileHandle.standardError.write(Data("daqctl verify: \(error)\n".utf8))
            throw ExitCode(2)
        }
        var out = "channel group            device cycles   device bytes  collector cycles  collector bytes\n"
        let names = deviceSide.order + collectorSide.order.filter { !deviceSide.order.contains($0) }
        for name in names {
            let d = deviceSide.groups[name] ?? (0, 0), c = collectorSide.groups[name] ?? (0, 0)
            out += pad(name, 24) + lpad("\(d.cycles)", 14) + lpad("\(d.bytes)", 15) + lpad("\(c.cycles)", 18)
                + lpad("\(c.bytes)", 17) + (d == c ? "" : "   ← differs") + "\n"
        }
        out += "entries: device \(deviceSide.entries) (last seq \(deviceSide.lastSequence)), collector \(collectorSide.entries) (last seq \(collectorSide.lastSequence))\n"
        if let epoch = deviceEpoch, let held = Self.epoch(of: collectorJournal), held != epoch {
            out += "epoch: device \(epoch), collector \(held) (\(collectorJournal)): another stream; "
                + "the collector holds no copy of epoch \(epoch) in \(collector)\n"
        }
        out += "sha256 device:    \(deviceSide.sha256)\n"
        out += "sha256 collector: \(collectorSide.sha256)\n"
        if deviceOldest > 1 {
            let only = collectorSide.retired.count
            out += "device: entries 1…\(deviceOldest - 1) retired (acknowledged, then removed by retention): "
                + "compared from seq \(deviceOldest) on; "
                + "the collector's copy of them is not compared (\(only) segment\(only == 1 ? "" : "s"))\n"
        }
        for (range, what) in zip(deviceSide.lost, deviceSide.lostReasons) {
            out += "device: entries \(range.lowerBound)…\(range.upperBound) \(what)\n"
        }
        if let tail = deviceSide.tail { out += "device: \(tail)\n" }
        for (range, what) in zip(collectorSide.lost, collectorSide.lostReasons) {
            out += "collector: entries \(range.lowerBound)…\(range.upperBound) \(what)\n"
        }
        if !deviceSide.lost.isEmpty || !collectorSide.lost.isEmpty {
            // Lost on either side (a collector may hold entries the device lost since).
            let lost = (deviceSide.lost + collectorSide.lost)
            func kept(_ side: Side) -> [(sequence: UInt64, crc: UInt32)] {
                side.checksums.filter { entry in !lost.contains { $0.contains(entry.sequence) } }
            }
            let device = kept(deviceSide), copy = kept(collectorSide)
            let same = device.count == copy.count && zip(device, copy).allSatisfy { $0 == $1 }
            out += "every other entry identical: \(same ? "yes" : "no") (\(device.count) entries, compared by their CRC32C)\n"
        }
        let identical = deviceSide.segments == collectorSide.segments && !deviceSide.segments.isEmpty
        if !identical {
            for name in Set(deviceSide.segments.keys).union(collectorSide.segments.keys).sorted()
            where deviceSide.segments[name] != collectorSide.segments[name] {
                out += "segment \(name): " + (deviceSide.segments[name] == nil ? "only at the collector"
                    : collectorSide.segments[name] == nil ? "missing at the collector" : "bytes differ") + "\n"
            }
        }
        var mdfIdentical = true
        if let mdf {
            let collectorMDF = URL(fileURLWithPath: collectorJournal).deletingLastPathComponent().appendingPathComponent("mdf").path
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: mdf)) ?? []).filter { $0.hasSuffix(".mf4") }.sorted()
            if names.isEmpty { out += "MDF: no files in \(mdf)\n"; mdfIdentical = false }
            for name in names {
                let device = FileManager.default.contents(atPath: "\(mdf)/\(name)")
                let copy = FileManager.default.contents(atPath: "\(collectorMDF)/\(name)")
                let same = device != nil && device == copy
                mdfIdentical = mdfIdentical && same
                out += "MDF \(name): device \(device?.count ?? 0) bytes, collector \(copy.map { "\($0.count) bytes" } ?? "missing")"
                    + (same ? ", identical" : ", DIFFERENT") + "\n"
            }
            // A file only the collector has is a difference too (it was passed over: "byte-identical: yes").
            let collectorNames = ((try? FileManager.default.contentsOfDirectory(atPath: collectorMDF)) ?? []).filter { $0.hasSuffix(".mf4") }
            for name in collectorNames.sorted() where !names.contains(name) {
                mdfIdentical = false
                out += "MDF \(name): only at the collector, DIFFERENT\n"
            }
        }
        out += "byte-identical: \(identical && mdfIdentical ? "yes" : "no")\n"
        FileHandle.standardOutput.write(Data(out.utf8))
        if !identical || !mdfIdentical { throw ExitCode(1) }
    }

    static func segmentNames(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(SegmentName.suffix) }.sorted()
    }

    /// The next readable entry (`damaged` hears of the damage passed), nil at the end. A newest
    /// segment that ends in bytes that are no entry, past any the other side holds, is an end too,
    /// named in `side.tail`.
    private static func nextEntry(_ reader: JournalReader, written: UInt64?, newest: String, passed: JournalReader.Damage?,
                                  side: inout Side, damaged: inout [JournalReader.Damage]) throws -> JournalEntry? {
        do throws(DAQError) {
            return try reader.nextReadable(written: written) { damaged.append($0) }
        } catch {
            guard error.code == .journalCorrupt, let location = error.location, location.file == newest else { throw error }
            // The damage just passed as written entries, met again: the end, nothing more to say.
            if let recent = damaged.last ?? passed, location.field == "offset \(recent.offset)", newest.hasSuffix("/\(recent.segment)") {
                return nil
            }
            let message = error.message
            side.tail = "\(URL(fileURLWithPath: newest).lastPathComponent) ends in bytes that do not read as an entry "
                + "(\(location.field ?? ""): \(message)): a write cut short by a power loss, or damage; daqlink cuts them when it starts"
            return nil
        }
    }

    /// Reads a journal from its oldest entry on; segments, entries, groups and lost runs are
    /// counted from `countFrom` on (the segments before it are only named in `retired`), layouts
    /// from the start. `groups` names the groups until the first layout entry read. `written`:
    /// entries known to have been written to this journal (the device's that the collector holds),
    /// so damage at the newest segment's end is named as the loss of those entries; unreadable
    /// bytes there beyond them are a tail note.
    static func read(_ directory: String, countFrom: UInt64 = 1, groups: [String] = [], written: UInt64? = nil,
                     meter: inout ReadProgress) throws -> Side {
        var side = Side()
        let digest = SHA256Digest()
        let names = try segmentNames(directory)
        for (index, name) in names.enumerated() {
            // A segment before the one that holds `countFrom` is not compared.
            if index + 1 < names.count, let next = SegmentName.firstSequence(of: names[index + 1]), next <= countFrom {
                side.retired.append(name)
                continue
            }
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)")))
            let own = SHA256Digest()
            bytes.withUnsafeBytes { digest.update($0); own.update($0) }
            side.segments[name] = "\(bytes.count) \(own.finalizeHex())"
        }
        side.sha256 = digest.finalizeHex()
        let reader = try JournalReader(directory: directory, from: names.first.flatMap { SegmentName.firstSequence(of: $0) } ?? 1)
        var groupNames = groups
        // Damaged storage on the device: note what is lost and read on past it.
        let newest = "\(directory)/\(names.last ?? "")"
        var damaged: [JournalReader.Damage] = []
        var passed: JournalReader.Damage?
        while true {
            let entry = try nextEntry(reader, written: written, newest: newest, passed: passed, side: &side, damaged: &damaged)
            passed = damaged.last ?? passed
            for damage in damaged where damage.last >= countFrom {
                side.addLost(max(damage.first, countFrom), through: damage.last,
                             "unreadable: \(damage.segment) offset \(damage.offset): \(damage.defect)")
            }
            damaged.removeAll()
            guard let entry else { break }
            meter.entry(bytes: entry.framed.count)
            if entry.kind == .layout {
                let layout = try entry.payload.withUnsafeBytes { raw in
                    Result { () throws(DAQError) in try MeasurementLayout(decoding: raw, source: directory) }
                }.get()
                side.layouts.append((entry.sequence, layout.groups.map(\.name)))
                groupNames = layout.groups.map(\.name)
            } else if entry.kind == .layoutRepeat {
                // The layout in force, again at a segment's start: it names the groups when
                // retention deleted the layout entry itself.
                let layout = try entry.payload.withUnsafeBytes { raw in
                    Result { () throws(DAQError) in try MeasurementLayout(decoding: raw, source: "\(directory) seq \(entry.sequence)") }
                }.get()
                groupNames = layout.groups.map(\.name)
            }
            guard entry.sequence >= countFrom else { continue }
            side.lastSequence = entry.sequence
            if entry.kind == .lost {
                side.addLost(entry.sequence, through: entry.sequence,
                             "committed as lost (\(String(decoding: entry.payload, as: UTF8.self)))")
                continue
            }
            side.entries += 1
            side.checksums.append((entry.sequence, entry.framed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: $0.count - 4, as: UInt32.self) }))
            if entry.kind == .layout || entry.kind == .layoutRepeat {
                for name in groupNames where !side.order.contains(name) { side.order.append(name) }
            } else if entry.kind == .record, entry.payload.count >= 2 {
                for name in groupNames where !side.order.contains(name) { side.order.append(name) }
                let index = entry.payload.withUnsafeBytes { RecordPayload.groupIndex($0) }
                let name = index >= 0 && index < groupNames.count ? groupNames[index] : "group \(index)"
                var value = side.groups[name] ?? (0, 0)
                value.cycles += 1
                value.bytes += UInt64(entry.payload.count - RecordPayload.headerBytes)
                side.groups[name] = value
            }
        }
        return side
    }
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
