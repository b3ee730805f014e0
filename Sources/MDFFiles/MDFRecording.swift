// A measurement's MDF4 file, on the device and at the collector alike: the streaming layout from MDF.MDFStream
// appended as records arrive (so a power cut leaves a file asammdf still opens with every complete
// record), finalized in place on clean close. The journal stays the durable truth; this file is
// the calibration engineer's view of it, written from the same record bytes.
import Acquisition
import DAQCore
import MDF
#if canImport(Glibc)
import Glibc
#endif

/// One measurement's streaming MDF file.
public final class MDFRecording {
    public let path: String
    private var stream: MDFStream
    private let fd: Int32
    private var pending: [UInt8] = []

    /// Creates `directory/<name>.mf4` for `layout` and writes its head.
    public init(directory: String, name: String, layout: MeasurementLayout) throws(DAQError) {
        _ = mkdir(directory, 0o755)
        path = "\(directory)/\(name).mf4"
        stream = MDFStream(layout: layout)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw DAQError(.io, "cannot create the MDF file: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
        pending = stream.head
        try flush()
    }

    deinit { close(fd) }

    /// Queues one record payload (`u16 record id` + MDF record): the bytes an unsorted MDF data
    /// group holds verbatim.
    public func append(_ payload: UnsafeRawBufferPointer) {
        stream.recorded(group: RecordPayload.groupIndex(payload))
        pending.append(contentsOf: payload)
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
    }

    /// Writes the rest, patches lengths and cycle counts, marks the file finalized, fsyncs.
    public func finish() throws(DAQError) {
        try flush()
        for patch in stream.finalization() {
            let written = patch.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(patch.offset)) }
            guard written == patch.bytes.count else {
                throw DAQError(.io, "MDF finalization failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
            }
        }
        guard fsync(fd) == 0 else {
            throw DAQError(.io, "MDF fsync failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path))
        }
    }
}
