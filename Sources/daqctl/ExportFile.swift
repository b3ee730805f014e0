// The files `daqctl export` writes while it reads a journal, so that no journal is held in memory:
// a finalized MDF file laid out from its record counts (`MDFWriter.plan`) and filled group by
// group, or a CSV table appended to. Each is opened with its measurement's first record (or at the
// end, when it has none), closed when the measurement ends, written under a temporary name of its
// own in the target directory, and renamed into place once every file is whole.
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
        /// The file's layout, each group's record count, and (once open) its plan.
        case planned(MeasurementLayout, cycles: [UInt64])
        /// Records go to a temporary file of their own, at their group's place (as `planned`'s);
        /// when the measurement ends, they are read back a chunk at a time and deflated.
        case deflated(MeasurementLayout, cycles: [UInt64])
        case csv(ChannelGroup, RecordLayout)
    }

    let path: String
    private let kind: Kind
    /// The temporary file (nil until opened); whether this run created it.
    private var temporary: String?
    private var fd: Int32 = -1
    /// Per group (one for CSV): bytes not written yet, and where they go.
    private var buffers: [[UInt8]]
    private var cursors: [Int] = []
    private var plan: MDFPlan?
    /// A deflated file's records before they are deflated (`open()`), and its name.
    private var recordsFD: Int32 = -1
    private var recordsPath: String?
    private var completed = false
    private var renamed = false
    /// Bytes buffered per group before a write.
    static let bufferBytes = 1 << 20

    private init(path: String, kind: Kind, groups: Int) throws(DAQError) {
        if FileProblem.isDirectory(path) { throw DAQError(.io, "cannot write: \(FileProblem.directory)", at: InputLocation(file: path)) }
        self.path = path
        self.kind = kind
        buffers = Array(repeating: [], count: groups)
    }

    deinit { discard() }

    /// A finalized MDF file of `layout` whose group g will hold `cycles[g]` records.
    static func plannedMDF(path: String, layout: MeasurementLayout, cycles: [UInt64]) throws(DAQError) -> ExportFile {
        try ExportFile(path: path, kind: .planned(layout, cycles: cycles), groups: layout.groups.count)
    }

    /// A finalized MDF file of `layout` with ##DZ blocks whose group g will hold `cycles[g]`
    /// records, written when the measurement ends (`MDFWriter.writeDeflatedFile`).
    static func deflatedMDF(path: String, layout: MeasurementLayout, cycles: [UInt64]) throws(DAQError) -> ExportFile {
        try ExportFile(path: path, kind: .deflated(layout, cycles: cycles), groups: layout.groups.count)
    }

    /// The CSV table of `group` (its header, then a row per record).
    static func csv(path: String, group: ChannelGroup) throws(DAQError) -> ExportFile {
        try ExportFile(path: path, kind: .csv(group, RecordLayout(group)), groups: 1)
    }

    /// Group `group`'s next record (the MDF record bytes, without the record id).
    func append(group: Int, _ record: ArraySlice<UInt8>) throws(DAQError) {
        precondition(!completed, "a record after the file was completed")
        switch kind {
        case .planned, .deflated:
            try open()
            buffers[group] += record
        case .csv(let channelGroup, let layout):
            try open()
            record.withUnsafeBytes { CSVTable.rows(channelGroup, layout: layout, records: $0, into: &buffers[0]) }
        }
        if buffers[group].count >= Self.bufferBytes { try flush(group) }
    }

    /// Writes what is left (a deflated file: its blocks) and closes the file, freeing its
    /// buffers; `expected` names what a count that does not match says changed.
    func complete() throws(DAQError) {
        guard !completed else { return }
        try open()
        switch kind {
        case .planned(let layout, let cycles):
            for group in buffers.indices { try flush(group) }
            try checkCounts(layout: layout, cycles: cycles, starts: plan!.dataOffsets)
        case .deflated(let layout, let cycles):
            for group in buffers.indices { try flush(group) }
            let starts = Self.recordOffsets(layout: layout, cycles: cycles)
            try checkCounts(layout: layout, cycles: cycles, starts: starts)
            try MDFWriter.writeDeflatedFile(layout: layout, cycles: cycles, deflate: { Deflate.compress($0) },
                                            records: { (group, range) throws(DAQError) in
                try readRecords(count: range.count, at: starts[group] + range.lowerBound)
            }, write: { (bytes, offset) throws(DAQError) in try write(bytes[...], at: offset) })
            discardRecords()
        case .csv:
            try flush(0)
        }
        buffers = []
        let result = close(fd)
        fd = -1
        guard result == 0 else { throw Self.failure(path) }
        completed = true
    }

    /// Completes the file and renames it into place.
    func finish() throws(DAQError) {
        try complete()
        guard let temporary, rename(temporary, path) == 0 else { throw Self.failure(path) }
        renamed = true
    }

    /// Removes the temporary file of an export that stopped (only one this run created).
    func discard() {
        if fd >= 0 { close(fd) }
        fd = -1
        if let temporary, !renamed { unlink(temporary) }
        temporary = nil
        discardRecords()
    }

    /// Closes and removes a deflated file's temporary file of records.
    private func discardRecords() {
        if recordsFD >= 0 { close(recordsFD) }
        recordsFD = -1
        if let recordsPath { unlink(recordsPath) }
        recordsPath = nil
    }

    /// Each group's record bytes as counted, against where its writes ended.
    private func checkCounts(layout: MeasurementLayout, cycles: [UInt64], starts: [Int]) throws(DAQError) {
        for (group, end) in cursors.enumerated() {
            let expected = Int(cycles[group]) * RecordLayout(layout.groups[group]).recordBytes
            guard end == starts[group] + expected else {
                throw DAQError(.malformedInput, "group \"\(layout.groups[group].name)\" got \(end - starts[group]) record bytes, "
                               + "not the \(expected) counted: the journal changed while it was exported", at: InputLocation(file: path))
            }
        }
    }

    /// Where each group's records start in a deflated file's temporary file of records: back to back.
    private static func recordOffsets(layout: MeasurementLayout, cycles: [UInt64]) -> [Int] {
        var offsets: [Int] = []
        var next = 0
        for (group, count) in zip(layout.groups, cycles) {
            offsets.append(next)
            next += Int(count) * RecordLayout(group).recordBytes
        }
        return offsets
    }

    /// Creates the temporary file, a name of its own beside the target (never one that exists,
    /// never through a link), and writes what goes before the records.
    private func open() throws(DAQError) {
        guard temporary == nil else { return }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = "\(directory).daqctl-export-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16)).part"
        fd = Glibc.open(name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure(path) }
        temporary = name
        if case .deflated = kind {
            // The records, before they are deflated: `<temporary>.records`, read back at the end.
            let records = name + ".records"
            recordsFD = Glibc.open(records, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard recordsFD >= 0 else { throw Self.failure(path) }
            recordsPath = records
        }
        switch kind {
        case .planned(let layout, let cycles):
            let plan = MDFWriter.plan(layout: layout, cycles: cycles)
            self.plan = plan
            cursors = plan.dataOffsets
            for piece in plan.pieces { try write(piece.bytes[...], at: piece.offset) }
            guard ftruncate(fd, off_t(plan.length)) == 0 else { throw Self.failure(path) }
        case .deflated(let layout, let cycles):
            cursors = Self.recordOffsets(layout: layout, cycles: cycles)
        case .csv(let group, _):
            cursors = [0]
            buffers[0] = CSVTable.header(group)
        }
    }

    private func flush(_ group: Int) throws(DAQError) {
        guard !buffers[group].isEmpty else { return }
        // A deflated file's records go to its file of records, the others' to their place in the file.
        try write(buffers[group][...], at: cursors[group], to: recordsFD >= 0 ? recordsFD : fd)
        cursors[group] += buffers[group].count
        buffers[group].removeAll(keepingCapacity: true)
    }

    private func write(_ bytes: ArraySlice<UInt8>, at offset: Int, to descriptor: Int32? = nil) throws(DAQError) {
        let target = descriptor ?? fd
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { pwrite(target, $0.baseAddress! + done, $0.count - done, off_t(offset + done)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                if written == 0 { errno = EIO }
                throw Self.failure(path)
            }
            done += written
        }
    }

    /// `count` bytes of a deflated file's records from `offset` of its file of records (`write`'s
    /// counterpart).
    private func readRecords(count: Int, at offset: Int) throws(DAQError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { pread(recordsFD, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else {
                if got == 0 { errno = EIO }  // the file of records is shorter than what was written to it
                throw Self.failure(path, doing: "read back the records to deflate")
            }
            done += got
        }
        return bytes
    }

    /// "cannot write: <the system's reason>", naming the output file (not its temporary name).
    private static func failure(_ path: String, doing: String = "write") -> DAQError {
        DAQError(.io, "cannot \(doing): \(String(cString: strerror(errno)))", at: InputLocation(file: path))
    }
}
