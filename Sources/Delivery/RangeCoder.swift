// An adaptive binary range coder (the LZMA design: 32-bit range, 64-bit low with a one-byte cache
// for carries, bits coded against adaptive probabilities). Codec 4 (`ContextCoder`) writes every
// decision of its models through it. Encoder, decoder and a model-only "primer" share one
// interface, `BitCoding`, so the models are written once and run the same way on both sides.

/// A bit model: the chance that the next bit is 0, in units of 1/65536 (low 16 bits), and how
/// many bits it has seen (above them, up to `RangeCoding.settledCount`).
typealias Probability = UInt32

enum RangeCoding {
    static let probabilityBits: UInt32 = 16
    /// A fresh model: both bits equally likely, nothing seen.
    static let evenProbability: Probability = 1 << 15
    /// Below this the range is renormalised by a byte.
    static let topValue: UInt32 = 1 << 24
    /// A model moves 1/(n + 1.5) of the way towards each of its first bits (n = bits seen so
    /// far: it learns as fast as a count would), then settles at 1/32 of the way: a fixed rate
    /// that keeps following slow changes.
    static let settledCount: UInt32 = 30
    static let settledShift: Int32 = 5

    @inline(__always)
    static func adapt(_ model: inout Probability, bit: UInt32) {
        let probability = Int32(model & 0xFFFF), seen = model >> 16
        let target: Int32 = bit == 0 ? 65535 : 0
        // Kept inside [32, 65503], so neither bit ever gets a zero share of the range.
        if seen >= settledCount {
            let moved = probability + ((target - probability) >> settledShift)
            model = UInt32(max(moved, 32)) | seen << 16
        } else {
            let moved = probability + (target - probability) * 2 / (2 * Int32(seen) + 3)
            model = UInt32(min(max(moved, 32), 65535 - 32)) | (seen + 1) << 16
        }
    }
}

/// Codes bits against models. The encoder codes the bits it is given and returns them; the
/// decoder ignores the bits it is given and returns the ones it reads; the primer only adapts the
/// models (no output), which is how both sides warm their models on the context entries.
protocol BitCoding {
    /// Codes one bit against `probability` (adapting it) and returns the bit.
    mutating func bit(_ probability: UnsafeMutablePointer<Probability>, _ value: UInt32) -> UInt32
    /// Codes the low `count` bits of `value` (≤ 16), high bit first, each with probability ½.
    mutating func direct(_ value: UInt32, count: Int) -> UInt32
}

extension BitCoding {
    /// Codes the low `count` bits of `value` through a binary tree of models at `tree` (`1 << count`
    /// probabilities; entry 0 unused): each bit's model depends on the bits above it.
    @inline(__always)
    mutating func tree(_ tree: UnsafeMutablePointer<Probability>, count: Int, _ value: UInt32) -> UInt32 {
        var node: UInt32 = 1
        for shift in stride(from: count - 1, through: 0, by: -1) {
            node = node << 1 | bit(tree + Int(node), (value >> UInt32(shift)) & 1)
        }
        return node - (1 << UInt32(count))
    }
}

/// Writes bits into a growing byte array.
struct RangeEncoder: BitCoding {
    private(set) var bytes: [UInt8]
    private var low: UInt64 = 0
    private var range: UInt32 = .max
    private var cache: UInt8 = 0
    private var cacheSize = 1

    /// Starts after `prefix` (bytes the caller wrote before the coded stream).
    init(prefix: [UInt8], capacity: Int) {
        bytes = prefix
        bytes.reserveCapacity(prefix.count + capacity)
    }

    @inline(__always)
    mutating func bit(_ probability: UnsafeMutablePointer<Probability>, _ value: UInt32) -> UInt32 {
        let bound = (range >> RangeCoding.probabilityBits) &* (probability.pointee & 0xFFFF)
        if value == 0 {
            range = bound
        } else {
            low &+= UInt64(bound)
            range &-= bound
        }
        RangeCoding.adapt(&probability.pointee, bit: value)
        while range < RangeCoding.topValue {
            range <<= 8
            shiftLow()
        }
        return value
    }

