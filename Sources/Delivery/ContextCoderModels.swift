// The models of codec 4 (`ContextCoder`): what each coded decision is conditioned on. A column's
// coded values (zigzag differences) are sent as a bit length ("bucket") and the bits below the
// top one; the bucket is predicted from how large the column's recent values were, which is what
// separates a quiet channel from a noisy one. The models are shared by all columns, so a batch of
// a few rows per group still codes against probabilities learnt on thousands of values (the
// context's and the batch's own). Which group each entry belongs to is predicted from the groups
// of the entries before it: the rasters make the interleaving repeat.

/// Adaptive probabilities for every decision of one batch, in one block.
struct CoderModels {
    /// Recent magnitude of a column: its mean bucket in halves (0…32), or 33 before its first value.
    static let levels = 34
    static let buckets = 17
    /// Bucket trees: one 32-leaf tree per (level, previous bucket).
    private static let bucketTrees = 0
    private static let mantissaHigh = bucketTrees + levels * buckets * 32
    private static let mantissaNext = mantissaHigh + buckets * levels
    private static let orders = mantissaNext + 2 * buckets * levels
    private static let hits = orders + 4 * 4
    private static let groupedFlag = hits + 4
    private static let slotTree = groupedFlag + 1
    private static let lengthTree = slotTree + 64
    private static let kindTree = lengthTree + 64
    private static let byteTree = kindTree + 256
    private static let size = byteTree + 256

    private let table = ProbabilityTable(count: size)
    private var p: UnsafeMutablePointer<Probability> { table.base }
    /// Set when a decoder met a decision no encoder makes (a bucket or an order out of range).
    var malformed = false

    /// Codes one zigzag-mapped column value `v` (the decoder passes 0 and gets the value back)
    /// and moves the column's magnitude state on.
    @inline(__always)
    mutating func value<C: BitCoding>(_ coder: inout C, _ v: UInt32, _ state: inout ColumnState) -> UInt32 {
        let level = state.average < 0 ? CoderModels.levels - 1 : min(Int(state.average) >> 3, CoderModels.levels - 2)
        let context = level * CoderModels.buckets + state.lastBucket
        let bucket = Int(coder.tree(p + CoderModels.bucketTrees + 32 * context, count: 5, UInt32(32 - v.leadingZeroBitCount)))
        guard bucket < CoderModels.buckets else {
            malformed = true
            return 0
        }
        var value: UInt32 = bucket == 0 ? 0 : 1
        if bucket >= 2 {
            let below = bucket - 1
            let high = coder.bit(p + CoderModels.mantissaHigh + bucket * CoderModels.levels + level, (v >> UInt32(below - 1)) & 1)
            value = value << 1 | high
            if below >= 2 {
                let next = coder.bit(p + CoderModels.mantissaNext + (2 * bucket + Int(high)) * CoderModels.levels + level,
                                     (v >> UInt32(below - 2)) & 1)
                value = value << 1 | next
                if below >= 3 {
                    let rest = below - 2
                    value = value << UInt32(rest) | coder.direct(v & (1 << UInt32(rest) - 1), count: rest)
                }
            }
        }
        let scaled = Int32(bucket) << 4
        state.average = state.average < 0 ? scaled : state.average + (scaled - state.average) >> 2
        state.lastBucket = bucket
        return value
    }

    /// Codes a column's predictor (`ColumnState.predictors`) given the one its context rows suggest.
    mutating func order<C: BitCoding>(_ coder: inout C, _ order: UInt8, suggested: UInt8) -> UInt8 {
        UInt8(coder.tree(p + CoderModels.orders + 4 * Int(suggested), count: 2, UInt32(order)))
    }

    /// Whether the predicted group was right (`hit` 0) given the last two outcomes.
    mutating func miss<C: BitCoding>(_ coder: inout C, _ miss: UInt32, history: Int) -> UInt32 {
        coder.bit(p + CoderModels.hits + history, miss)
    }

    mutating func grouped<C: BitCoding>(_ coder: inout C, _ grouped: Bool) -> Bool {
        coder.bit(p + CoderModels.groupedFlag, grouped ? 1 : 0) == 1
    }

    mutating func slot<C: BitCoding>(_ coder: inout C, _ slot: Int) -> Int? { integer(&coder, tree: CoderModels.slotTree, slot) }

    mutating func length<C: BitCoding>(_ coder: inout C, _ length: Int) -> Int? { integer(&coder, tree: CoderModels.lengthTree, length) }

    mutating func kind<C: BitCoding>(_ coder: inout C, _ kind: UInt8) -> UInt8 {
        UInt8(coder.tree(p + CoderModels.kindTree, count: 8, UInt32(kind)))
    }

    /// A byte of a verbatim payload (layouts and other entries outside the groups).
    mutating func byte<C: BitCoding>(_ coder: inout C, _ byte: UInt8) -> UInt8 {
        UInt8(coder.tree(p + CoderModels.byteTree, count: 8, UInt32(byte)))
    }

    /// A non-negative integer below 2³²: its bit length through a model, the bits below the top one as they are.
    private mutating func integer<C: BitCoding>(_ coder: inout C, tree: Int, _ value: Int) -> Int? {
        let v = UInt32(truncatingIfNeeded: value)
        let bucket = Int(coder.tree(p + tree, count: 6, UInt32(32 - v.leadingZeroBitCount)))
        guard bucket <= 32 else {
            malformed = true
            return nil
        }
        guard bucket >= 2 else { return bucket }
        let below = bucket - 1
        var result: UInt32 = 1
        if below > 16 {
            result = result << UInt32(below - 16) | coder.direct((v >> 16) & (1 << UInt32(below - 16) - 1), count: below - 16)
            result = result << 16 | coder.direct(v & 0xFFFF, count: 16)
        } else {
            result = result << UInt32(below) | coder.direct(v & (1 << UInt32(below) - 1), count: below)
        }
        return Int(result)
    }
}

