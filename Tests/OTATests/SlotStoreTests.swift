// The A/B slot state machine, driven by events with a simulated slot directory: the happy path,
// health failure and exhausted attempts roll back, and a crash after EVERY executed action (each
// persisted step included) restarts into a verified slot and ends committed or rolled back.
import OTA
import Testing

/// What the simulated slot directory holds, changed only by executing actions.
struct SimulatedDevice {
    enum Contents: Equatable { case verified(UInt64), partial(UInt64), staged(UInt64) }
    var slots: [Slot: Contents]
    var persisted: BootState
    var started: [Slot] = []
    var reports: [SlotReport] = []
    var rebootRequested = false

    init(state: BootState) {
        persisted = state
        slots = [state.active: .verified(state.committedVersion)]
    }

    /// Runs one action as the shell would (downloads finish at once; installs re-verify).
    mutating func execute(_ action: SlotAction) {
        switch action {
        case .persist(let state): persisted = state
        case .prepareStaging(let slot, let version): slots[slot] = .partial(version)
        case .resumeDownload(let slot, let version): slots[slot] = .staged(version)
        case .install(let slot, let version): slots[slot] = .verified(version)
        case .start(let slot): started.append(slot)
        case .reboot: rebootRequested = true
        case .report(let report): reports.append(report)
        case .ignored(let why): Issue.record("unexpected ignored event: \(why)")
        }
    }

    /// The invariant: whatever was started holds a verified image.
    func startedVerified() -> Bool {
        guard let slot = started.last, case .verified = slots[slot] else { return false }
        return true
    }
}

@Suite struct SlotStoreTests {
    let factory = BootState.factory(version: 4)

    /// Feeds `events`, executing every action; `crashAfter` stops after that many executed actions.
    /// Returns the device, and whether the run was cut short.
    func run(_ events: [SlotEvent], from state: BootState, device: SimulatedDevice? = nil, crashAfter: Int? = nil) -> (SimulatedDevice, Bool) {
        var device = device ?? SimulatedDevice(state: state)
        var store = SlotStore(state: state, trialAttempts: 2)
        var executed = 0
        for event in events {
            for action in store.on(event) {
                if let crashAfter, executed == crashAfter { return (device, true) }
                device.execute(action)
                executed += 1
            }
        }
        return (device, false)
    }

    @Test func happyPathCommitsAndRaisesTheFloorOnlyAtCommit() {
        var store = SlotStore(state: factory, trialAttempts: 2)
        #expect(store.on(.boot) == [.start(.a)])
        let accepted = store.on(.updateAccepted(version: 7, floor: 6))
        #expect(accepted.first == .persist(store.state))
        #expect(store.state.inactive == .downloading(version: 7, floor: 6))
        #expect(accepted.contains(.prepareStaging(.b, version: 7)))
        #expect(store.on(.downloadVerified(version: 7)).contains(.install(.b, version: 7)))
        #expect(store.state.floor == 0)
        #expect(store.on(.installed(version: 7)).last == .reboot)
        #expect(store.state.inactive == .trial(version: 7, floor: 6, attemptsLeft: 2))
        #expect(store.state.floor == 0, "floor unchanged before commit")

        var rebooted = SlotStore(state: store.state, trialAttempts: 2)
        #expect(rebooted.on(.boot).last == .start(.b))
        #expect(rebooted.state.inactive == .trial(version: 7, floor: 6, attemptsLeft: 1))
        let committed = rebooted.on(.healthPassed)
        #expect(committed.contains(.report(SlotReport(status: "committed", version: 7, slot: .b))))
        #expect(rebooted.state.active == .b)
        #expect(rebooted.state.committedVersion == 7)
        #expect(rebooted.state.floor == 6)
        #expect(rebooted.state.inactive == .unbootable)
        #expect(rebooted.state.generation == 5, "every transition persisted")
    }

