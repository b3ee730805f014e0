// The raster/event sampler: a latest-value table (sample-and-hold) and the channel groups that
// snapshot it into records. Pure: time arrives as values, records go into a caller's buffer.
import DAQCore

/// Records produced by the sampler, packed back to back as journal payloads
/// (`u16 record id` + MDF record bytes, see `RecordPayload`), ready to append to the journal.
public struct RecordBuffer: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Start offset of each record in `bytes`.
    public private(set) var offsets: [Int] = []

    public init() {}

    public var count: Int { offsets.count }
    public var isEmpty: Bool { offsets.isEmpty }

    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
    }

    /// The payload of record `index`.
    public func withPayload<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = offsets[index]
        let end = index + 1 < offsets.count ? offsets[index + 1] : bytes.count
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
    }

    fileprivate mutating func appendRecord(size: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) {
        let start = bytes.count
        offsets.append(start)
        bytes.append(contentsOf: repeatElement(0, count: size))
        bytes.withUnsafeMutableBytes { fill(UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + size)])) }
    }
}

/// Samples channel groups. Channels are fed by slot (`slot(for:)`), frames are announced with
/// `frameApplied`, and time moves forward with `advance(to:)` (replay: the log's time; live: the
/// monotonic clock's tick deadlines). A raster group with period P records at every multiple of P
/// (in the time base of the source), so the same input always yields the same records.
public struct Sampler: Sendable {
    public let groups: [ChannelGroup]
    public let layouts: [RecordLayout]

    private struct SlotKey: Hashable { var name: String; var storage: ChannelStorage }
    private var slotIndex: [SlotKey: Int] = [:]
    private var slotStorage: [ChannelStorage] = []
    /// Latest value of each slot, as the little-endian bit pattern of its storage.
    private var latest: [UInt64] = []
    private var received: [Bool] = []
    /// Per group: the slot of each channel.
    private var groupSlots: [[Int]] = []
    /// Slots whose change triggers groups (built as a dictionary, read per update as an array:
    /// the per-signal hot path must not hash).
    private var changeWatch: [Int: [Int]] = [:]
    private var changeWatchers: [[Int]] = []
    private var messageWatch: [Int: [Int]] = [:]
    private var pendingEvents: [Int] = []

    private var rasterGroups: [(group: Int, period: Int64)] = []
    /// Raw bus-logging groups, the buses they log and whether their records are CAN FD records.
    private var busGroups: [(group: Int, buses: [String], fd: Bool)] = []
    /// Data frames too long for a classic bus-logging group's record (CAN FD payloads over 8 bytes).
    public private(set) var busFramesTooLong: UInt64 = 0
    private var nextTick: [Int64] = []
    /// Measurement start: time of the first frame; record times are seconds since it.
    public private(set) var start: Timestamp?

    /// Builds a sampler; `messageKeys` maps the names used by `.message` triggers to the integer
    /// keys `frameApplied(message:)` will be called with.
    public init(groups: [ChannelGroup], messageKeys: [String: Int] = [:]) {
        self.groups = groups
        layouts = groups.map(RecordLayout.init)
        for (g, group) in groups.enumerated() {
            var slots: [Int] = []
            for channel in group.channels {
                let key = SlotKey(name: channel.name, storage: channel.storage)
                let slot: Int
                if let existing = slotIndex[key] {
                    slot = existing
                } else {
                    slot = slotStorage.count
                    slotIndex[key] = slot
                    slotStorage.append(channel.storage)
                }
                slots.append(slot)
            }
            groupSlots.append(slots)
            switch group.trigger {
            case .raster(let period):
                precondition(period > 0, "raster period must be positive")
                rasterGroups.append((g, period))
            case .message(let name):
                if let key = messageKeys[name] { messageWatch[key, default: []].append(g) }
            case .signalChange:
                break  // registered below, once every group's slots exist
            case .busFrames(let buses, let fd):
                busGroups.append((g, buses, fd))
            }
        }
        latest = Array(repeating: 0, count: slotStorage.count)
        received = Array(repeating: false, count: slotStorage.count)
        nextTick = Array(repeating: .max, count: rasterGroups.count)
        // A change-triggered group watches every slot of its signal, whichever group records it
        // (a later one too: watching only the slots made so far, then making a float64 slot of
        // the name, replaced a later float64 channel's slot, which was then never fed). A signal
        // no group records gets one float64 slot, shared by every group that watches it (each
        // used to make its own, replacing the one before: only the last group recorded).
        for (g, group) in groups.enumerated() {
            guard case .signalChange(let name) = group.trigger else { continue }
            var watched = slotIndex.filter { $0.key.name == name }.map(\.value)
            if watched.isEmpty {
                let slot = slotStorage.count
                slotIndex[SlotKey(name: name, storage: .float64)] = slot
                slotStorage.append(.float64)
                latest.append(0)
                received.append(false)
                watched = [slot]
            }
            for slot in watched { changeWatch[slot, default: []].append(g) }
        }
        changeWatchers = (0..<slotStorage.count).map { changeWatch[$0] ?? [] }
    }

