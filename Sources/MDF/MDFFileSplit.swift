// Where a measurement's MDF files are cut: decided from the record stream alone (record sizes and
// record times), so the device and the collector, fed the same journal records, cut at the same
// records and write the same files. Pure.
import Acquisition

/// Decides, record by record, whether the record starts a new file.
///
/// Rules (`MeasurementFiles`): a file always holds at least one record. With `splitBytes`, a new
/// file starts before a record that would take the file's head + record bytes (uncompressed)
/// past the limit. With `splitNanoseconds` = S, a new file starts at the first record whose time
/// (seconds since the measurement start, the record's time master) lies in a later window
/// [k·S, (k+1)·S) than the file's first record. `rollOver()` starts one on demand (a deflate
/// stream whose data list is full).
public struct MDFFileSplit: Sendable {
    public let files: MeasurementFiles
    private let headBytes: Int
    /// Records and bytes (head + records) of the current file.
    public private(set) var records = 0
    private var bytes: Int
    private var window: Int64 = 0
    /// 1-based number of the current file.
    public private(set) var part = 1

    public init(files: MeasurementFiles, headBytes: Int) {
        self.files = files
        self.headBytes = headBytes
        bytes = headBytes
    }

    /// Whether the record `payload` (a journal record payload) starts a new file; counts it.
    public mutating func startsNewFile(_ payload: UnsafeRawBufferPointer) -> Bool {
        var newFile = false
        if records > 0, let limit = files.splitBytes, bytes + payload.count > limit { newFile = true }
        var recordWindow = window
        if let period = files.splitNanoseconds {
            let seconds = Double(bitPattern: payload.loadUnaligned(fromByteOffset: RecordPayload.headerBytes, as: UInt64.self).littleEndian)
            let nanoseconds = seconds.isFinite ? Int64((seconds * 1e9).rounded()) : 0
            recordWindow = max(window, nanoseconds >= 0 ? nanoseconds / period : 0)
            if records > 0, recordWindow > window { newFile = true }
        }
        if newFile { rollOver() }
        window = recordWindow
        records += 1
        bytes += payload.count
        return newFile
    }

    /// Starts a new file before the next record.
    public mutating func rollOver() {
        part += 1
        records = 0
        bytes = headBytes
    }

    /// The file name of `part` for a measurement named `name`: `name.mf4` for the first,
    /// `name_0002.mf4` and on for the next (so a sorted listing is in recording order).
    public static func fileName(_ name: String, part: Int) -> String {
        guard part > 1 else { return name + ".mf4" }
        let digits = String(part)
        return name + "_" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits + ".mf4"
    }
}
