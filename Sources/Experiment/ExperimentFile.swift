// The experiment file (TOML): which DBC files decode which buses, and the channel groups to
// record. Parsing only; binding the channel names to DBC signals is ExperimentBinding's job.
import Acquisition
import DAQCore
import TOMLKit

/// A channel group as written in the experiment file, before binding to a DBC.
public struct ExperimentGroup: Sendable, Hashable {
    public enum Trigger: Sendable, Hashable {
        case raster(milliseconds: Double)
        case message(String)
        case signalChange(String)
        /// `kind = "bus"`: every data frame of these buses, raw (MDF bus logging); `fd = true`
        /// gives CAN FD records (64 data bytes) that log frames of any length.
        case busFrames([String], fd: Bool = false)
    }

    /// How a channel is stored, as the file says (`raw` is the DBC raw integer).
    public enum Storage: String, Sendable, Hashable, CaseIterable {
        case raw, float32, float64
    }

    public struct Channel: Sendable, Hashable {
        public var message: String
        public var signal: String
        public var storage: Storage
        /// Line of the file where the channel is named (for binding errors).
        public var line: Int?
        public var name: String { "\(message).\(signal)" }
    }

    public var name: String
    public var trigger: Trigger
    public var channels: [Channel]
    public var line: Int?
}

/// A DBC file and the buses it decodes.
public struct ExperimentDBC: Sendable, Hashable {
    /// Path as written (relative paths are relative to the experiment file).
    public var path: String
    /// Buses whose frames this DBC decodes; empty means every bus.
    public var buses: [String]
}

/// A parsed experiment file.
public struct ExperimentFile: Sendable, Hashable {
    public var name: String
    public var dbcs: [ExperimentDBC]
    public var groups: [ExperimentGroup]
    /// The `[mdf]` table: how MDF files are split and stored.
    public var files = MeasurementFiles()

    /// Adds a raw bus-logging group ("CAN frames") for every bus the DBC entries name
    /// (`daqlink run --mdf-bus-logging`); throws when no entry names its buses. With `fd`
    /// (`--mdf-bus-logging-fd`) the group has CAN FD records, and the file's own bus-logging
    /// groups, if it has any, become CAN FD groups instead.
    public mutating func addBusLogging(file: String, fd: Bool = false) throws(DAQError) {
        var hasBusGroups = false
        for index in groups.indices {
            guard case .busFrames(let buses, let groupFD) = groups[index].trigger else { continue }
            hasBusGroups = true
            groups[index].trigger = .busFrames(buses, fd: groupFD || fd)
        }
        guard !hasBusGroups else { return }
        var buses: [String] = []
        for dbc in dbcs { for bus in dbc.buses where !buses.contains(bus) { buses.append(bus) } }
        guard !buses.isEmpty, buses.count < 16 else {
            throw .malformed("bus logging needs the buses named: add buses = [\"can0\", …] to a [[dbc]] entry, "
                             + "or declare a [[group]] with kind = \"bus\"", file: file, line: nil, field: "dbc.buses")
        }
        if let clash = groups.first(where: { $0.name == "CAN frames" }) {
            throw .malformed("--mdf-bus-logging adds a group named 'CAN frames', and this file has one",
                             file: file, line: clash.line, field: "group.name")
        }
        groups.append(ExperimentGroup(name: "CAN frames", trigger: .busFrames(buses, fd: fd), channels: [], line: nil))
    }

