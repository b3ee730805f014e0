// The ECU simulator: every message of a DBC at its cycle time with plausible, changing values,
// generated in time order on a virtual time base. Pure: no clock, no I/O, no global randomness;
// the same (DBC, seed, start, buses, timing) always yields the same frames.
import DAQCore
import DBC

/// Generates the traffic of the ECU(s) a DBC describes, one frame at a time in timestamp order.
///
/// Messages with a `GenMsgCycleTime` are sent at that cycle from a random phase inside the first
/// cycle; the others follow `UncycledTiming`. Frames due at the same instant come in DBC order.
/// Signal values follow a `SignalWaveform` per signal inside the signal's `SignalRange`.
public struct ECUSimulator: Sendable, Sequence, IteratorProtocol {
    /// The database the traffic follows.
    public let database: DBCDatabase
    /// The timestamp of simulated time zero.
    public let start: Timestamp
    private var messages: [MessageModel]
    /// Frames generated so far, per message (indexed like `database.messages`).
    public private(set) var framesPerMessage: [Int]

    /// A simulator for `database`.
    /// - Parameters:
    ///   - seed: chooses phases, waveforms and noise; the only source of variation.
    ///   - start: the timestamp of the first instant (frames are stamped start + virtual time).
    ///   - buses: interface names; message *i* of the DBC goes to `buses[i % buses.count]`, so a
    ///     second bus takes half the messages (and about half the load).
    ///   - uncycled: timing of messages without a cycle time (default: every 100 ms).
    public init(database: DBCDatabase, seed: UInt64, start: Timestamp, buses: [String] = ["can0"],
                uncycled: UncycledTiming = .periodic(microseconds: 100_000)) {
        precondition(!buses.isEmpty, "ECUSimulator needs at least one bus name")
        self.database = database
        self.start = start
        messages = database.messages.enumerated().map { index, message in
            MessageModel(message, index: index, interface: buses[index % buses.count], seed: seed, timing: uncycled)
        }
        framesPerMessage = [Int](repeating: 0, count: database.messages.count)
    }

    /// The timestamp of the next frame (nil when the database has no messages).
    public var nextTimestamp: Timestamp? {
        guard let index = nextIndex() else { return nil }
        return stamp(messages[index].due)
    }

    /// The next frame in time order; nil only when the database has no messages.
    public mutating func next() -> CANFrame? {
        guard let index = nextIndex() else { return nil }
        let due = messages[index].due
        let payload = messages[index].nextPayload(at: Double(due) / 1e6)
        messages[index].advance()
        framesPerMessage[index] += 1
        let message = messages[index].message
        return CANFrame(timestamp: stamp(due), interface: messages[index].interface, id: message.id,
                        isExtended: message.isExtended, isFD: payload.count > 8 || message.isFD,
                        bitRateSwitch: payload.count > 8 || message.isFD, data: payload, isReceived: false)
    }

    /// Every frame stamped before `end`.
    public mutating func frames(until end: Timestamp) -> [CANFrame] {
        var out: [CANFrame] = []
        while let time = nextTimestamp, time < end, let frame = next() { out.append(frame) }
        return out
    }

    /// The value models of message `index`'s signals (ranges and waveforms, for tests and summaries).
    public func signalModels(message index: Int) -> [SignalModel] { messages[index].signals }

    /// The multiplexer values message `index` cycles through, per signal (empty for non-multiplexers).
    public func multiplexerCycles(message index: Int) -> [[Int64]] { messages[index].cycleValues }

    /// Names of signals of message `index` that the simulator leaves to other signals' bits because
    /// the DBC lets them overlap (only one of two overlapping signals can follow its model).
    public func overlappedSignals(message index: Int) -> Set<String> {
        let model = messages[index]
        var names: Set<String> = []
        let signals = model.message.signals
        for (position, i) in model.order.enumerated() {
            for j in model.order[..<position] {
                guard (0..<8).contains(where: { model.bitMasks[i][$0] & model.bitMasks[j][$0] != 0 }),
                      !Self.exclusive(signals[i], signals[j]) else { continue }
                names.insert(signals[i].name)
            }
        }
        return names
    }

    /// Whether two signals can never be in the same frame (same multiplexer, disjoint selectors).
    private static func exclusive(_ a: DBCSignal, _ b: DBCSignal) -> Bool {
        guard let x = a.multiplexedBy, let y = b.multiplexedBy, x.multiplexer == y.multiplexer else { return false }
        return !x.values.contains { r in y.values.contains { $0.overlaps(r) } }
    }

    // A linear scan: DBCs have tens to a few hundred messages, and ties must break by DBC order.
    private func nextIndex() -> Int? {
        var best: Int?
        for i in messages.indices where best == nil || messages[i].due < messages[best!].due { best = i }
        return best
    }

    private func stamp(_ micros: Int64) -> Timestamp {
        Timestamp(nanoseconds: start.nanoseconds + micros * 1_000)
    }
}