    mutating func direct(_ value: UInt32, count: Int) -> UInt32 {
        for shift in stride(from: count - 1, through: 0, by: -1) {
            range >>= 1
            if (value >> UInt32(shift)) & 1 == 1 { low &+= UInt64(range) }
            while range < RangeCoding.topValue {
                range <<= 8
                shiftLow()
            }
        }
        return value
    }

    /// Moves the top byte of `low` out, holding back 0xFF bytes until a carry can no longer reach them.
    private mutating func shiftLow() {
        if low < 0xFF00_0000 || low >= 1 << 32 {
            let carry = UInt8(truncatingIfNeeded: low >> 32)
            var pending = cache
            repeat {
                bytes.append(pending &+ carry)
                pending = 0xFF
                cacheSize -= 1
            } while cacheSize != 0
            cache = UInt8(truncatingIfNeeded: low >> 24)
        }
        cacheSize += 1
        low = (low & 0x00FF_FFFF) << 8
    }

    /// Writes out what is left of `low`; the stream is complete afterwards.
    mutating func finish() -> [UInt8] {
        for _ in 0..<5 { shiftLow() }
        return bytes
    }
}

/// Reads bits from a coded stream. Reading past its end yields zero bytes and is remembered
/// (`overran`): the caller checks it, so a truncated stream is an error, never a crash.
struct RangeDecoder: BitCoding {
    private let stream: UnsafeRawBufferPointer
    private(set) var offset: Int
    private var range: UInt32 = .max
    private var code: UInt32 = 0
    private(set) var overran = false

    /// Starts at `offset` of `stream`; nil when the stream cannot be the start of an encoder's
    /// output (its first byte is always 0 and the first code lies inside the range).
    init?(_ stream: UnsafeRawBufferPointer, offset: Int) {
        self.stream = stream
        self.offset = offset
        guard offset < stream.count, stream[offset] == 0 else { return nil }
        self.offset += 1
        for _ in 0..<4 { code = code << 8 | UInt32(nextByte()) }
        guard !overran, code < range else { return nil }
    }

    /// Bytes of the stream consumed so far, and whether the decoder needed more than there were.
    var isExhaustedExactly: Bool { !overran && offset == stream.count }

    @inline(__always)
    private mutating func nextByte() -> UInt8 {
        guard offset < stream.count else {
            overran = true
            return 0
        }
        defer { offset += 1 }
        return stream[offset]
    }

    @inline(__always)
    mutating func bit(_ probability: UnsafeMutablePointer<Probability>, _ value: UInt32) -> UInt32 {
        let bound = (range >> RangeCoding.probabilityBits) &* (probability.pointee & 0xFFFF)
        let decoded: UInt32
        if code < bound {
            range = bound
            decoded = 0
        } else {
            code &-= bound
            range &-= bound
            decoded = 1
        }
        RangeCoding.adapt(&probability.pointee, bit: decoded)
        while range < RangeCoding.topValue {
            range <<= 8
            code = code << 8 | UInt32(nextByte())
        }
        return decoded
    }

    mutating func direct(_ value: UInt32, count: Int) -> UInt32 {
        var result: UInt32 = 0
        for _ in 0..<count {
            range >>= 1
            var bit: UInt32 = 0
            if code >= range {
                code &-= range
                bit = 1
            }
            result = result << 1 | bit
            while range < RangeCoding.topValue {
                range <<= 8
                code = code << 8 | UInt32(nextByte())
            }
        }
        return result
    }
}

/// Adapts models without coding anything: runs them over context data both sides hold.
struct ModelPrimer: BitCoding {
    @inline(__always)
    mutating func bit(_ probability: UnsafeMutablePointer<Probability>, _ value: UInt32) -> UInt32 {
        RangeCoding.adapt(&probability.pointee, bit: value)
        return value
    }

    mutating func direct(_ value: UInt32, count: Int) -> UInt32 { value }
}

/// A block of probabilities owned by one coding run (allocated once, all even at the start).
final class ProbabilityTable {
    let base: UnsafeMutablePointer<Probability>
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(capacity: count)
        base.initialize(repeating: RangeCoding.evenProbability, count: count)
    }

    deinit { base.deallocate() }
}
