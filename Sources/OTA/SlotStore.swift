// The A/B slot state machine (pure). Events from the OTA task and the bootchooser go in; the new
// persisted state and the actions to run come out, `.persist` always first. The shell must finish
// `.persist` (write + fsync + rename) before running any later action, so a crash anywhere leaves
// a persisted state from which `.boot` resumes or rolls back, and `.start` only ever names the
// committed slot or an armed trial slot whose image was verified before it was armed.

/// Something that happened to the device's firmware slots.
public enum SlotEvent: Sendable, Hashable {
    /// A firmware manifest passed `UpdateAcceptance`; its download into the inactive slot may begin.
    case updateAccepted(version: UInt64, floor: UInt64)
    /// The downloaded image's length and SHA-256 matched the manifest.
    case downloadVerified(version: UInt64)
    /// The download failed for good (hash mismatch, oversize, disk full): discard it.
    case downloadFailed(reason: String)
    /// The verified image was installed atomically into the inactive slot (rename + fsync done).
    case installed(version: UInt64)
    /// `daqlink boot` starts: choose a slot.
    case boot
    /// The running trial passed its health check (uplink connected, a batch acknowledged).
    case healthPassed
    /// The running trial failed its health check.
    case healthFailed(reason: String)
    /// The bootchooser found the committed slot's image damaged (`reason`); the other slot holds
    /// an image that verifies, of `otherVersion` (nil: it holds none).
    case committedSlotDamaged(reason: String, otherVersion: UInt64?)
}

/// Work for the shell, in order.
public enum SlotAction: Sendable, Hashable {
    /// Write this state durably before doing anything else.
    case persist(BootState)
    /// Clear the inactive slot's staging area (the slot is already persisted as unbootable).
    case prepareStaging(Slot, version: UInt64)
    /// Continue downloading `version` into the slot's staging area (HTTP Range resume).
    case resumeDownload(Slot, version: UInt64)
    /// Install the staged image into the slot atomically; idempotent (re-verifies the hash first).
    case install(Slot, version: UInt64)
    /// Re-execute through `daqlink boot` (a "reboot").
    case reboot
    /// Run the daqlink binary in this slot.
    case start(Slot)
    /// Report a state change (`devices/<id>/ota/status`); never a reason to roll back.
    case report(SlotReport)
    /// The event does not apply in this state; nothing changed.
    case ignored(String)
}

/// One status report: what happened, to which version and slot, and why.
public struct SlotReport: Sendable, Hashable {
    /// Stable state name: downloading, verified, installed, trial-boot, committed, rolled-back,
    /// download-failed, fallen-back (the committed slot was damaged; the other one took over).
    public var status: String
    /// The firmware version concerned.
    public var version: UInt64
    /// The slot concerned.
    public var slot: Slot
    /// Why, for failures and rollbacks.
    public var reason: String?

    /// A report from its fields.
    public init(status: String, version: UInt64, slot: Slot, reason: String? = nil) {
        self.status = status
        self.version = version
        self.slot = slot
        self.reason = reason
    }
}

/// The bootchooser and update state of the A/B slot directory.
public struct SlotStore: Sendable {
    /// Boots a trial gets before it falls back.
    public let trialAttempts: UInt8
    /// The last persisted state (what a restart resumes from).
    public private(set) var state: BootState
    /// The slot started in this run (nil before `.boot`); not persisted.
    public private(set) var running: Slot?

    /// A store resuming from `state` (read from disk, or `BootState.factory`). `running` is the
    /// slot `daqlink boot` started this process from (nil in the bootchooser itself).
    public init(state: BootState, trialAttempts: UInt8 = 3, running: Slot? = nil) {
        precondition(trialAttempts > 0, "a trial needs at least one boot attempt")
        self.state = state
        self.trialAttempts = trialAttempts
        self.running = running
    }

    /// True while the running slot is an armed trial that still needs its health check.
    public var runningTrial: (version: UInt64, slot: Slot)? {
        if case .trial(let version, _, _) = state.inactive, let running, running == state.active.other {
            return (version, running)
        }
        return nil
    }

