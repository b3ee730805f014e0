// Random event orders against the slot store, with a shell that only reports what really happened
// (a download is verified only once staged, an install only once done) and random power cuts:
// whatever the order, every start is of a verified slot, the committed slot holds the committed
// version, the floor never falls, and every persisted state reads back with a higher generation.
import OTA
import Testing
import TestSupport

@Suite struct SlotStoreRandomTests {
    @Test(arguments: 1...8)
    func invariantsHoldForRandomEventOrdersAndPowerCuts(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var device = SimulatedDevice(state: .factory(version: 1))
        var store = SlotStore(state: device.persisted, trialAttempts: 2)
        var nextVersion: UInt64 = 2
        var lastGeneration = device.persisted.generation
        var lastFloor: UInt64 = 0
        var outcomes: Set<String> = []
        for step in 0..<1500 {
            let inactive = store.state.active.other
            // The shell's own progress: a download running in the background finishes.
            if case .downloading(let v, _) = store.state.inactive, device.slots[inactive] == .partial(v), Bool.random(using: &random) {
                device.slots[inactive] = .staged(v)
            }
            let candidates: [SlotEvent?] = [
                .boot,
                .updateAccepted(version: nextVersion, floor: nextVersion - UInt64.random(in: 0...1, using: &random)),
                { if case .downloading(let v, _) = store.state.inactive, device.slots[inactive] == .staged(v) { .downloadVerified(version: v) } else { nil } }(),
                { if case .downloading = store.state.inactive { .downloadFailed(reason: "hash mismatch") } else { nil } }(),
                { if case .verified(let v, _) = store.state.inactive, device.slots[inactive] == .verified(v) { .installed(version: v) } else { nil } }(),
                .healthPassed,
                .healthFailed(reason: "no ack"),
                nil, // power cut
            ]
            let pick = candidates[Int.random(in: 0..<candidates.count, using: &random)]
            guard let event = pick else {
                // Power cut: only what was persisted survives; the slot directory stays as it is.
                store = SlotStore(state: device.persisted, trialAttempts: 2)
                device.started = []
                continue
            }
            if case .updateAccepted = event { nextVersion += 1 }
            for action in store.on(event) {
                if case .ignored = action { continue }
                if case .persist(let state) = action {
                    #expect(state.generation > lastGeneration, "step \(step)")
                    #expect(state.floor >= lastFloor && state.floor <= state.committedVersion, "step \(step)")
                    #expect((try? BootState.parse(state.encoded(), file: "boot")) == state, "every persisted state reads back")
                    lastGeneration = state.generation
                    lastFloor = state.floor
                }
                device.execute(action)
                if case .report(let report) = action { outcomes.insert(report.status) }
                if case .start = action { #expect(device.startedVerified(), "seed \(seed) step \(step): \(device.started) \(device.slots)") }
            }
            #expect(device.slots[device.persisted.active] == .verified(device.persisted.committedVersion), "seed \(seed) step \(step)")
        }
        // The walk reaches the interesting transitions, not just refusals.
        #expect(outcomes.isSuperset(of: ["committed", "rolled-back", "trial-boot"]), "seed \(seed): \(outcomes.sorted())")
    }
}
