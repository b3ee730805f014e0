// `daqlink boot` as a shell around the pure SlotStore: read the persisted boot state (or create
// the factory one), let the store choose a slot, finish an install interrupted by a power cut,
// refuse to start a slot whose image does not verify, and return the slot to execute.
import DAQCore
import Logging
import OTA

/// Installs a verified staged firmware image named by its staged manifest.
enum SlotInstaller {
    static func install(directory: SlotDirectory, slot: Slot, version: UInt64) throws {
        guard let manifest = directory.stagedManifest(.firmware), manifest.version == version else {
            throw DAQError(.io, "the staged manifest of firmware \(version) is missing", at: InputLocation(file: directory.stagedManifestPath(.firmware)))
        }
        try directory.installFirmware(into: slot, manifest: manifest)
    }
}

/// The bootchooser.
public struct BootChooser {
    public let directory: SlotDirectory
    public let trialAttempts: UInt8
    private let logger = Logger(label: "daqlink.boot")

    public init(directory: SlotDirectory, trialAttempts: UInt8) {
        self.directory = directory
        self.trialAttempts = trialAttempts
    }

    /// Chooses the slot to start and persists the choice (a trial boot counts an attempt before
    /// it starts). On a device without boot state, slot A's binary becomes the committed
    /// `factoryVersion`. Throws when no verified slot is left.
    public func choose(factoryVersion: UInt64, time: Int64) throws -> Slot {
        try directory.prepare()
        let outbox = try StatusOutbox(directory: directory.statusPath)
        var state: BootState
        if let existing = try directory.loadBootState() {
            state = existing
        } else {
            if let problem = directory.verifySlot(.a) {
                throw DAQError(.unsupported, "no boot state and no factory image: \(problem)", at: InputLocation(file: directory.root))
            }
            state = BootState.factory(version: factoryVersion)
            try directory.persist(state)
            logger.notice("initialised \(directory.root): slot a holds factory firmware \(factoryVersion)")
        }
        // A report that cannot be written (a full card, a failing status directory) never stops
        // the boot: a good slot would not start, and each restart would spend a trial attempt
        // (research item 9: reporting can never cause a rollback; a review).
        do {
            if let recovered = try outbox.recoverFirmwareReport(persistedGeneration: state.generation, time: time) {
                logger.notice("firmware report '\(recovered.status)' of \(recovered.version), lost in a power cut, is in the outbox again")
            }
        } catch {
            logger.error("cannot put back the firmware report a power cut took: \(error) (the boot goes on)")
        }
        var store = SlotStore(state: state, trialAttempts: trialAttempts)
        var events: [SlotEvent] = [.boot]
        var rounds = 0
        // The slot to start: chosen by the store, kept across rounds (an install that fails at
        // boot still starts the committed slot).
        var start: Slot?
        var refusal: String?
        var damaged: String?
        while let event = events.first {
            events.removeFirst()
            rounds += 1
            guard rounds < 16 else { throw DAQError(.unsupported, "the bootchooser does not settle (state \(store.state))") }
            let actions = store.on(event)
            var persisted: UInt64?
            for (index, action) in actions.enumerated() {
                switch action {
                case .persist(let next):
                    try outbox.persist(next, action: index, of: actions, in: directory)
                    persisted = next.generation
                case .report(let report):
                    do {
                        try outbox.append(kind: .firmware, status: report.status, version: report.version, slot: report.slot, reason: report.reason,
                                          time: time, bootGeneration: persisted)
                    } catch {
                        logger.error("cannot put the firmware report '\(report.status)' of \(report.version) in the outbox: \(error) (the boot goes on)")
                    }
                case .install(let slot, let version):
                    // A verified download whose install a power cut interrupted: finish it now.
                    do {
                        try SlotInstaller.install(directory: directory, slot: slot, version: version)
                        events.append(.installed(version: version))
                        start = nil  // it reboots into the trial
                    } catch {
                        logger.error("installing firmware \(version) into slot \(slot.rawValue) failed: \(error)")
                        events.append(.downloadFailed(reason: "install failed: \(error)"))
                    }
                case .start(let slot):
                    start = slot
                case .reboot:
                    events.append(.boot)
                case .prepareStaging, .resumeDownload:
                    break  // the running agent resumes downloads
                case .ignored(let why):
                    refusal = why
                    logger.info("\(why)")
                }
            }
            if !events.isEmpty { continue }
            guard let slot = start else { continue }
            if let problem = directory.verifySlot(slot) {
                start = nil
                if store.runningTrial != nil {
                    logger.error("trial slot \(slot.rawValue) does not verify: \(problem)")
                    events.append(.healthFailed(reason: "image does not verify: \(problem)"))
                    continue
                }
                if slot == store.state.active, damaged == nil {
                    // The committed image is damaged (a card's bit rot, a truncated file): the
                    // other slot's image takes over when it verifies and is not below the floor.
                    logger.error("the committed slot \(slot.rawValue) does not verify: \(problem)")
                    damaged = problem
                    refusal = nil
                    events.append(.committedSlotDamaged(reason: problem, otherVersion: verifiedVersion(slot.other, factoryVersion: factoryVersion)))
                    continue
                }
                throw DAQError(.unsupported, "the committed slot \(slot.rawValue) does not verify: \(problem)", at: InputLocation(file: directory.root))
            }
            return slot
        }
        if let damaged {
            throw DAQError(.unsupported, "the committed slot \(store.state.active.rawValue) does not verify: \(damaged); "
                           + "no slot can take over: \(refusal ?? "none verifies")", at: InputLocation(file: directory.root))
        }
        throw DAQError(.unsupported, "the bootchooser chose no slot (state \(store.state))", at: InputLocation(file: directory.root))
    }

    /// The version `slot` holds when its image verifies: its release manifest's, or for slot a
    /// without one, the factory image's; nil when it does not verify (a manifest that does not
    /// parse does not verify).
    private func verifiedVersion(_ slot: Slot, factoryVersion: UInt64) -> UInt64? {
        guard directory.verifySlot(slot) == nil else { return nil }
        return directory.releaseManifest(slot)?.version ?? (slot == .a ? factoryVersion : nil)
    }
}