    /// Applies `event`; returns the actions for the shell (`.persist` first when the state changed).
    public mutating func on(_ event: SlotEvent) -> [SlotAction] {
        let inactiveSlot = state.active.other
        switch (event, state.inactive) {
        case (.updateAccepted(let version, let floor), .unbootable), (.updateAccepted(let version, let floor), .downloading):
            guard version > max(state.committedVersion, state.lastAcceptedVersion), version >= state.floor, floor <= version else {
                return [.ignored("version \(version) is not a newer release above floor \(state.floor)")]
            }
            var next = state
            next.lastAcceptedVersion = version
            next.inactive = .downloading(version: version, floor: floor)
            return persist(next) + [.prepareStaging(inactiveSlot, version: version),
                                    .report(SlotReport(status: "downloading", version: version, slot: inactiveSlot))]

        case (.downloadVerified(let version), .downloading(let expected, let floor)) where version == expected:
            var next = state
            next.inactive = .verified(version: version, floor: floor)
            return persist(next) + [.install(inactiveSlot, version: version),
                                    .report(SlotReport(status: "verified", version: version, slot: inactiveSlot))]

        case (.downloadFailed(let reason), .downloading(let version, _)), (.downloadFailed(let reason), .verified(let version, _)):
            // In `verified`: the install failed (a full or failing card). Ignoring it left the
            // state `verified`, whose install every boot tried again, then chose no slot.
            var next = state
            next.inactive = .unbootable
            return persist(next) + [.report(SlotReport(status: "download-failed", version: version, slot: inactiveSlot, reason: reason))]

        case (.installed(let version), .verified(let expected, let floor)) where version == expected:
            var next = state
            next.inactive = .trial(version: version, floor: floor, attemptsLeft: trialAttempts)
            return persist(next) + [.report(SlotReport(status: "installed", version: version, slot: inactiveSlot)), .reboot]

        case (.boot, _):
            return boot()

        case (.committedSlotDamaged(let reason, let otherVersion), _) where running == state.active:
            // No trial is armed in the other slot (a trial is started before the committed one is
            // ever checked); what it holds is the release before, or the factory image. It takes
            // over only at or above the floor: anti-rollback holds even here.
            guard let version = otherVersion else {
                return [.ignored("slot \(inactiveSlot.rawValue) holds no image that verifies")]
            }
            guard version >= state.floor else {
                return [.ignored("slot \(inactiveSlot.rawValue) holds version \(version), below the floor \(state.floor)")]
            }
            // Only the release before (or the factory image): a newer one in that slot is a trial
            // that was rolled back (it failed its health check or its boot attempts), and it took
            // over as committed, with no trial, for good (a review).
            guard version <= state.committedVersion else {
                return [.ignored("slot \(inactiveSlot.rawValue) holds version \(version), newer than the committed \(state.committedVersion): "
                                 + "a release that was rolled back, not one to fall back to")]
            }
            let damage = "slot \(state.active.rawValue) (version \(state.committedVersion)) is damaged: \(reason)"
            var next = state
            next.active = inactiveSlot
            next.committedVersion = version
            // The damaged release may be offered and installed again (into the damaged slot).
            next.lastAcceptedVersion = version
            next.inactive = .unbootable
            running = inactiveSlot
            return persist(next) + [.report(SlotReport(status: "fallen-back", version: version, slot: inactiveSlot, reason: damage)),
                                    .start(inactiveSlot)]

        case (.healthPassed, .trial(let version, let floor, _)) where running == inactiveSlot:
            var next = state
            next.active = inactiveSlot
            next.committedVersion = version
            next.floor = max(state.floor, floor)
            next.inactive = .unbootable
            return persist(next) + [.report(SlotReport(status: "committed", version: version, slot: inactiveSlot))]

        case (.healthFailed(let reason), .trial(let version, _, _)) where running == inactiveSlot:
            return rollBack(version: version, reason: reason) + [.reboot]

        default:
            return [.ignored("\(event) does not apply while the inactive slot is \(state.inactive) and \(running.map { "slot \($0.rawValue)" } ?? "no slot") runs")]
        }
    }

    /// The bootchooser: counts a trial boot before starting it, falls back when none are left,
    /// and otherwise starts the committed slot and resumes any unfinished download or install.
    private mutating func boot() -> [SlotAction] {
        let inactiveSlot = state.active.other
        switch state.inactive {
        case .trial(let version, let floor, let attemptsLeft) where attemptsLeft > 0:
            var next = state
            next.inactive = .trial(version: version, floor: floor, attemptsLeft: attemptsLeft - 1)
            running = inactiveSlot
            return persist(next) + [.report(SlotReport(status: "trial-boot", version: version, slot: inactiveSlot,
                                                        reason: "\(attemptsLeft - 1) attempts left after this one")),
                                    .start(inactiveSlot)]
        case .trial(let version, _, _):
            running = state.active
            return rollBack(version: version, reason: "boot attempts exhausted") + [.start(state.active)]
        case .downloading(let version, _):
            running = state.active
            return [.start(state.active), .resumeDownload(inactiveSlot, version: version)]
        case .verified(let version, _):
            running = state.active
            return [.start(state.active), .install(inactiveSlot, version: version)]
        case .unbootable:
            running = state.active
            return [.start(state.active)]
        }
    }

    /// The report of the transition whose `.persist` is `actions[index]`: the first `.report`
    /// after it (and before any other `.persist`). The shell keeps it durably before persisting
    /// the state, so a power cut between the state and the report does not take the report.
    public static func report(ofPersistAt index: Int, in actions: [SlotAction]) -> SlotReport? {
        for action in actions[(index + 1)...] {
            switch action {
            case .persist: return nil
            case .report(let report): return report
            default: continue
            }
        }
        return nil
    }

    private mutating func rollBack(version: UInt64, reason: String) -> [SlotAction] {
        var next = state
        next.inactive = .unbootable
        return persist(next) + [.report(SlotReport(status: "rolled-back", version: version, slot: state.active.other, reason: reason))]
    }

    private mutating func persist(_ next: BootState) -> [SlotAction] {
        var next = next
        next.generation = state.generation + 1
        state = next
        return [.persist(next)]
    }
}
