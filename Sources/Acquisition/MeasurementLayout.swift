// The journal's layout entry: which channel groups a measurement records and how their records
// are laid out, so a journal can be dumped or turned into MDF without the experiment file.
import DAQCore

/// The description of one measurement, stored in the journal before its first record.
///
/// Binary, little-endian, versioned (see docs/journal.md, "layout entry"):
/// `u16 version=1 | i64 start ns | str experiment | u16 group count | groups…`;
/// group: `str name | u8 trigger code | i64 period ns | str trigger source | u16 channel count | channels…`;
/// channel: `str name | str unit | u8 storage code | u8 bits | f64 factor | f64 offset | u16 n | n × (i64 key, str text)`;
/// `str` = `u16 byte length | UTF-8`. Version 2 appends the MDF file options
/// (`u8 flags (bit 0 deflate) | u64 split bytes (0 none) | i64 split ns (0 none)`); a layout with
/// default options is still written as version 1, byte for byte as before.
/// Trigger code 3 (bus logging): period 0, trigger source = the bus names joined by ",", no channels.
/// Trigger code 4 (CAN FD bus logging, 64-byte data field): as code 3; it appears only in version 3,
/// which is version 2 (file options always appended) with code 4 allowed, so a reader that does not
/// know FD records refuses the layout by its version. A layout without FD groups is written as before.
public struct MeasurementLayout: Sendable, Hashable {
    public static let version: UInt16 = 1
    public static let versionWithFileOptions: UInt16 = 2
    public static let versionWithFDBusLogging: UInt16 = 3

    /// Time of the measurement start (time base of the source: log time or kernel time).
    public var start: Timestamp
    /// The experiment's name.
    public var experiment: String
    public var groups: [ChannelGroup]
    /// How the measurement's MDF files are cut and stored. Part of the journal's description of
    /// the measurement, so the collector, rebuilding from the journal, writes the same files.
    public var files: MeasurementFiles

    public init(start: Timestamp, experiment: String, groups: [ChannelGroup], files: MeasurementFiles = MeasurementFiles()) {
        self.start = start
        self.experiment = experiment
        self.groups = groups
        self.files = files
    }

    /// The entry's bytes.
    public func encoded() -> [UInt8] {
        var out = LayoutWriter()
        let version = groups.contains(where: \.logsFDFrames) ? Self.versionWithFDBusLogging
            : files == MeasurementFiles() ? Self.version : Self.versionWithFileOptions
        out.u16(version)
        out.i64(start.nanoseconds)
        out.string(experiment)
        out.u16(UInt16(groups.count))
        for group in groups {
            out.string(group.name)
            out.u8(group.trigger.code)
            switch group.trigger {
            case .raster(let period): out.i64(period); out.string("")
            case .message(let name), .signalChange(let name): out.i64(0); out.string(name)
            case .busFrames(let buses, _): out.i64(0); out.string(buses.joined(separator: ","))
            }
            out.u16(UInt16(group.channels.count))
            for channel in group.channels {
                out.string(channel.name)
                out.string(channel.unit)
                out.u8(channel.storage.code)
                out.u8(UInt8(channel.storage.byteCount * 8))
                out.f64(channel.factor)
                out.f64(channel.offset)
                out.u16(UInt16(channel.valueTable.count))
                for entry in channel.valueTable {
                    out.i64(entry.key)
                    out.string(entry.text)
                }
            }
        }
        if version != Self.version {
            out.u8(files.deflate ? 1 : 0)
            out.i64(Int64(files.splitBytes ?? 0))
            out.i64(files.splitNanoseconds ?? 0)
        }
        return out.bytes
    }

