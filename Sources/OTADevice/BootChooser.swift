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
        var store = SlotStore(state: state, trialAttempts: trialAttempts)
        var events: [SlotEvent] = [.boot]
        var rounds = 0
        while let event = events.first {
            events.removeFirst()
            rounds += 1
            guard rounds < 16 else { throw DAQError(.unsupported, "the bootchooser does not settle (state \(store.state))") }
            var start: Slot?
            for action in store.on(event) {
                switch action {
                case .persist(let next):
                    try directory.persist(next)
                case .report(let report):
                    try outbox.append(kind: .firmware, status: report.status, version: report.version, slot: report.slot, reason: report.reason, time: time)
                case .install(let slot, let version):
                    // A verified download whose install a power cut interrupted: finish it now.
                    do {
                        try SlotInstaller.install(directory: directory, slot: slot, version: version)
                        events.append(.installed(version: version))
                    } catch {
                        events.append(.downloadFailed(reason: "install failed: \(error)"))
                    }
                    start = nil
                case .start(let slot):
                    start = slot
                case .reboot:
                    events.append(.boot)
                case .prepareStaging, .resumeDownload:
                    break  // the running agent resumes downloads
                case .ignored(let why):
                    logger.info("\(why)")
                }
            }
            if !events.isEmpty { continue }
            guard let slot = start else { continue }
            if let problem = directory.verifySlot(slot) {
                if store.runningTrial != nil {
                    logger.error("trial slot \(slot.rawValue) does not verify: \(problem)")
                    events.append(.healthFailed(reason: "image does not verify: \(problem)"))
                    continue
                }
                throw DAQError(.unsupported, "the committed slot \(slot.rawValue) does not verify: \(problem)", at: InputLocation(file: directory.root))
            }
            return slot
        }
        throw DAQError(.unsupported, "the bootchooser chose no slot (state \(store.state))", at: InputLocation(file: directory.root))
    }
}
