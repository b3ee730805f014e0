// A measurement's MDF4 files, on the device and at the collector alike: the streaming layout from
// MDF.MDFStream appended as records arrive (so a power cut leaves a file asammdf still opens with
// every complete record — or, with deflate, every complete block), finalized in place on clean
// close, and cut into several files where MDF.MDFFileSplit says (the layout's file options). The
// journal stays the durable truth; these files are the calibration engineer's view of it,
// written from the same record bytes.
import Acquisition
import DAQCore
import MDF
#if canImport(Glibc)
import Glibc
#endif

/// One measurement's streaming MDF files (one, or several when split).
public final class MDFRecording {
    /// The file being written.
    public private(set) var path: String
    /// Every file of the measurement so far, in order.
    public private(set) var paths: [String] = []
    private let directory: String
    private let name: String
    private let layout: MeasurementLayout
    /// What every record changes, in one value: the runtime checks each access to a class's
    /// stored property for exclusivity, so a record costs one such access instead of three.
    private var queue: RecordQueue
    private var fd: Int32 = -1

    /// The current file's stream, where the split rules stand, and the bytes not yet written.
    private struct RecordQueue {
        var stream: MDFStream
        var split: MDFFileSplit
        var pending: [UInt8] = []

        enum Outcome { case queued, fileFull, startsNewFile }

        /// Counts `payload` for the split rules and queues it, unless it starts a new file.
        mutating func take(_ payload: UnsafeRawBufferPointer) -> Outcome {
            split.startsNewFile(payload) ? .startsNewFile : put(payload)
        }

        /// Queues `payload` in the current file.
        mutating func put(_ payload: UnsafeRawBufferPointer) -> Outcome {
            stream.append(payload, into: &pending)
            guard stream.isFull else { return .queued }
            split.rollOver()
            return .fileFull
        }

        /// Queues the end of the current file; returns the patches to apply once it is written.
        mutating func finish() -> [(offset: Int, bytes: [UInt8])] {
            stream.finish(into: &pending)
        }
    }