    /// Whether frames of message key `key` trigger any group (callers may pass nil otherwise).
    public func triggers(message key: Int) -> Bool { messageWatch[key] != nil }

    /// The slots a decoded signal feeds: one per distinct storage the experiment asks for.
    public func slots(for channelName: String) -> [(slot: Int, storage: ChannelStorage)] {
        slotIndex.compactMap { key, slot in key.name == channelName ? (slot, key.storage) : nil }
            .sorted { $0.slot < $1.slot }
    }

    /// Stores a new value in `slot`: `raw` for integer storage, `physical` for float storage.
    @inline(__always)
    public mutating func update(slot: Int, raw: Int64, physical: Double) {
        let bits: UInt64
        switch slotStorage[slot] {
        case .unsigned(let width), .signed(let width):
            bits = width == 64 ? UInt64(bitPattern: raw) : UInt64(bitPattern: raw) & ((1 << UInt64(width)) - 1)
        case .float32: bits = UInt64(Float(physical).bitPattern)
        case .float64: bits = physical.bitPattern
        }
        if !changeWatchers[slot].isEmpty, !received[slot] || latest[slot] != bits {
            pendingEvents.append(contentsOf: changeWatchers[slot])
        }
        latest[slot] = bits
        received[slot] = true
    }

    /// Announces that a frame's values were applied at `time`. Emits the raster records due up to
    /// (and excluding) `time` first, then the event records this frame triggered.
    public mutating func frameApplied(message: Int?, at time: Timestamp, into out: inout RecordBuffer) {
        if let message, let watchers = messageWatch[message] { pendingEvents.append(contentsOf: watchers) }
        guard !pendingEvents.isEmpty else { return }
        // A group triggered twice by one frame (two watched signals changed) records once.
        pendingEvents.sort()
        var previous = -1
        for group in pendingEvents where group != previous {
            record(group: group, at: time, into: &out)
            previous = group
        }
        pendingEvents.removeAll(keepingCapacity: true)
    }

    /// Marks the measurement start if it has not started yet and emits every raster tick with a
    /// tick time strictly before `time`. Call before applying a frame stamped `time`.
    public mutating func advance(to time: Timestamp, into out: inout RecordBuffer) {
        if start == nil { begin(at: time) }
        while let (index, tick) = earliestTick(), tick < time.nanoseconds {
            let (group, period) = rasterGroups[index]
            record(group: group, at: Timestamp(nanoseconds: tick), into: &out)
            nextTick[index] = tick + period
        }
    }

    /// Moves every raster group's next tick to the first one at or after `time`, so the ticks of a
    /// gap in the frames' time (a log recorded across a clock step) are not emitted.
    public mutating func skipTicks(before time: Timestamp) {
        for (index, raster) in rasterGroups.enumerated() where nextTick[index] < time.nanoseconds {
            let (gap, overflow) = time.nanoseconds.subtractingReportingOverflow(nextTick[index])
            let steps = overflow ? Int64.max : gap / raster.period + (gap % raster.period == 0 ? 0 : 1)
            let (advance, tooFar) = steps.multipliedReportingOverflow(by: raster.period)
            let (next, past) = nextTick[index].addingReportingOverflow(advance)
            nextTick[index] = tooFar || past ? .max : next
        }
    }

    /// Whether any group logs raw frames.
    public var logsBusFrames: Bool { !busGroups.isEmpty }