/// A word (or odd byte) column while it is coded: its last values (what the predictors work
/// from) and how large its coded values have been lately.
struct ColumnState {
    /// The last `historyLength` values, newest at `newest` (all zero before the column's first
    /// value, all the first value after it).
    private var history = InlineArray<16, UInt16>(repeating: 0)
    private var newest = 0
    /// Values seen, up to 2: the predictors differ only from the third on.
    private(set) var seen = 0
    /// Exponential mean of the coded values' bucket, in 1/16 (−1 before the first value).
    var average: Int32 = -1
    var lastBucket = 0

    static let historyLength = 16
    /// Predictors a column may use: 0 none (the value itself), 1 the previous value, 2 the line
    /// through the last two, 3 the least-squares line through the last 16 (noise riding on a
    /// slow signal: the fit averages the noise out instead of differencing it).
    static let predictors: UInt8 = 4

    @inline(__always)
    private func past(_ age: Int) -> UInt16 { history[(newest - age) & (ColumnState.historyLength - 1)] }

    /// What predictor `order` expects next.
    @inline(__always)
    func prediction(_ order: UInt8) -> UInt16 {
        let previous = past(0)
        switch order {
        case 0: return 0
        case 1: return previous
        case 2: return previous &+ (previous &- past(1))
        default:
            // Weights of the least-squares line through the last n values, extrapolated one step:
            // (6k − 2(n − 1)) / (n(n − 1)) for k = 0 (oldest) … n − 1; relative to the previous value
            // so that wrapping 16-bit values stay near each other.
            var sum = 0
            for age in 1..<ColumnState.historyLength {
                let weight = 6 * (ColumnState.historyLength - 1 - age) - 2 * (ColumnState.historyLength - 1)
                sum += weight * Int(Int16(bitPattern: past(age) &- previous))
            }
            let denominator = ColumnState.historyLength * (ColumnState.historyLength - 1)
            let rounded = sum >= 0 ? (sum + denominator / 2) / denominator : -((denominator / 2 - sum) / denominator)
            return previous &+ UInt16(truncatingIfNeeded: rounded)
        }
    }

    @inline(__always)
    private mutating func push(_ value: UInt16) {
        if seen == 0 {
            history = InlineArray(repeating: value)
        } else {
            newest = (newest + 1) & (ColumnState.historyLength - 1)
            history[newest] = value
        }
        seen = min(seen + 1, 2)
    }

    /// The value to code for `value` with predictor `order`; moves on to `value`.
    @inline(__always)
    mutating func coded(_ value: UInt16, order: UInt8) -> UInt16 {
        defer { push(value) }
        return value &- prediction(order)
    }

    /// The value that `coded` with predictor `order` stands for; moves on to it.
    @inline(__always)
    mutating func value(_ coded: UInt16, order: UInt8) -> UInt16 {
        let value = coded &+ prediction(order)
        push(value)
        return value
    }
}

/// What each predictor would cost a column: the sum of its residuals' magnitudes, a fair
/// stand-in for what the coder pays.
struct PredictorCost {
    private var state = ColumnState()
    private var costs = InlineArray<4, UInt64>(repeating: 0)
    /// Values added so far.
    private(set) var count = 0

    mutating func add(_ value: UInt16) {
        for order in 0..<Int(ColumnState.predictors) where state.seen == 2 {
            costs[order] += UInt64(Int16(bitPattern: value &- state.prediction(UInt8(order))).magnitude)
        }
        _ = state.coded(value, order: 0)
        count += 1
    }

    /// The cheapest predictor (the lower one on ties).
    var best: UInt8 {
        var best = 1
        for order in [2, 0, 3] where costs[order] < costs[best] { best = order }
        return UInt8(best)
    }
}

/// Predicts each entry's group from the groups of the three entries before it (the successor
/// seen last time after them), and numbers the groups (slots) in order of first appearance,
/// context first. Both sides feed it the same entries, so they predict alike.
struct EntryPredictor {
    /// Slot of each group key, and each slot's shape.
    private var slots: [UInt64: Int] = [:]
    private(set) var shapes: [BatchTransform.EntryShape] = []
    /// The last three tokens (slot + 1, or 0 for an entry outside the groups), 21 bits each.
    private var recent: UInt64 = 0
    private var successor: [UInt64: Int] = [:]
    /// The last two hit/miss outcomes: the context of the next one.
    var outcomes = 0

    init(context: BatchTransform.Context) {
        successor.reserveCapacity(64)
        for shape in context.shapes { observe(shape) }
    }

    /// The slot the next entry probably belongs to.
    var predicted: Int? { successor[recent] }

    /// The slot of a grouped record's group, if it has one.
    func slot(of shape: BatchTransform.EntryShape) -> Int? { slots[shape.key] }

    var slotCount: Int { shapes.count }

    /// Takes `shape` as the next entry: numbers a new group, learns the successor.
    mutating func observe(_ shape: BatchTransform.EntryShape) {
        var token = 0
        if shape.isGrouped {
            if let slot = slots[shape.key] {
                token = slot + 1
            } else {
                slots[shape.key] = shapes.count
                shapes.append(shape)
                token = shapes.count
            }
        }
        if token > 0 { successor[recent] = token - 1 } else { successor[recent] = nil }
        recent = (recent << 21 | UInt64(token & 0x1F_FFFF)) & (1 << 63 - 1)
    }
}