    /// Reads a layout entry; throws a malformed-input error naming the byte offset on bad bytes.
    public init(decoding bytes: UnsafeRawBufferPointer, source: String = "layout entry") throws(DAQError) {
        var reader = LayoutReader(bytes: bytes, source: source)
        let version = try reader.u16("version")
        guard (Self.version...Self.versionWithFDBusLogging).contains(version) else {
            throw reader.error("unknown layout version \(version)", field: "version")
        }
        start = Timestamp(nanoseconds: try reader.i64("start"))
        experiment = try reader.string("experiment")
        let groupCount = Int(try reader.u16("group count"))
        var groups: [ChannelGroup] = []
        for _ in 0..<groupCount {
            let name = try reader.string("group name")
            let code = try reader.u8("trigger")
            let period = try reader.i64("period")
            let source = try reader.string("trigger source")
            let trigger: GroupTrigger
            switch code {
            case 0:
                guard period > 0 else { throw reader.error("raster period must be positive", field: "period") }
                trigger = .raster(periodNanoseconds: period)
            case 1: trigger = .message(source)
            case 2: trigger = .signalChange(source)
            case 3, 4:
                guard code == 3 || version >= Self.versionWithFDBusLogging else {
                    throw reader.error("trigger code 4 (CAN FD bus logging) needs layout version 3, not \(version)", field: "trigger")
                }
                let buses = source.split(separator: ",").map(String.init)
                guard !buses.isEmpty, buses.count < 16 else { throw reader.error("a bus-logging group needs 1…15 buses", field: "trigger source") }
                trigger = .busFrames(buses: buses, fd: code == 4)
            default: throw reader.error("unknown trigger code \(code)", field: "trigger")
            }
            let channelCount = Int(try reader.u16("channel count"))
            var channels: [ChannelSpec] = []
            for _ in 0..<channelCount {
                let channelName = try reader.string("channel name")
                let unit = try reader.string("unit")
                let storageCode = try reader.u8("storage")
                let bits = Int(try reader.u8("bits"))
                let storage: ChannelStorage
                switch (storageCode, bits) {
                case (0, 8), (0, 16), (0, 32), (0, 64): storage = .unsigned(bits: bits)
                case (1, 8), (1, 16), (1, 32), (1, 64): storage = .signed(bits: bits)
                case (2, 32): storage = .float32
                case (3, 64): storage = .float64
                default: throw reader.error("bad storage code \(storageCode) / \(bits) bits", field: "storage")
                }
                let factor = try reader.f64("factor")
                let offset = try reader.f64("offset")
                let tableCount = Int(try reader.u16("value table size"))
                var table: [(key: Int64, text: String)] = []
                for _ in 0..<tableCount {
                    let key = try reader.i64("value table key")
                    table.append((key, try reader.string("value table text")))
                }
                channels.append(ChannelSpec(name: channelName, unit: unit, storage: storage, factor: factor,
                                            offset: offset, valueTable: table))
            }
            if code >= 3, !channels.isEmpty { throw reader.error("a bus-logging group has no channels", field: "channel count") }
            groups.append(ChannelGroup(name: name, trigger: trigger, channels: channels))
        }
        var files = MeasurementFiles()
        if version != Self.version {
            let flags = try reader.u8("file flags")
            guard flags <= 1 else { throw reader.error("unknown file flags \(flags)", field: "file flags") }
            let splitBytes = try reader.i64("split bytes")
            let splitNanoseconds = try reader.i64("split ns")
            guard splitBytes >= 0, splitNanoseconds >= 0 else { throw reader.error("negative split size", field: "split") }
            files = MeasurementFiles(splitBytes: splitBytes == 0 ? nil : Int(splitBytes),
                                     splitNanoseconds: splitNanoseconds == 0 ? nil : splitNanoseconds, deflate: flags & 1 != 0)
        }
        guard reader.atEnd else { throw reader.error("trailing bytes after the layout", field: "length") }
        self.groups = groups
        self.files = files
    }
}

/// How a measurement's MDF files are written (device and collector alike).
public struct MeasurementFiles: Sendable, Hashable {
    /// Start a new file before a record would take the file past this many bytes (uncompressed
    /// record bytes + head); nil: one file.
    public var splitBytes: Int?
    /// Start a new file at every multiple of this much measurement time; nil: no time split.
    public var splitNanoseconds: Int64?
    /// Store records in ##DZ (deflate) blocks.
    public var deflate: Bool

    public init(splitBytes: Int? = nil, splitNanoseconds: Int64? = nil, deflate: Bool = false) {
        self.splitBytes = splitBytes
        self.splitNanoseconds = splitNanoseconds
        self.deflate = deflate
    }
}

private struct LayoutWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func i64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func f64(_ v: Double) { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8.prefix(Int(UInt16.max)))
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }
}

private struct LayoutReader {
    let bytes: UnsafeRawBufferPointer
    let source: String
    var position = 0

    var atEnd: Bool { position == bytes.count }

    func error(_ message: String, field: String) -> DAQError {
        DAQError(.malformedInput, "\(message) (byte \(position))", at: InputLocation(file: source, field: field))
    }

    mutating func take(_ count: Int, _ field: String) throws(DAQError) -> UnsafeRawBufferPointer {
        guard bytes.count - position >= count else { throw error("layout entry ends early", field: field) }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }
    mutating func u8(_ f: String) throws(DAQError) -> UInt8 { try take(1, f)[0] }
    mutating func u16(_ f: String) throws(DAQError) -> UInt16 { UInt16(littleEndian: try take(2, f).loadUnaligned(as: UInt16.self)) }
    mutating func i64(_ f: String) throws(DAQError) -> Int64 { Int64(littleEndian: try take(8, f).loadUnaligned(as: Int64.self)) }
    mutating func f64(_ f: String) throws(DAQError) -> Double {
        Double(bitPattern: UInt64(littleEndian: try take(8, f).loadUnaligned(as: UInt64.self)))
    }
    mutating func string(_ f: String) throws(DAQError) -> String {
        let count = Int(try u16(f))
        let raw = try take(count, f)
        guard let text = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw error("text is not UTF-8", field: f)
        }
        return text
    }
}