    /// Records a data frame (stamped `time`, after `advance(to: time)`) in every bus-logging
    /// group that logs its bus (see `BusFrameRecord`). A classic group counts frames over 8 bytes
    /// in `busFramesTooLong` instead; an FD group logs every frame, DLC = the FD code of its length.
    public mutating func logFrame(_ frame: CANFrame, at time: Timestamp, into out: inout RecordBuffer) {
        for (group, buses, fd) in busGroups {
            guard let bus = buses.firstIndex(of: frame.interface) else { continue }
            guard frame.data.count <= BusFrameRecord.dataCapacity(fd: fd) else {
                busFramesTooLong += 1
                continue
            }
            let seconds = Double(time.nanoseconds - (start?.nanoseconds ?? time.nanoseconds)) / 1e9
            let dlc = fd ? BusFrameRecord.fdDLC(length: frame.data.count) : UInt8(frame.data.count)
            out.appendRecord(size: RecordPayload.headerBytes + BusFrameRecord.bytes(fd: fd)) { raw in
                raw.storeBytes(of: RecordPayload.recordID(group: group).littleEndian, toByteOffset: 0, as: UInt16.self)
                let base = RecordPayload.headerBytes
                raw.storeBytes(of: seconds.bitPattern.littleEndian, toByteOffset: base, as: UInt64.self)
                let id = frame.id & 0x1FFF_FFFF | (frame.isExtended ? 0x8000_0000 : 0)
                raw.storeBytes(of: id.littleEndian, toByteOffset: base + BusFrameRecord.idOffset, as: UInt32.self)
                raw[base + BusFrameRecord.dlcOffset] = dlc | UInt8(bus + 1) << 4
                var flags: UInt8 = frame.isReceived ? 0 : 0x01
                if frame.isFD { flags |= 0x04 }
                if frame.bitRateSwitch { flags |= 0x08 }
                if frame.errorStateIndicator { flags |= 0x10 }
                raw[base + BusFrameRecord.flagsOffset] = flags
                raw[base + BusFrameRecord.lengthOffset] = UInt8(frame.data.count)
                for (index, byte) in frame.data.enumerated() { raw[base + BusFrameRecord.dataOffset + index] = byte }
            }
        }
    }

    /// The time of the next raster tick, if any (live mode arms a timer for it).
    public var nextTickTime: Timestamp? {
        earliestTick().map { Timestamp(nanoseconds: $0.tick) }
    }

    private func earliestTick() -> (index: Int, tick: Int64)? {
        var best: (Int, Int64)?
        for (index, tick) in nextTick.enumerated() where tick != .max {
            if best == nil || tick < best!.1 { best = (index, tick) }
        }
        return best
    }

    private mutating func begin(at time: Timestamp) {
        start = time
        for (index, raster) in rasterGroups.enumerated() {
            // First tick: the first multiple of the period at or after the start.
            let t = time.nanoseconds
            let remainder = ((t % raster.period) + raster.period) % raster.period
            nextTick[index] = remainder == 0 ? t : t + (raster.period - remainder)
        }
    }

    private func record(group: Int, at time: Timestamp, into out: inout RecordBuffer) {
        let layout = layouts[group]
        let slots = groupSlots[group]
        let storages = groups[group].channels
        let seconds = Double(time.nanoseconds - (start?.nanoseconds ?? time.nanoseconds)) / 1e9
        out.appendRecord(size: RecordPayload.headerBytes + layout.recordBytes) { raw in
            raw.storeBytes(of: RecordPayload.recordID(group: group).littleEndian, toByteOffset: 0, as: UInt16.self)
            let base = RecordPayload.headerBytes
            raw.storeBytes(of: seconds.bitPattern.littleEndian, toByteOffset: base, as: UInt64.self)
            let invalidBase = base + layout.dataBytes
            for (index, slot) in slots.enumerated() {
                let offset = base + layout.valueOffsets[index]
                let bits = latest[slot]
                switch storages[index].storage.byteCount {
                case 1: raw.storeBytes(of: UInt8(truncatingIfNeeded: bits), toByteOffset: offset, as: UInt8.self)
                case 2: raw.storeBytes(of: UInt16(truncatingIfNeeded: bits).littleEndian, toByteOffset: offset, as: UInt16.self)
                case 4: raw.storeBytes(of: UInt32(truncatingIfNeeded: bits).littleEndian, toByteOffset: offset, as: UInt32.self)
                default: raw.storeBytes(of: bits.littleEndian, toByteOffset: offset, as: UInt64.self)
                }
                if !received[slot] { raw[invalidBase + index / 8] |= UInt8(1) << UInt8(index % 8) }
            }
        }
    }
}
