// The signed update manifest: what one artifact is, which devices may take it, and the bytes the
// release key signs. Its encoding is canonical text (see RecordLines), so signer and device agree
// on every byte without a general-purpose serializer.
import DAQCore

/// What an artifact is; each kind has its own version sequence on the device.
public enum UpdateKind: String, Sendable, Hashable, CaseIterable {
    /// A daqlink binary for the inactive A/B slot (applied by a trial boot).
    case firmware
    /// An experiment file (channel groups), applied at a clean record boundary.
    case experiment
    /// A device certificate bundle, used for the next connection.
    case certificates
}

/// One artifact's signed description.
public struct UpdateManifest: Sendable, Hashable {
    /// First line of every manifest; also separates manifest signatures from any other use of the key.
    public static let header = "daqlink-ota-manifest 1"
    /// Largest manifest accepted (the real ones are about 300 bytes).
    public static let maximumSize = 1024
    /// The field names in their one canonical order.
    public static let fieldOrder = ["kind", "version", "sha256", "length", "hardware", "floor", "expires", "artifact"]

    /// What the artifact is.
    public var kind: UpdateKind
    /// Release version; strictly increasing per kind.
    public var version: UInt64
    /// SHA-256 of the artifact, 64 lowercase hex digits.
    public var sha256: String
    /// Exact artifact length in bytes; a download may never exceed it.
    public var length: UInt64
    /// The hardware id this artifact is built for.
    public var hardwareID: String
    /// Anti-rollback floor: once this release is committed the device refuses versions below it.
    public var floor: UInt64
    /// Unix seconds after which the manifest is refused (freeze attacks).
    public var expires: Int64
    /// The artifact's file name beside the manifest (a `SafeName`).
    public var artifactName: String

    /// A manifest from its fields (not yet validated; `encoded()` and the parser validate).
    public init(kind: UpdateKind, version: UInt64, sha256: String, length: UInt64, hardwareID: String,
                floor: UInt64, expires: Int64, artifactName: String) {
        self.kind = kind
        self.version = version
        self.sha256 = sha256
        self.length = length
        self.hardwareID = hardwareID
        self.floor = floor
        self.expires = expires
        self.artifactName = artifactName
    }

    /// The canonical bytes (what is signed). Throws if a field is invalid, naming it.
    public func encoded(file: String = "<manifest>") throws -> [UInt8] {
        try validate(file: file)
        return RecordLines.encode(header: Self.header, fields: [
            ("kind", kind.rawValue), ("version", String(version)), ("sha256", sha256), ("length", String(length)),
            ("hardware", hardwareID), ("floor", String(floor)), ("expires", String(expires)), ("artifact", artifactName),
        ])
    }

    /// Parses canonical manifest bytes; every error is a DAQError naming `file`, the line and the field.
    public static func parse(_ bytes: [UInt8], file: String) throws -> UpdateManifest {
        let values = try RecordLines.decode(bytes, header: header, keys: fieldOrder, maximumSize: maximumSize, file: file)
        guard let kind = UpdateKind(rawValue: values[0]) else {
            throw DAQError.malformed("unknown kind '\(values[0])' (firmware, experiment, certificates)", file: file, line: 2, field: "kind")
        }
        let expires = try RecordLines.unsigned(values[6], file: file, line: 8, field: "expires")
        guard expires <= UInt64(Int64.max) else {
            throw DAQError.malformed("expiry out of range", file: file, line: 8, field: "expires")
        }
        let manifest = UpdateManifest(
            kind: kind,
            version: try RecordLines.unsigned(values[1], file: file, line: 3, field: "version"),
            sha256: values[2],
            length: try RecordLines.unsigned(values[3], file: file, line: 5, field: "length"),
            hardwareID: values[4],
            floor: try RecordLines.unsigned(values[5], file: file, line: 7, field: "floor"),
            expires: Int64(expires),
            artifactName: values[7])
        try manifest.validate(file: file)
        return manifest
    }

    /// Checks the fields a type cannot: digest form, names, floor ≤ version.
    func validate(file: String) throws {
        guard sha256.utf8.count == 64, sha256.utf8.allSatisfy(Self.isLowerHex) else {
            throw DAQError.malformed("sha256 must be 64 lowercase hex digits", file: file, line: 4, field: "sha256")
        }
        guard SafeName.isSafe(hardwareID) else {
            throw DAQError.malformed("hardware id '\(hardwareID)' must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63}", file: file, line: 6, field: "hardware")
        }
        guard floor <= version else {
            throw DAQError.malformed("floor \(floor) is above the version \(version)", file: file, line: 7, field: "floor")
        }
        guard expires >= 0 else {
            throw DAQError.malformed("expiry must not be negative", file: file, line: 8, field: "expires")
        }
        guard SafeName.isSafeArtifactName(artifactName) else {
            throw DAQError.malformed("artifact name '\(artifactName)' must be a plain file name ([A-Za-z0-9_][A-Za-z0-9._-]{0,63}, not *.manifest or *.sig)",
                                     file: file, line: 9, field: "artifact")
        }
    }

    static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }
}
