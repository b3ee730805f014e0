// Codec 4's column predictors against a plain reference: both ends of the link must predict every
// value bit for bit alike, so however `ColumnState` computes them (ring buffer, any future faster
// fit), the residuals must equal the definitions on any sequence, wrapping 16-bit values included.
import Testing
import TestSupport
@testable import Delivery

@Suite struct ColumnPredictorTests {
    /// The predictors as defined in docs/uplink.md, over a plain array of the values so far.
    private func reference(_ seen: [UInt16], order: UInt8) -> UInt16 {
        guard let previous = seen.last else { return 0 }
        // Before the first value the history is all zero; after it, all the first value.
        func past(_ age: Int) -> UInt16 { age < seen.count ? seen[seen.count - 1 - age] : seen[0] }
        switch order {
        case 0: return 0
        case 1: return previous
        case 2: return previous &+ (previous &- past(1))
        default:
            var sum = 0
            for age in 1..<16 {
                sum += (6 * (15 - age) - 30) * Int(Int16(bitPattern: past(age) &- previous))
            }
            let rounded = sum >= 0 ? (sum + 120) / 240 : -((120 - sum) / 240)
            return previous &+ UInt16(truncatingIfNeeded: rounded)
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func everyPredictorMatchesTheReference(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        for order in UInt8(0)..<ColumnState.predictors {
            var state = ColumnState()
            var seen: [UInt16] = []
            // Slow ramps with noise, full-range jumps (wrapping differences), and constants.
            var level = UInt16(truncatingIfNeeded: random.next())
            for index in 0..<600 {
                let phase = (index / 100) % 3
                let value: UInt16
                switch phase {
                case 0: level &+= UInt16(truncatingIfNeeded: random.next() % 7); value = level &+ UInt16(truncatingIfNeeded: random.next() % 5)
                case 1: value = UInt16(truncatingIfNeeded: random.next())
                default: value = level
                }
                let expected = value &- reference(seen, order: order)
                let coded = state.coded(value, order: order)
                #expect(coded == expected, "order \(order), value #\(index)")
                if coded != expected { return }
                seen.append(value)
            }
        }
    }

    @Test func decodingUndoesCoding() {
        var random = SeededGenerator(seed: 9)
        for order in UInt8(0)..<ColumnState.predictors {
            var coder = ColumnState(), decoder = ColumnState()
            for _ in 0..<400 {
                let value = UInt16(truncatingIfNeeded: random.next() % 50_000)
                #expect(decoder.value(coder.coded(value, order: order), order: order) == value)
            }
        }
    }
}
