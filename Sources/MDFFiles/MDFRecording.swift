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
    private var stream: MDFStream
    private var split: MDFFileSplit
    private var fd: Int32 = -1
    private var pending: [UInt8] = []

    /// Creates `directory/<name>.mf4` for `layout` and writes its head.
    public init(directory: String, name: String, layout: MeasurementLayout) throws(DAQError) {
        _ = mkdir(directory, 0o755)
        self.directory = directory
        self.name = name
        self.layout = layout
        stream = Self.stream(layout)
        split = MDFFileSplit(files: layout.files, headBytes: stream.head.count)
        path = ""
        try open(part: 1)
    }

    deinit { if fd >= 0 { close(fd) } }

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
        pending = stream.head
        try flush()
    }

    /// Queues one record payload (`u16 record id` + MDF record): the bytes an unsorted MDF data
    /// group holds verbatim. Finishes the current file first when the split rules say so.
    public func append(_ payload: UnsafeRawBufferPointer) throws(DAQError) {
        if split.startsNewFile(payload) { try nextFile() }
        stream.append(payload, into: &pending)
        if stream.isFull {
            split.rollOver()
            try nextFile()
        }
    }

    private func nextFile() throws(DAQError) {
        try finishFile()
        stream = Self.stream(layout)
        try open(part: split.part)
    }

    /// Writes what is queued (called when the journal syncs, so the file trails it closely).
    public func flush() throws(DAQError) {
        var offset = 0
        while offset < pending.count {
            let written = pending.withUnsafeBytes { write(fd, $0.baseAddress! + offset, pending.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw DAQError(.io, "MDF write failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
            offset += written
        }
        pending.removeAll(keepingCapacity: true)
        try apply(stream.takeSeals())
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
        let patches = stream.finish(into: &pending)
        try flush()
        try apply(patches)
        guard fsync(fd) == 0 else {
            throw DAQError(.io, "MDF fsync failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
        close(fd)
        fd = -1
    }
}