    @Test func healthFailureRollsBack() {
        var store = SlotStore(state: factory, trialAttempts: 2)
        _ = store.on(.updateAccepted(version: 7, floor: 6))
        _ = store.on(.downloadVerified(version: 7))
        _ = store.on(.installed(version: 7))
        var trial = SlotStore(state: store.state, trialAttempts: 2)
        #expect(trial.on(.boot).last == .start(.b))
        let failed = trial.on(.healthFailed(reason: "uplink never acknowledged a batch"))
        #expect(failed.contains(.report(SlotReport(status: "rolled-back", version: 7, slot: .b, reason: "uplink never acknowledged a batch"))))
        #expect(failed.last == .reboot)
        #expect(trial.state.active == .a && trial.state.committedVersion == 4 && trial.state.floor == 0)
        var after = SlotStore(state: trial.state, trialAttempts: 2)
        #expect(after.on(.boot) == [.start(.a)])
        // The failed release is not offered again as if new; only a newer one starts a download.
        #expect(after.on(.updateAccepted(version: 7, floor: 6)).count == 1)
        #expect(after.on(.updateAccepted(version: 8, floor: 6)).first.map { if case .persist = $0 { true } else { false } } == true)
    }

    @Test func exhaustedAttemptsRollBackAtBoot() {
        var store = SlotStore(state: factory, trialAttempts: 2)
        _ = store.on(.updateAccepted(version: 7, floor: 6))
        _ = store.on(.downloadVerified(version: 7))
        _ = store.on(.installed(version: 7))
        var state = store.state
        var starts: [Slot] = []
        for _ in 0..<3 { // trial crashes before its health check every time
            var booting = SlotStore(state: state, trialAttempts: 2)
            let actions = booting.on(.boot)
            starts += actions.compactMap { if case .start(let slot) = $0 { slot } else { nil } }
            state = booting.state
        }
        #expect(starts == [.b, .b, .a])
        #expect(state.inactive == .unbootable && state.active == .a && state.floor == 0)
    }

