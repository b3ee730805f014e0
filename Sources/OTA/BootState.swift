// The persisted boot state of the A/B slot directory, and its canonical encoding. The slot store
// writes this before every transition; a restart reads the newest copy and resumes from it.
import DAQCore

/// One of the two firmware slots (`slots/a`, `slots/b`).
public enum Slot: String, Sendable, Hashable, CaseIterable {
    case a, b

    /// The other slot.
    public var other: Slot { self == .a ? .b : .a }
}

/// What the inactive slot holds. Only `.trial` makes it bootable; everything else means
/// "never boot this", which is persisted BEFORE the first byte is written into the slot.
public enum InactiveSlot: Sendable, Hashable {
    /// Not bootable: empty, stale or left behind by a rollback.
    case unbootable
    /// Receiving release `version` (download may resume after a restart).
    case downloading(version: UInt64, floor: UInt64)
    /// Hash and length verified; the atomic install into the slot may be (re)done.
    case verified(version: UInt64, floor: UInt64)
    /// Installed and armed: boots `attemptsLeft` more times unless a health check commits it.
    case trial(version: UInt64, floor: UInt64, attemptsLeft: UInt8)
}

/// Everything the bootchooser needs, persisted as one record.
public struct BootState: Sendable, Hashable {
    /// First line of the encoding.
    public static let header = "daqlink-boot-state 1"
    /// Largest encoding accepted.
    public static let maximumSize = 512

    /// Increases with every persisted transition; of two readable copies the higher one wins.
    public var generation: UInt64
    /// The committed, verified slot the device falls back to.
    public var active: Slot
    /// The firmware version in `active`.
    public var committedVersion: UInt64
    /// Anti-rollback floor; raised only when a trial commits.
    public var floor: UInt64
    /// Highest firmware manifest version accepted so far (refuses replays of failed releases).
    public var lastAcceptedVersion: UInt64
    /// The other slot's state.
    public var inactive: InactiveSlot

    /// A state from its fields.
    public init(generation: UInt64 = 0, active: Slot, committedVersion: UInt64, floor: UInt64,
                lastAcceptedVersion: UInt64, inactive: InactiveSlot = .unbootable) {
        self.generation = generation
        self.active = active
        self.committedVersion = committedVersion
        self.floor = floor
        self.lastAcceptedVersion = lastAcceptedVersion
        self.inactive = inactive
    }

    /// A fresh device: slot A holds the factory image `version`, nothing else is bootable.
    public static func factory(version: UInt64) -> BootState {
        BootState(active: .a, committedVersion: version, floor: 0, lastAcceptedVersion: version)
    }

    /// The canonical bytes.
    public func encoded() -> [UInt8] {
        let inactiveText: String
        switch inactive {
        case .unbootable: inactiveText = "unbootable"
        case .downloading(let version, let floor): inactiveText = "downloading:\(version):\(floor)"
        case .verified(let version, let floor): inactiveText = "verified:\(version):\(floor)"
        case .trial(let version, let floor, let attempts): inactiveText = "trial:\(version):\(floor):\(attempts)"
        }
        return RecordLines.encode(header: Self.header, fields: [
            ("generation", String(generation)), ("active", active.rawValue), ("committed", String(committedVersion)),
            ("floor", String(floor)), ("accepted", String(lastAcceptedVersion)), ("inactive", inactiveText),
        ])
    }

    /// Parses a persisted state; errors name `file`, the line and the field.
    public static func parse(_ bytes: [UInt8], file: String) throws -> BootState {
        let values = try RecordLines.decode(bytes, header: header, keys: ["generation", "active", "committed", "floor", "accepted", "inactive"],
                                            maximumSize: maximumSize, file: file)
        guard let active = Slot(rawValue: values[1]) else {
            throw DAQError.malformed("active slot must be a or b", file: file, line: 3, field: "active")
        }
        let state = BootState(
            generation: try RecordLines.unsigned(values[0], file: file, line: 2, field: "generation"),
            active: active,
            committedVersion: try RecordLines.unsigned(values[2], file: file, line: 4, field: "committed"),
            floor: try RecordLines.unsigned(values[3], file: file, line: 5, field: "floor"),
            lastAcceptedVersion: try RecordLines.unsigned(values[4], file: file, line: 6, field: "accepted"),
            inactive: try parseInactive(values[5], file: file))
        guard state.floor <= state.committedVersion else {
            throw DAQError.malformed("floor above the committed version", file: file, line: 5, field: "floor")
        }
        switch state.inactive {
        case .unbootable: break
        case .downloading(let version, let floor), .verified(let version, let floor), .trial(let version, let floor, _):
            // Only a newer release with a floor at or below itself ever reaches the inactive slot.
            guard floor <= version, version > state.committedVersion, version <= state.lastAcceptedVersion else {
                throw DAQError.malformed("inactive release \(version) (floor \(floor)) is inconsistent with committed \(state.committedVersion), accepted \(state.lastAcceptedVersion)",
                                         file: file, line: 7, field: "inactive")
            }
        }
        return state
    }

    private static func parseInactive(_ text: String, file: String) throws -> InactiveSlot {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func number(_ index: Int) throws -> UInt64 {
            try RecordLines.unsigned(parts[index], file: file, line: 7, field: "inactive")
        }
        switch (parts[0], parts.count) {
        case ("unbootable", 1): return .unbootable
        case ("downloading", 3): return .downloading(version: try number(1), floor: try number(2))
        case ("verified", 3): return .verified(version: try number(1), floor: try number(2))
        case ("trial", 4):
            guard let attempts = UInt8(exactly: try number(3)) else {
                throw DAQError.malformed("attempts out of range", file: file, line: 7, field: "inactive")
            }
            return .trial(version: try number(1), floor: try number(2), attemptsLeft: attempts)
        default:
            throw DAQError.malformed("'\(text)' is not unbootable, downloading:V:F, verified:V:F or trial:V:F:N", file: file, line: 7, field: "inactive")
        }
    }
}
