// The frame decoder: finds a frame's message (flat table for 11-bit ids, dictionary for 29-bit)
// and runs its precompiled decode steps into a caller's `SignalValues`. No allocation per frame.
import DAQCore

/// Decodes frames with the messages of one `DBCDatabase`.
///
/// Frames shorter than the message: signals that end within the received bytes are decoded,
/// the others are reported absent (like cantools' `allow_truncated=True`; cantools' default
/// raises instead). Bytes beyond the message length are ignored.
/// A class, not a struct: the decoder is shared read-only state, and passing a struct with
/// several arrays through the per-frame path costs a retain and release per array per frame.
public final class DBCDecoder: Sendable {
    public let database: DBCDatabase
    let plan: DecodePlan
    /// Message index + 1 per 11-bit id (0 = unknown).
    private let standardIDs: [Int32]
    private let extendedIDs: [UInt32: Int32]
    /// The most signals any message has (the `SignalValues` size decoding needs).
    public let maximumSignalCount: Int

    public init(_ database: DBCDatabase) {
        self.database = database
        plan = DecodePlan(database)
        var standard = [Int32](repeating: 0, count: 2048)
        var extended: [UInt32: Int32] = [:]
        // The first definition of an id wins, as a lookup by id in the file would find it.
        for (index, message) in database.messages.enumerated().reversed() {
            if message.isExtended {
                extended[message.id] = Int32(index)
            } else if message.id < 2048 {
                standard[Int(message.id)] = Int32(index + 1)
            }
        }
        standardIDs = standard
        extendedIDs = extended
        maximumSignalCount = database.messages.map(\.signals.count).max() ?? 0
    }

    /// A buffer big enough for every message of the database.
    public func makeValues() -> SignalValues { SignalValues(capacity: maximumSignalCount) }

    /// The index in `database.messages` of the message with this id, nil when the DBC has none.
    @inlinable
    public func messageIndex(id: UInt32, isExtended: Bool) -> Int? {
        lookup(id: id, isExtended: isExtended)
    }

    @usableFromInline
    func lookup(id: UInt32, isExtended: Bool) -> Int? {
        if isExtended { return extendedIDs[id].map(Int.init) }
        guard id < 2048 else { return nil }
        let entry = standardIDs.withUnsafeBufferPointer { $0[Int(id)] }
        return entry == 0 ? nil : Int(entry - 1)
    }

    /// Decodes a data frame whose id is in the database; returns the message index, or nil for an
    /// unknown id or a frame that is not a data frame (RTR, error).
    @discardableResult
    public func decode(_ frame: CANFrame, into values: inout SignalValues) -> Int? {
        guard frame.kind == .data, let index = lookup(id: frame.id, isExtended: frame.isExtended) else { return nil }
        decode(message: index, payload: frame.data, into: &values)
        return index
    }

    /// Decodes `payload` as message `message` (an index into `database.messages`).
    public func decode(message: Int, payload: CANPayload, into values: inout SignalValues) {
        let steps = plan.messages[message]
        values.reserve(steps.count)
        values.count = steps.count
        values.hasUnselectedMultiplexer = false
        let available = payload.count
        let words = payload.words
        withUnsafeBytes(of: words) { bytes in
            plan.steps.withUnsafeBufferPointer { allSteps in
                values.physical.withUnsafeMutableBufferPointer { physical in
                    values.raw.withUnsafeMutableBufferPointer { raw in
                        values.isPresent.withUnsafeMutableBufferPointer { present in
                            if !steps.isMultiplexed {
                                for i in 0..<steps.count {
                                    let step = allSteps[steps.firstStep &+ i]
                                    guard step.requiredBytes <= available else { present[i] = false; continue }
                                    let bits = step.raw(bytes)
                                    raw[i] = bits
                                    physical[i] = step.physical(bits)
                                    present[i] = true
                                }
                                return
                            }
                            values.hasUnselectedMultiplexer = decodeMultiplexed(
                                steps, bytes: bytes, available: available, allSteps: allSteps,
                                physical: physical, raw: raw, present: present)
                        }
                    }
                }
            }
        }
    }

    /// Multiplexed messages: signals in multiplexer-first order; a signal is present when its
    /// multiplexer is present and holds one of the signal's selector values.
    private func decodeMultiplexed(
        _ steps: MessageSteps, bytes: UnsafeRawBufferPointer, available: Int,
        allSteps: UnsafeBufferPointer<SignalStep>, physical: UnsafeMutableBufferPointer<Double>,
        raw: UnsafeMutableBufferPointer<UInt64>, present: UnsafeMutableBufferPointer<Bool>
    ) -> Bool {
        var unselected = false
        plan.order.withUnsafeBufferPointer { order in
            plan.rangeLows.withUnsafeBufferPointer { lows in
                plan.rangeHighs.withUnsafeBufferPointer { highs in
                    func inRanges(_ value: Int64, _ start: Int, _ count: Int) -> Bool {
                        for r in start..<(start &+ count) where lows[r] <= value && value <= highs[r] { return true }
                        return false
                    }
                    for k in 0..<steps.count {
                        let absolute = order[steps.firstOrder &+ k]
                        let i = absolute &- steps.firstStep
                        let step = allSteps[absolute]
                        if step.multiplexer >= 0 {
                            let mux = step.multiplexer &- steps.firstStep
                            guard present[mux],
                                  inRanges(Int64(bitPattern: raw[mux]), step.selectorStart, step.selectorCount) else {
                                present[i] = false
                                continue
                            }
                        }
                        guard step.requiredBytes <= available else { present[i] = false; continue }
                        let bits = step.raw(bytes)
                        raw[i] = bits
                        physical[i] = step.physical(bits)
                        present[i] = true
                        if step.selectsCount > 0 && !inRanges(Int64(bitPattern: bits), step.selectsStart, step.selectsCount) {
                            unselected = true
                        }
                    }
                }
            }
        }
        return unselected
    }
}
