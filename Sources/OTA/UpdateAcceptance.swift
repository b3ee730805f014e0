// The device's decision on an offered manifest, as one pure function: the signature status, the
// device's own state and the clock come in as values; accept or the first refusal comes out.
// The order of checks puts authenticity first, so nothing unauthenticated influences anything.

/// What the device knows when a manifest of one kind is offered.
public struct DeviceUpdateState: Sendable, Hashable {
    /// This device's hardware id.
    public var hardwareID: String
    /// The version of this kind that runs now (committed).
    public var installedVersion: UInt64
    /// The anti-rollback floor for this kind (raised only at commit).
    public var floor: UInt64
    /// The highest manifest version of this kind ever accepted (also ones that later rolled back).
    public var lastAcceptedVersion: UInt64
    /// Unix seconds now.
    public var now: Int64

    /// The state from its fields.
    public init(hardwareID: String, installedVersion: UInt64, floor: UInt64, lastAcceptedVersion: UInt64, now: Int64) {
        self.hardwareID = hardwareID
        self.installedVersion = installedVersion
        self.floor = floor
        self.lastAcceptedVersion = lastAcceptedVersion
        self.now = now
    }
}

/// Why a manifest was refused; `code` is the stable reason reported in status messages.
public enum UpdateRefusal: Sendable, Hashable, CustomStringConvertible {
    case unsigned
    case malformedSignature
    case badSignature(keyID: String)
    case unknownKey(keyID: String)
    case unsafeName(String)
    case wrongKind(expected: UpdateKind, offered: UpdateKind)
    case wrongHardware(device: String, manifest: String)
    case expired(expires: Int64, now: Int64)
    case belowFloor(version: UInt64, floor: UInt64)
    case replayed(version: UInt64, newestKnown: UInt64)
    case oversize(signedLength: UInt64, observedLength: UInt64)

    /// The stable reason code.
    public var code: String {
        switch self {
        case .unsigned: "unsigned"
        case .malformedSignature: "malformed-signature"
        case .badSignature: "bad-signature"
        case .unknownKey: "unknown-key"
        case .unsafeName: "unsafe-name"
        case .wrongKind: "wrong-kind"
        case .wrongHardware: "wrong-hardware"
        case .expired: "expired"
        case .belowFloor: "below-floor"
        case .replayed: "replayed"
        case .oversize: "oversize"
        }
    }

    public var description: String {
        switch self {
        case .unsigned: "manifest has no signature"
        case .malformedSignature: "signature file does not parse"
        case .badSignature(let key): "signature by key \(key) does not match the manifest"
        case .unknownKey(let key): "signed by key \(key), which is not trusted"
        case .unsafeName(let name): "unsafe file name '\(name)'"
        case .wrongKind(let expected, let offered): "offered a \(offered.rawValue) manifest where a \(expected.rawValue) one was expected"
        case .wrongHardware(let device, let manifest): "built for hardware '\(manifest)', this device is '\(device)'"
        case .expired(let expires, let now): "expired at \(expires) (now \(now))"
        case .belowFloor(let version, let floor): "version \(version) is below the anti-rollback floor \(floor)"
        case .replayed(let version, let newest): "version \(version) is not newer than \(newest) (replayed or downgrade)"
        case .oversize(let signed, let observed): "\(observed) bytes offered, the signed length is \(signed)"
        }
    }
}

/// Accept, or refuse with a reason.
public enum UpdateDecision: Sendable, Hashable {
    case accept
    case refuse(UpdateRefusal)
}

/// The acceptance rules for offered manifests.
public enum UpdateAcceptance {
    /// Decides whether `manifest` may be downloaded and installed.
    /// - Parameters:
    ///   - expectedKind: the kind the device asked for (the `<kind>.manifest` it fetched).
    ///   - observedLength: bytes the server announced or delivered so far, when known.
    ///   - requestedName: any file name the device is about to use for the artifact.
    public static func decide(_ manifest: UpdateManifest, signature: SignatureStatus, device: DeviceUpdateState,
                              expectedKind: UpdateKind? = nil, observedLength: UInt64? = nil,
                              requestedName: String? = nil) -> UpdateDecision {
        switch signature {
        case .valid: break
        case .missing: return .refuse(.unsigned)
        case .malformed: return .refuse(.malformedSignature)
        case .unknownKey(let key): return .refuse(.unknownKey(keyID: key))
        case .invalid(let key): return .refuse(.badSignature(keyID: key))
        }
        for name in [manifest.artifactName, requestedName].compactMap({ $0 }) where !SafeName.isSafeArtifactName(name) {
            return .refuse(.unsafeName(name))
        }
        if let expectedKind, expectedKind != manifest.kind {
            return .refuse(.wrongKind(expected: expectedKind, offered: manifest.kind))
        }
        guard manifest.hardwareID == device.hardwareID else {
            return .refuse(.wrongHardware(device: device.hardwareID, manifest: manifest.hardwareID))
        }
        guard device.now < manifest.expires else { return .refuse(.expired(expires: manifest.expires, now: device.now)) }
        guard manifest.version >= device.floor else { return .refuse(.belowFloor(version: manifest.version, floor: device.floor)) }
        let newest = max(device.installedVersion, device.lastAcceptedVersion)
        guard manifest.version > newest else { return .refuse(.replayed(version: manifest.version, newestKnown: newest)) }
        if let observedLength, observedLength > manifest.length {
            return .refuse(.oversize(signedLength: manifest.length, observedLength: observedLength))
        }
        return .accept
    }
}
