// Binds an experiment's channel names to DBC signals: which decoder reads which bus, which
// decoded signal feeds which sampler slot, and the channel groups (units, scaling, value tables)
// the sampler and the MDF files describe. Errors name the experiment file, line and field.
import DAQCore
import DBC
import Acquisition

/// An experiment resolved against its DBC files, ready to build a pipeline.
public struct ExperimentBinding: Sendable {
    /// One DBC and the buses it decodes (empty = every bus).
    public struct Decoder: Sendable {
        public var decoder: DBCDecoder
        public var buses: [String]
        /// The DBC file's name, for messages.
        public var file: String
    }

    public let name: String
    public let decoders: [Decoder]
    /// The channel groups with DBC metadata filled in.
    public let groups: [ChannelGroup]
    /// Message keys for `.message` triggers: `decoderIndex << 24 | messageIndex`.
    public let messageKeys: [String: Int]
    /// How the MDF files are split and stored (the experiment's `[mdf]` table).
    public let files: MeasurementFiles

    /// Resolves `experiment` (from `file`) against `dbcs` (parsed DBC files, in the experiment's order).
    public init(_ experiment: ExperimentFile, file: String, dbcs: [(database: DBCDatabase, file: String)]) throws(DAQError) {
        precondition(dbcs.count == experiment.dbcs.count, "one parsed DBC per [[dbc]] entry")
        name = experiment.name
        decoders = zip(dbcs, experiment.dbcs).map { Decoder(decoder: DBCDecoder($0.database), buses: $1.buses, file: $0.file) }

        func find(_ message: String, line: Int?, field: String) throws(DAQError) -> (decoder: Int, message: Int) {
            for (d, entry) in dbcs.enumerated() {
                if let m = entry.database.messages.firstIndex(where: { $0.name == message }) { return (d, m) }
            }
            let files = dbcs.map(\.file).joined(separator: ", ")
            throw .malformed("no message '\(message)' in \(files)", file: file, line: line, field: field)
        }

        var keys: [String: Int] = [:]
        var groups: [ChannelGroup] = []
        for group in experiment.groups {
            var channels: [ChannelSpec] = []
            var stored: Set<String> = []
            for channel in group.channels {
                let (d, m) = try find(channel.message, line: channel.line, field: "group.channels")
                let message = dbcs[d].database.messages[m]
                guard let signal = message.signal(named: channel.signal) else {
                    throw .malformed("message '\(message.name)' has no signal '\(channel.signal)'", file: file,
                                     line: channel.line, field: "group.channels")
                }
                // A signal may be listed once per storage in a group (raw and physical, say: the MDF
                // file names the later ones with their storage, `MDFWriter.channelNames`); twice with
                // one storage is a slip.
                guard stored.insert("\(channel.name):\(channel.storage.rawValue)").inserted else {
                    throw .malformed("'\(channel.name)' is listed twice in group '\(group.name)' with the same storage",
                                     file: file, line: channel.line, field: "group.channels")
                }
                channels.append(Self.spec(channel: channel, signal: signal))
            }
            let trigger: GroupTrigger
            switch group.trigger {
            case .raster(let ms):
                trigger = .raster(periodNanoseconds: Int64((ms * 1_000_000).rounded()))
            case .message(let name):
                let (d, m) = try find(name, line: group.line, field: "group.on_message")
                keys[name] = d << 24 | m
                trigger = .message(name)
            case .signalChange(let reference):
                let parts = reference.split(separator: ".", maxSplits: 1).map(String.init)
                let (d, m) = try find(parts[0], line: group.line, field: "group.on_change")
                guard dbcs[d].database.messages[m].signal(named: parts[1]) != nil else {
                    throw .malformed("message '\(parts[0])' has no signal '\(parts[1])'", file: file, line: group.line,
                                     field: "group.on_change")
                }
                trigger = .signalChange(reference)
            case .busFrames(let buses, let fd):
                trigger = .busFrames(buses: buses, fd: fd)
            }
            groups.append(ChannelGroup(name: group.name, trigger: trigger, channels: channels))
        }
        self.groups = groups
        messageKeys = keys
        files = experiment.files
    }

    /// How a DBC signal is stored: raw integers keep the DBC scaling as an MDF conversion; float
    /// signals and physical storage keep the physical value.
    static func spec(channel: ExperimentGroup.Channel, signal: DBCSignal) -> ChannelSpec {
        let table = signal.valueTable.sorted { $0.key < $1.key }.map { (key: $0.key, text: $0.value) }
        switch (channel.storage, signal.valueType) {
        case (.raw, .integer):
            return ChannelSpec(name: channel.name, unit: signal.unit,
                               storage: .raw(length: signal.length, signed: signal.isSigned),
                               factor: signal.factor, offset: signal.offset, valueTable: table)
        case (.float32, _):
            return ChannelSpec(name: channel.name, unit: signal.unit, storage: .float32,
                               valueTable: signal.factor == 1 && signal.offset == 0 ? table : [])
        case (.raw, .float32), (.raw, .float64), (.float64, _):
            return ChannelSpec(name: channel.name, unit: signal.unit, storage: .float64,
                               valueTable: signal.factor == 1 && signal.offset == 0 ? table : [])
        }
    }
}