    /// An install that fails (a full or failing card) while the state is `verified`: reported and
    /// the slot marked unbootable. It was ignored: the state stayed `verified`, every boot tried
    /// the install again and then chose no slot (daqlink boot exited 70, over and over).
    @Test func anInstallThatFailsIsReportedAndTheCommittedSlotStarts() {
        var store = SlotStore(state: factory, trialAttempts: 2)
        _ = store.on(.updateAccepted(version: 7, floor: 6))
        _ = store.on(.downloadVerified(version: 7))
        let actions = store.on(.downloadFailed(reason: "install failed: No space left on device"))
        #expect(actions.count == 2 && store.state.inactive == .unbootable && store.state.active == .a)
        #expect(actions.last == .report(SlotReport(status: "download-failed", version: 7, slot: .b,
                                                   reason: "install failed: No space left on device")))
        var booting = SlotStore(state: store.state, trialAttempts: 2)
        #expect(booting.on(.boot) == [.start(.a)])
    }

    /// The committed slot's image is damaged: the other slot's verified image takes over at or
    /// above the floor (reported as fallen-back, the damaged release installable again), never
    /// below it, and only when it is the release before (or the factory image), never a newer one.
    @Test func aDamagedCommittedSlotFallsBackOnlyAtOrAboveTheFloor() {
        let committed = BootState(generation: 9, active: .b, committedVersion: 7, floor: 5, lastAcceptedVersion: 7)
        var store = SlotStore(state: committed, trialAttempts: 2)
        #expect(store.on(.boot) == [.start(.b)])
        let actions = store.on(.committedSlotDamaged(reason: "truncated", otherVersion: 5))
        let next = BootState(generation: 10, active: .a, committedVersion: 5, floor: 5, lastAcceptedVersion: 5)
        #expect(actions == [.persist(next),
                            .report(SlotReport(status: "fallen-back", version: 5, slot: .a, reason: "slot b (version 7) is damaged: truncated")),
                            .start(.a)])
        #expect(store.on(.updateAccepted(version: 7, floor: 5)).first == .persist(
            BootState(generation: 11, active: .a, committedVersion: 5, floor: 5, lastAcceptedVersion: 7, inactive: .downloading(version: 7, floor: 5))))
        // 4: below the floor; 8: newer than the committed release, a trial that was rolled back
        // (it took over as committed with no trial before).
        for other: UInt64? in [4, nil, 8] {
            var refusing = SlotStore(state: committed, trialAttempts: 2)
            _ = refusing.on(.boot)
            let refused = refusing.on(.committedSlotDamaged(reason: "truncated", otherVersion: other))
            #expect(refused.count == 1 && refusing.state == committed)
            if case .ignored = refused[0] {} else { Issue.record("a fallback to \(String(describing: other)) must be refused") }
        }
    }

    @Test func eventsOutOfOrderChangeNothing() {
        var store = SlotStore(state: factory)
        for event: SlotEvent in [.healthPassed, .healthFailed(reason: "x"), .installed(version: 7), .downloadVerified(version: 7)] {
            let actions = store.on(event)
            #expect(actions.count == 1)
            if case .ignored = actions[0] {} else { Issue.record("\(event) should be ignored") }
        }
        #expect(store.state == factory)
        // A healthy report from the committed slot while a trial is armed does not commit the trial.
        _ = store.on(.updateAccepted(version: 7, floor: 0))
        _ = store.on(.downloadVerified(version: 7))
        _ = store.on(.installed(version: 7))
        if case .ignored = store.on(.healthPassed)[0] {} else { Issue.record("healthPassed before the trial booted must be ignored") }
    }

    /// The scenario of one update: accepted → downloaded → installed → reboot → trial boot → outcome.
    static let scenarios: [[SlotEvent]] = [
        [.boot, .updateAccepted(version: 7, floor: 6), .downloadVerified(version: 7), .installed(version: 7), .boot, .healthPassed],
        [.boot, .updateAccepted(version: 7, floor: 6), .downloadVerified(version: 7), .installed(version: 7), .boot, .healthFailed(reason: "no ack")],
    ]

    @Test(arguments: 0..<2)
    func crashAfterEveryStepBootsAVerifiedSlot(scenario: Int) {
        let events = Self.scenarios[scenario]
        let (complete, _) = run(events, from: factory)
        var crashPoint = 0
        while true {
            let (crashed, cut) = run(events, from: factory, crashAfter: crashPoint)
            guard cut else { break }
            // Restart from what was persisted, with the slot directory as the crash left it, then
            // keep booting (a trial may crash again) until the device settles.
            var device = crashed
            var state = device.persisted
            for _ in 0..<4 {
                device.started = []
                var store = SlotStore(state: state, trialAttempts: 2)
                for action in store.on(.boot) { device.execute(action) }
                #expect(device.startedVerified(), "crash after action \(crashPoint): started \(device.started) with \(device.slots)")
                // A download or install the crash interrupted is resumed by the boot; finish it.
                if case .downloading(let version, _) = store.state.inactive, device.slots[store.state.active.other] == .staged(version) {
                    for action in store.on(.downloadVerified(version: version)) { device.execute(action) }
                }
                if case .verified(let version, _) = store.state.inactive {
                    for action in store.on(.installed(version: version)) { device.execute(action) }
                }
                state = store.state
            }
            #expect(state.inactive == .unbootable, "settles: committed or rolled back (crash \(crashPoint))")
            #expect([4, 7].contains(state.committedVersion))
            #expect(state.floor == (state.committedVersion == 7 ? 6 : 0), "floor rises only with a commit")
            if case .verified(let version) = device.slots[state.active] { #expect(version == state.committedVersion) } else {
                Issue.record("active slot not verified after crash \(crashPoint)")
            }
            crashPoint += 1
        }
        #expect(crashPoint > 10, "every action of the scenario was a crash point")
        #expect(complete.persisted.committedVersion == (scenario == 0 ? 7 : 4))
    }
}