    /// Creates `directory/<name>.mf4` for `layout` and writes its head.
    public init(directory: String, name: String, layout: MeasurementLayout) throws(DAQError) {
        _ = mkdir(directory, 0o755)
        self.directory = directory
        self.name = name
        self.layout = layout
        let stream = Self.stream(layout)
        queue = RecordQueue(stream: stream, split: MDFFileSplit(files: layout.files, headBytes: stream.head.count))
        path = ""
        try open(part: 1)
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Renames the files an earlier recording named `name` left in `directory` (another journal
    /// started again at the same sequence number: a new card, `--epoch`) to
    /// `<file>.before-<tag>.mf4`, so a new measurement of that name does not write over them.
    /// Returns the new paths.
    public static func setAside(directory: String, name: String, tag: String) throws(DAQError) -> [String] {
        var moved: [String] = []
        var part = 1
        while true {
            let file = MDFFileSplit.fileName(name, part: part)
            let path = "\(directory)/\(file)"
            guard access(path, F_OK) == 0 else { break }
            let target = "\(directory)/\(file.dropLast(".mf4".count)).before-\(tag).mf4"
            guard rename(path, target) == 0 else {
                throw DAQError(.io, "cannot set aside an MDF file of the same name: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            moved.append(target)
            part += 1
        }
        return moved
    }

    private static func stream(_ layout: MeasurementLayout) -> MDFStream {
        MDFStream(layout: layout, deflate: layout.files.deflate
                  ? MDFStream.Deflate(compress: { MDFFiles.Deflate.compress($0) }) : nil)
    }

    private func open(part: Int) throws(DAQError) {
        path = "\(directory)/\(MDFFileSplit.fileName(name, part: part))"
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DAQError(.io, "cannot create the MDF file: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
        paths.append(path)
        queue.pending = queue.stream.head
        try flush()
    }

    /// Queues one record payload (`u16 record id` + MDF record): the bytes an unsorted MDF data
    /// group holds verbatim. Finishes the current file first when the split rules say so.
    public func append(_ payload: UnsafeRawBufferPointer) throws(DAQError) {
        guard fits(payload) else {
            throw DAQError(.malformedInput, "a record of \(payload.count) bytes with record id \(payload.count >= 2 ? RecordPayload.groupIndex(payload) + 1 : 0) "
                           + "is not one of this measurement's", at: InputLocation(file: path))
        }
        var outcome = queue.take(payload)
        if outcome == .startsNewFile {
            try nextFile()
            outcome = queue.put(payload)
        }
        if outcome == .fileFull { try nextFile() }
    }

    /// Whether `payload` is a record of this measurement (`MDFStream.fits`).
    public func fits(_ payload: UnsafeRawBufferPointer) -> Bool { queue.stream.fits(payload) }

    /// A record payload's record id and time master (seconds since the measurement start):
    /// `u16 id | f64 time | …`.
    public static func idAndTime(of payload: UnsafeRawBufferPointer) -> (id: UInt16, time: Double) {
        guard payload.count >= 10 else { return (0, 0) }
        var bits: UInt64 = 0
        for index in 0..<8 { bits |= UInt64(payload[2 + index]) << (8 * UInt64(index)) }
        return (UInt16(payload[0]) | UInt16(payload[1]) << 8, Double(bitPattern: bits))
    }

    private func nextFile() throws(DAQError) {
        try finishFile()
        queue.stream = Self.stream(layout)
        try open(part: queue.split.part)
    }

    /// Bytes queued and not yet written (`flush`).
    public var unwrittenBytes: Int { queue.pending.count }

    /// Writes what is queued (called at each journal commit, so the file trails the journal closely).
    public func flush() throws(DAQError) {
        var offset = 0
        let count = queue.pending.count
        while offset < count {
            let written = queue.pending.withUnsafeBytes { write(fd, $0.baseAddress! + offset, count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw DAQError(.io, "MDF write failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            offset += written
        }
        queue.pending.removeAll(keepingCapacity: true)
        try apply(queue.stream.takeSeals())
    }

    /// Writes in-place patches (block ids once their blocks are written; finalization).
    private func apply(_ patches: [(offset: Int, bytes: [UInt8])]) throws(DAQError) {
        for patch in patches {
            let written = patch.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(patch.offset)) }
            guard written == patch.bytes.count else {
                throw DAQError(.io, "MDF patch failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
        }
    }

    /// Writes the rest, patches lengths and cycle counts, marks the file finalized, fsyncs.
    public func finish() throws(DAQError) {
        guard fd >= 0 else { return }
        try finishFile()
    }

    private func finishFile() throws(DAQError) {
        let patches = queue.finish()
        try flush()
        // Everything but the ID block's "MDF     " reaches the medium before it: a power cut
        // between the two otherwise could keep the finalized mark over stale links and counts,
        // and a file that looks finalized is never rebuilt.
        let (marks, rest) = (patches.filter { $0.offset == 0 }, patches.filter { $0.offset != 0 })
        try apply(rest)
        if !marks.isEmpty {
            guard fdatasync(fd) == 0 else {
                throw DAQError(.io, "MDF fsync failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            try apply(marks)
        }
        guard fsync(fd) == 0 else {
            throw DAQError(.io, "MDF fsync failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
        close(fd)
        fd = -1
    }
}


/// Whether a record after entries that could not be read (damaged on the device, `lost` at the
/// collector) is still the open measurement's. Those entries may have held the next
/// measurement's layout entry, and a measurement of the same experiment has records that fit
/// the open file, at times counted from its own start: a group's time going back says so (each
/// group's records are in time order, up to the frames of one bus read before another's; the
/// groups among themselves are not, live, behind a busy bus). From there the records are held
/// out of the file (`suspended`), and the next layout repeat starts another (the collector) or
/// ends the rebuild (the device, whose next measurement has a file of its own).
public struct MeasurementContinuity: Sendable {
    /// How far back a group's time may go and still be taken for the same measurement.
    public static let stepBack = 0.5
    /// Entries were lost since the last layout entry or repeat of the open file's layout.
    public private(set) var afterLoss = false
    /// Records are held out of the file until a layout repeat says which measurement they are.
    public private(set) var suspended = false
    private var latest: [UInt16: Double] = [:]

    public init() {}

    /// Entries could not be read here.
    public mutating func lost() { afterLoss = true }

    /// A layout repeat (`same`: of the open file's own layout): true when the file goes on with
    /// what follows (what came since the loss was its own). False when the repeat is another
    /// layout, or the file is held out: two measurements of one experiment can have the very
    /// same layout (a replay of one log started twice), so a repeat cannot take a held-out file
    /// up again; what follows is a measurement of its own.
    public mutating func layoutRepeated(same: Bool) -> Bool {
        guard same, !suspended else { return false }
        afterLoss = false
        return true
    }

    /// Whether the record `payload` (which fits the file's layout) goes into the file.
    public mutating func admits(_ payload: UnsafeRawBufferPointer) -> Bool {
        guard !suspended else { return false }
        let (id, time) = MDFRecording.idAndTime(of: payload)
        if afterLoss, let previous = latest[id], time < previous - Self.stepBack {
            suspended = true
            return false
        }
        latest[id] = max(latest[id] ?? time, time)
        return true
    }
}