    /// Whether `needle` occurs in `haystack`.
    private static func bytes(_ haystack: [UInt8], contain needle: [UInt8]) -> Bool {
        guard let first = needle.first else { return true }
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == first
            && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return true
        }
        return false
    }

    /// The rasters a time-raster group may have, in milliseconds.
    public static let rasterRange = 0.1...3_600_000.0

    /// Parses the text of an experiment file; errors name the file, the line and the field.
    public init(text: String, file: String) throws(DAQError) {
        // Byte-wise: Foundation's String.contains made this search 25 ms of every daqlink start.
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
        func line(of needle: String, after start: Int = 0) -> Int? {
            let pattern = Array(needle.utf8)
            for index in max(0, start)..<lines.count where Self.bytes(lines[index], contain: pattern) { return index + 1 }
            return nil
        }
        func fail(_ message: String, field: String, near needle: String? = nil, after start: Int = 0) -> DAQError {
            .malformed(message, file: file, line: needle.flatMap { line(of: $0, after: start) }, field: field)
        }

        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw .malformed("not valid TOML: \(error.description)", file: file, line: error.source.begin.line,
                             field: "column \(error.source.begin.column)")
        } catch {
            throw .malformed("not valid TOML: \(error)", file: file, line: nil)
        }

        let known: Set<String> = ["name", "dbc", "group", "mdf"]
        for key in table.keys where !known.contains(key) {
            throw fail("unknown key '\(key)' (expected name, [[dbc]], [[group]] or [mdf])", field: key, near: key)
        }
        if let mdf = table["mdf"] {
            files = try Self.files(mdf, fail: { message, field in fail(message, field: field, near: field.replacingOccurrences(of: "mdf.", with: "") + " =") })
        }
        name = table["name"]?.string ?? "experiment"

        guard let dbcArray = table["dbc"]?.array, !dbcArray.isEmpty else {
            throw fail("no [[dbc]] table: name at least one DBC file", field: "dbc")
        }
        var dbcs: [ExperimentDBC] = []
        for (index, value) in dbcArray.enumerated() {
            guard let entry = value.table, let path = entry["file"]?.string else {
                throw fail("[[dbc]] #\(index + 1) needs file = \"path.dbc\"", field: "dbc.file", near: "[[dbc]]")
            }
            var buses: [String] = []
            if let busValue = entry["buses"] {
                guard let array = busValue.array else {
                    throw fail("buses must be a list of interface names", field: "dbc.buses", near: "buses")
                }
                for bus in array {
                    guard let name = bus.string else {
                        throw fail("buses must be a list of interface names", field: "dbc.buses", near: "buses")
                    }
                    buses.append(name)
                }
            }
            dbcs.append(ExperimentDBC(path: path, buses: buses))
        }
        self.dbcs = dbcs

        guard let groupArray = table["group"]?.array, !groupArray.isEmpty else {
            throw fail("no [[group]] table: declare at least one channel group", field: "group")
        }
        var groups: [ExperimentGroup] = []
        var searchFrom = 0
        for (index, value) in groupArray.enumerated() {
            let groupLine = line(of: "[[group]]", after: searchFrom)
            searchFrom = groupLine ?? searchFrom
            guard let entry = value.table else {
                throw .malformed("[[group]] #\(index + 1) is not a table", file: file, line: groupLine, field: "group")
            }
            func groupError(_ message: String, field: String, near needle: String? = nil) -> DAQError {
                .malformed(message, file: file,
                           line: needle.flatMap { line(of: $0, after: searchFrom - 1) } ?? groupLine, field: field)
            }
            for key in entry.keys where !["name", "raster_ms", "on_message", "on_change", "storage", "channels", "kind", "buses", "fd"].contains(key) {
                throw groupError("unknown key '\(key)' in [[group]] (expected name, kind, buses, fd, raster_ms, on_message, on_change, storage, channels)",
                                 field: "group.\(key)", near: key)
            }
            guard let name = entry["name"]?.string, !name.isEmpty else {
                throw groupError("[[group]] #\(index + 1) needs a name", field: "group.name")
            }
            if let kind = entry["kind"] {
                guard kind.string == "bus" else {
                    throw groupError("kind must be \"bus\" (a raw bus-logging group) or left out", field: "group.kind", near: "kind")
                }
                for key in ["raster_ms", "on_message", "on_change", "storage", "channels"] where entry[key] != nil {
                    throw groupError("a bus-logging group (kind = \"bus\") takes no \(key)", field: "group.\(key)", near: key)
                }
                guard let array = entry["buses"]?.array, !array.isEmpty, array.count < 16 else {
                    throw groupError("a bus-logging group needs buses = [\"can0\", …] (1 to 15 buses)", field: "group.buses", near: "buses")
                }
                var buses: [String] = []
                for bus in array {
                    guard let bus = bus.string, !bus.isEmpty, !bus.contains(","), !buses.contains(bus) else {
                        throw groupError("buses must be distinct interface names", field: "group.buses", near: "buses")
                    }
                    buses.append(bus)
                }
                var fd = false
                if let value = entry["fd"] {
                    guard let flag = value.bool else {
                        throw groupError("fd must be true (CAN FD records, 64 data bytes) or false", field: "group.fd", near: "fd")
                    }
                    fd = flag
                }
                groups.append(ExperimentGroup(name: name, trigger: .busFrames(buses, fd: fd), channels: [], line: groupLine))
                continue
            }
            for key in ["buses", "fd"] where entry[key] != nil {
                throw groupError("\(key) belongs to a bus-logging group (kind = \"bus\")", field: "group.\(key)", near: key)
            }
            let triggers = ["raster_ms", "on_message", "on_change"].filter { entry[$0] != nil }
            guard triggers.count == 1 else {
                throw groupError("group '\(name)' needs exactly one trigger: raster_ms, on_message or on_change",
                                 field: "group.trigger")
            }
            let trigger: ExperimentGroup.Trigger
            switch triggers[0] {
            case "raster_ms":
                let ms = entry["raster_ms"]?.double ?? entry["raster_ms"]?.int.map(Double.init)
                guard let ms, ms > 0, ms.isFinite else {
                    throw groupError("raster_ms must be a positive number of milliseconds", field: "group.raster_ms",
                                     near: "raster_ms")
                }
                // Below 0.1 ms a raster samples CAN signals (a frame takes ~0.1 ms even at 1 Mbit/s)
                // far faster than they can change: a typo (0.001 for 1) would fill the journal.
                guard ms >= Self.rasterRange.lowerBound, ms <= Self.rasterRange.upperBound else {
                    throw groupError("raster_ms must be \(Self.rasterRange.lowerBound)…\(Int(Self.rasterRange.upperBound)) ms (0.1 ms to an hour), "
                                     + "not \(ms)", field: "group.raster_ms", near: "raster_ms")
                }
                trigger = .raster(milliseconds: ms)
            case "on_message":
                guard let message = entry["on_message"]?.string, !message.isEmpty else {
                    throw groupError("on_message must name a DBC message", field: "group.on_message", near: "on_message")
                }
                trigger = .message(message)
            default:
                // Both names present: "M." and "." trapped binding the experiment.
                guard let signal = entry["on_change"]?.string,
                      signal.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).count == 2,
                      !signal.hasPrefix("."), !signal.hasSuffix(".") else {
                    throw groupError("on_change must name a signal as Message.Signal", field: "group.on_change",
                                     near: "on_change")
                }
                trigger = .signalChange(signal)
            }
            var defaultStorage = ExperimentGroup.Storage.raw
            if let storageValue = entry["storage"] {
                guard let text = storageValue.string, let storage = ExperimentGroup.Storage(rawValue: text) else {
                    throw groupError("storage must be raw, float32 or float64", field: "group.storage", near: "storage")
                }
                defaultStorage = storage
            }
            guard let channelArray = entry["channels"]?.array, !channelArray.isEmpty else {
                throw groupError("group '\(name)' needs channels = [\"Message.Signal\", …]", field: "group.channels")
            }
            var channels: [ExperimentGroup.Channel] = []
            for channelValue in channelArray {
                guard let text = channelValue.string else {
                    throw groupError("channels must be strings \"Message.Signal[:storage]\"", field: "group.channels",
                                     near: "channels")
                }
                let channelLine = line(of: "\"\(text)\"", after: searchFrom - 1)
                var storage = defaultStorage
                var reference = Substring(text)
                if let colon = text.lastIndex(of: ":") {
                    guard let explicit = ExperimentGroup.Storage(rawValue: String(text[text.index(after: colon)...])) else {
                        throw .malformed("channel '\(text)': storage after ':' must be raw, float32 or float64",
                                         file: file, line: channelLine, field: "group.channels")
                    }
                    storage = explicit
                    reference = text[..<colon]
                }
                let parts = reference.split(separator: ".", maxSplits: 1)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw .malformed("channel '\(text)' must be written Message.Signal", file: file, line: channelLine,
                                     field: "group.channels")
                }
                channels.append(ExperimentGroup.Channel(message: String(parts[0]), signal: String(parts[1]),
                                                        storage: storage, line: channelLine))
            }
            groups.append(ExperimentGroup(name: name, trigger: trigger, channels: channels, line: groupLine))
        }
        var seen: Set<String> = []
        for group in groups where !seen.insert(group.name).inserted {
            throw .malformed("a second group is named '\(group.name)'", file: file, line: group.line, field: "group.name")
        }
        self.groups = groups
    }

    /// The `[mdf]` table: `split_bytes`, `split_seconds`, `deflate`.
    private static func files(_ value: TOMLValueConvertible, fail: (String, String) -> DAQError) throws(DAQError) -> MeasurementFiles {
        guard let table = value.table else { throw fail("[mdf] must be a table", "mdf") }
        var files = MeasurementFiles()
        for key in table.keys where !["split_bytes", "split_seconds", "deflate"].contains(key) {
            throw fail("unknown key '\(key)' in [mdf] (expected split_bytes, split_seconds, deflate)", "mdf.\(key)")
        }
        if let bytes = table["split_bytes"] {
            guard let count = bytes.int, count >= 4096 else { throw fail("split_bytes must be an integer ≥ 4096", "mdf.split_bytes") }
            files.splitBytes = count
        }
        if let seconds = table["split_seconds"] {
            // Past 1e9 s (31 years) the nanoseconds trapped, at every start of an experiment sent over the air.
            guard let value = seconds.double ?? seconds.int.map(Double.init), value >= 0.001, value <= 1e9 else {
                throw fail("split_seconds must be a number 0.001…1e9 (31 years)", "mdf.split_seconds")
            }
            files.splitNanoseconds = Int64((value * 1e9).rounded())
        }
        if let deflate = table["deflate"] {
            guard let flag = deflate.bool else { throw fail("deflate must be true or false", "mdf.deflate") }
            files.deflate = flag
        }
        return files
    }
}
