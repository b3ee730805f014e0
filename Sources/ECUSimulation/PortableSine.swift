// A sine computed with plain arithmetic. The pure module may not import Glibc (no libm), and a
// polynomial gives the same bits on every platform, which the byte-exact `--log` output relies on.

/// sin(2π·turns): one full period per unit of `turns`. Error below 1e-6, plenty for test traffic.
func sineOfTurns(_ turns: Double) -> Double {
    // Reduce to x in [-0.5, 0.5) turns, then fold to [-0.25, 0.25] where the series converges fast.
    var x = turns - (turns + 0.5).rounded(.down)
    if x > 0.25 { x = 0.5 - x } else if x < -0.25 { x = -0.5 - x }
    let radians = x * 2 * Double.pi
    let r2 = radians * radians
    // Taylor series to x^11; |radians| ≤ π/2 keeps the truncation error under 6e-8.
    var term = radians
    var sum = radians
    for n in stride(from: 2, through: 10, by: 2) {
        term *= -r2 / Double(n * (n + 1))
        sum += term
    }
    return sum
}
