// The files `daqctl export` writes while it reads a journal, so that no journal is held in memory:
// a finalized MDF file laid out from its record counts (`MDFWriter.plan`) and filled group by
// group, or a CSV table appended to. Each is written under a temporary name and renamed into
// place once whole.
import Acquisition
import DAQCore
import MDF
import MDFFiles
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

/// Where one group's records go: a file, and the group's index in it.
struct ExportSink {
    let file: ExportFile
    let group: Int
}

final class ExportFile {
    private enum Kind {
        /// The file's plan and each group's bytes to come.
        case planned(MDFPlan, expected: [Int])
        /// Kept until the end, where each group is deflated whole.
        case deflated(MeasurementLayout)
        case csv(ChannelGroup, RecordLayout)
    }

    let path: String
    private let temporary: String
    private let kind: Kind
    private var fd: Int32
    /// Per group (one for CSV): bytes not written yet, and where they go (planned MDF).
    private var buffers: [[UInt8]]
    private var cursors: [Int]
    private var done = false
    /// Bytes buffered per group before a write.
    static let bufferBytes = 1 << 20

    private init(path: String, kind: Kind, groups: Int, cursors: [Int]) throws(DAQError) {
        self.path = path
        temporary = path + ".part"
        self.kind = kind
        buffers = Array(repeating: [], count: groups)
        self.cursors = cursors
        if FileProblem.isDirectory(path) {
            fd = -1
            throw DAQError(.io, "cannot write: \(FileProblem.directory)", at: InputLocation(file: path))
        }
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure(path) }
    }

    deinit { discard() }

    /// A finalized MDF file of `layout` whose group g will hold `cycles[g]` records.
    static func plannedMDF(path: String, layout: MeasurementLayout, cycles: [UInt64]) throws(DAQError) -> ExportFile {
        let plan = MDFWriter.plan(layout: layout, cycles: cycles)
        let expected = layout.groups.indices.map { Int(cycles[$0]) * RecordLayout(layout.groups[$0]).recordBytes }
        let file = try ExportFile(path: path, kind: .planned(plan, expected: expected), groups: layout.groups.count, cursors: plan.dataOffsets)
        for piece in plan.pieces { try file.write(piece.bytes[...], at: piece.offset) }
        guard ftruncate(file.fd, off_t(plan.length)) == 0 else { throw failure(file.path) }
        return file
    }

    /// A finalized MDF file of `layout` with ##DZ blocks, written at the end.
    static func deflatedMDF(path: String, layout: MeasurementLayout) throws(DAQError) -> ExportFile {
        try ExportFile(path: path, kind: .deflated(layout), groups: layout.groups.count, cursors: [])
    }

    /// The CSV table of `group` (its header now, a row per record).
    static func csv(path: String, group: ChannelGroup) throws(DAQError) -> ExportFile {
        let file = try ExportFile(path: path, kind: .csv(group, RecordLayout(group)), groups: 1, cursors: [0])
        file.buffers[0] = CSVTable.header(group)
        return file
    }

    /// Group `group`'s next record (the MDF record bytes, without the record id).
    func append(group: Int, _ record: ArraySlice<UInt8>) throws(DAQError) {
        switch kind {
        case .planned:
            buffers[group] += record
        case .deflated:
            buffers[group] += record
            return
        case .csv(let channelGroup, let layout):
            record.withUnsafeBytes { CSVTable.rows(channelGroup, layout: layout, records: $0, into: &buffers[0]) }
        }
        if buffers[group].count >= Self.bufferBytes { try flush(group) }
    }

    /// Writes what is left and renames the file into place.
    func finish() throws(DAQError) {
        try complete()
        guard close(fd) == 0 else {
            fd = -1
            throw Self.failure(path)
        }
        fd = -1
        guard rename(temporary, path) == 0 else { throw Self.failure(path) }
        done = true
    }

    /// Writes what is left (a deflated file: its blocks, freeing the records it held); no record
    /// may follow.
    func complete() throws(DAQError) {
        guard !completed else { return }
        completed = true
        switch kind {
        case .planned(let plan, let expected):
            for group in buffers.indices { try flush(group) }
            for (group, end) in cursors.enumerated() where end != plan.dataOffsets[group] + expected[group] {
                throw DAQError(.malformedInput, "group \(group + 1) got \(end - plan.dataOffsets[group]) record bytes, not the "
                               + "\(expected[group]) counted: the journal changed while it was exported", at: InputLocation(file: path))
            }
        case .deflated(let layout):
            let bytes = MDFWriter.finalizedFile(layout: layout, records: buffers, deflate: { Deflate.compress($0) })
            buffers = []
            try write(bytes[...], at: 0)
        case .csv:
            try flush(0)
        }
    }

    private var completed = false

    /// Removes the temporary file of an export that stopped.
    func discard() {
        if fd >= 0 { close(fd) }
        fd = -1
        if !done { unlink(temporary) }
        done = true
    }

    private func flush(_ group: Int) throws(DAQError) {
        guard !buffers[group].isEmpty else { return }
        try write(buffers[group][...], at: cursors[group])
        cursors[group] += buffers[group].count
        buffers[group].removeAll(keepingCapacity: true)
    }

    private func write(_ bytes: ArraySlice<UInt8>, at offset: Int) throws(DAQError) {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(offset + done)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw Self.failure(path) }
            done += written
        }
    }

    /// "cannot write: <the system's reason>", naming the output file (not its temporary name).
    private static func failure(_ path: String) -> DAQError {
        DAQError(.io, "cannot write: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
    }
}
