// Frames in, records out: decode each frame with the DBC of its bus, feed the decoded signals to
// the sampler's slots, and let time (the frame's, or the live clock's) drive the raster ticks.
// Pure: no clock, no I/O; the runtime or the replay loop feeds it.
import DAQCore
import DBC
import Acquisition

/// Counters of what the pipeline saw.
public struct PipelineCounters: Sendable, Hashable {
    public var frames: UInt64 = 0
    /// Frames a DBC of their bus decoded.
    public var decoded: UInt64 = 0
    /// Data frames whose id no DBC of their bus knows (counted, not fatal).
    public var unknown: UInt64 = 0
    /// Frames from buses no DBC decodes.
    public var otherBus: UInt64 = 0
    /// RTR and error frames.
    public var nonData: UInt64 = 0
    /// Frames older than the last one seen (kept, but they cannot move time backwards).
    public var outOfOrder: UInt64 = 0
    /// Gaps of more than `AcquisitionPipeline.longestRasterGap` between consecutive frames (a log
    /// recorded across a clock step), and their length in all: their raster ticks are skipped.
    public var timeJumps: UInt64 = 0
    public var skippedNanoseconds: Int64 = 0
}

/// The acquisition data path for one experiment.
public struct AcquisitionPipeline: Sendable {
    public let binding: ExperimentBinding
    public private(set) var sampler: Sampler
    public private(set) var counters = PipelineCounters()
    private var values: [SignalValues]
    /// Per decoder, per message: the (signal index, slot) pairs the experiment uses.
    private var feeds: [[[(signal: Int, slot: Int)]]]
    /// Per bus name: the decoders that read it (cached on first sight of a bus).
    private var busDecoders: [String: [Int]] = [:]
    /// The last bus seen and its decoders: consecutive frames mostly share a bus, and comparing a
    /// short string is cheaper than hashing it.
    private var lastBus: (name: String, decoders: [Int]) = ("", [])
    /// Per decoder, per message: whether it triggers an event group.
    private let triggering: [[Bool]]
    private let decoders: [DBCDecoder]
    private let logsBusFrames: Bool
    private var latest: Timestamp?

    public init(_ binding: ExperimentBinding) {
        self.binding = binding
        sampler = Sampler(groups: binding.groups, messageKeys: binding.messageKeys)
        values = binding.decoders.map { $0.decoder.makeValues() }
        var feeds: [[[(signal: Int, slot: Int)]]] = []
        for entry in binding.decoders {
            feeds.append(entry.decoder.database.messages.map { _ in [] })
        }
        // Every channel name (and change trigger) resolves to slots; wire each to its DBC signal.
        var names = Set(binding.groups.flatMap { $0.channels.map(\.name) })
        for group in binding.groups { if case .signalChange(let name) = group.trigger { names.insert(name) } }
        for name in names.sorted() {
            let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
            for (d, entry) in binding.decoders.enumerated() {
                guard let m = entry.decoder.database.messages.firstIndex(where: { $0.name == parts[0] }),
                      let s = entry.decoder.database.messages[m].signalIndex(named: parts[1]) else { continue }
                for (slot, _) in sampler.slots(for: name) { feeds[d][m].append((s, slot)) }
                break
            }
        }
        self.feeds = feeds
        decoders = binding.decoders.map(\.decoder)
        logsBusFrames = sampler.logsBusFrames
        let sampler = self.sampler
        triggering = binding.decoders.indices.map { d in
            binding.decoders[d].decoder.database.messages.indices.map { sampler.triggers(message: d << 24 | $0) }
        }
    }

    /// The layout entry for the journal, once the measurement has started.
    public var layout: MeasurementLayout? {
        sampler.start.map { MeasurementLayout(start: $0, experiment: binding.name, groups: binding.groups, files: binding.files) }
    }

    /// Longest gap between consecutive frames whose raster ticks are recorded (sample and hold);
    /// the ticks of a longer one are skipped and counted.
    public static let longestRasterGap: Int64 = 60_000_000_000

    /// Feeds one frame: emits the raster records due before it, then its event records.
    public mutating func ingest(_ frame: CANFrame, into out: inout RecordBuffer) {
        counters.frames += 1
        var time = frame.timestamp
        if let latest, time < latest {
            counters.outOfOrder += 1
            time = latest
        }
        if let latest {
            // A step of decades (a log begun at 1970 before NTP set the clock) asked for a record
            // per tick of the gap: billions, in one buffer, until memory ran out.
            let (gap, overflow) = time.nanoseconds.subtractingReportingOverflow(latest.nanoseconds)
            if overflow || gap > Self.longestRasterGap {
                counters.timeJumps += 1
                counters.skippedNanoseconds = counters.skippedNanoseconds.addingReportingOverflow(overflow ? .max : gap).partialValue
                sampler.skipTicks(before: time)
            }
        }
        latest = time
        sampler.advance(to: time, into: &out)
        guard frame.kind == .data else {
            counters.nonData += 1
            return
        }
        if logsBusFrames { sampler.logFrame(frame, at: time, into: &out) }
        if frame.interface != lastBus.name {
            lastBus = (frame.interface, busDecoders[frame.interface] ?? resolveBus(frame.interface))
        }
        if lastBus.decoders.isEmpty {
            counters.otherBus += 1
            return
        }
        for d in lastBus.decoders {
            guard let m = decoders[d].decode(frame, into: &values[d]) else { continue }
            counters.decoded += 1
            for feed in feeds[d][m] where values[d].isPresent[feed.signal] {
                sampler.update(slot: feed.slot, raw: values[d].signedRaw(feed.signal), physical: values[d].physical[feed.signal])
            }
            sampler.frameApplied(message: triggering[d][m] ? d << 24 | m : nil, at: time, into: &out)
            return
        }
        counters.unknown += 1
    }

    /// Emits the raster records due strictly before `time` (live mode: the tick timer's deadline + 1).
    public mutating func advance(to time: Timestamp, into out: inout RecordBuffer) {
        sampler.advance(to: time, into: &out)
    }

    private mutating func resolveBus(_ bus: String) -> [Int] {
        let matching = binding.decoders.indices.filter { binding.decoders[$0].buses.isEmpty || binding.decoders[$0].buses.contains(bus) }
        busDecoders[bus] = matching
        return matching
    }
}
