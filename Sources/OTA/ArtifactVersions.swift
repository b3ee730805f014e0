// The persisted version record of an artifact kind that needs no slot (experiments, certificate
// bundles): what is installed, the anti-rollback floor, and the newest release ever accepted.
// Firmware keeps the same facts in `BootState`.
import DAQCore

/// Versions of one artifact kind on the device.
public struct ArtifactVersions: Sendable, Hashable {
    /// First line of the encoding.
    public static let header = "daqlink-artifact-versions 1"
    /// Largest encoding accepted.
    public static let maximumSize = 256

    /// The version in use (0: the one the device was provisioned with).
    public var installed: UInt64
    /// Anti-rollback floor (raised when a release is installed).
    public var floor: UInt64
    /// The newest version ever accepted, including ones that failed (never retried).
    public var accepted: UInt64

    /// Versions from their fields.
    public init(installed: UInt64 = 0, floor: UInt64 = 0, accepted: UInt64 = 0) {
        self.installed = installed
        self.floor = floor
        self.accepted = accepted
    }

    /// The acceptance rules' view of this kind.
    public func deviceState(hardwareID: String, now: Int64) -> DeviceUpdateState {
        DeviceUpdateState(hardwareID: hardwareID, installedVersion: installed, floor: floor, lastAcceptedVersion: accepted, now: now)
    }

    /// The canonical bytes.
    public func encoded() -> [UInt8] {
        RecordLines.encode(header: Self.header, fields: [
            ("installed", String(installed)), ("floor", String(floor)), ("accepted", String(accepted)),
        ])
    }

    /// Parses a persisted record; errors name `file`, the line and the field.
    public static func parse(_ bytes: [UInt8], file: String) throws -> ArtifactVersions {
        let values = try RecordLines.decode(bytes, header: header, keys: ["installed", "floor", "accepted"],
                                            maximumSize: maximumSize, file: file)
        let versions = ArtifactVersions(
            installed: try RecordLines.unsigned(values[0], file: file, line: 2, field: "installed"),
            floor: try RecordLines.unsigned(values[1], file: file, line: 3, field: "floor"),
            accepted: try RecordLines.unsigned(values[2], file: file, line: 4, field: "accepted"))
        guard versions.floor <= versions.installed || versions.installed == 0 else {
            throw DAQError.malformed("floor above the installed version", file: file, line: 3, field: "floor")
        }
        return versions
    }
}
