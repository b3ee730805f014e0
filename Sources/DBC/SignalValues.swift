// The caller-owned buffer one decoded message is written into; reused frame after frame.
import DAQCore

/// The decoded signals of one frame, indexed like `DBCMessage.signals`. Create one and pass it to
/// every `DBCDecoder.decode` call: once it has grown to the largest message, decoding allocates nothing.
public struct SignalValues: Sendable {
    /// Physical values (raw × factor + offset); meaningful only where `isPresent` is true.
    public internal(set) var physical: [Double] = []
    /// Raw fields: zero-extended for unsigned, sign-extended (two's complement bit pattern) for
    /// signed integers, the IEEE bit pattern for float signals.
    public internal(set) var raw: [UInt64] = []
    /// Whether the frame carries the signal: false for signals its multiplexer value does not
    /// select, and for signals that end beyond a short payload.
    public internal(set) var isPresent: [Bool] = []
    /// Number of signals of the last decoded message (the valid prefix of the arrays).
    public internal(set) var count = 0
    /// A present multiplexer held a value that selects no signal (cantools rejects such frames;
    /// the decoder reports the multiplexer and the signals that do not depend on it).
    public internal(set) var hasUnselectedMultiplexer = false

    /// A buffer with room for `capacity` signals.
    public init(capacity: Int = 64) {
        reserve(capacity)
    }

    /// The raw value of signal `index` as a signed integer (meaningful for signed integer signals).
    public func signedRaw(_ index: Int) -> Int64 { Int64(bitPattern: raw[index]) }

    mutating func reserve(_ needed: Int) {
        guard physical.count < needed else { return }
        let extra = needed - physical.count
        physical.append(contentsOf: repeatElement(0, count: extra))
        raw.append(contentsOf: repeatElement(0, count: extra))
        isPresent.append(contentsOf: repeatElement(false, count: extra))
    }
}
