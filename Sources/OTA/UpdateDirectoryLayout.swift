// Where published updates live in the directory nginx serves (pure: paths only, no I/O).
//
//   UPDATES/devices/<device-id>/<kind>.manifest, <kind>.sig, <artifact>
//   UPDATES/groups/<group>/<kind>.manifest, <kind>.sig, <artifact>
//   UPDATES/renewals/<key-sha256>.crt  a renewed certificate (`daqctl pki renew --publish`), named
//                                      by its public key's SHA-256 (hex), not the guessable device id
//
// A device asks for https://server/ota/<name>; nginx answers from its own directory first, then
// from its group's. Device and group names are `SafeName`s.
import DAQCore

/// Who a publication is for.
public enum UpdateAudience: Sendable, Hashable {
    /// One device (its certificate CN).
    case device(String)
    /// Every device mapped to this group.
    case group(String)
}

/// The layout of an update directory.
public struct UpdateDirectoryLayout: Sendable, Hashable {
    /// The update directory as given, without trailing slashes.
    public let directory: String

    /// A layout rooted at `directory`.
    public init(directory: String) {
        var trimmed = directory
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.directory = trimmed
    }

    /// The folder holding an audience's files; throws if the name is not a `SafeName`.
    public func folder(for audience: UpdateAudience) throws -> String {
        switch audience {
        case .device(let id):
            guard SafeName.isSafe(id) else { throw DAQError(.malformedInput, "device id '\(id)' is not a safe name", at: InputLocation(file: directory, field: "device")) }
            return directory + "/devices/" + id
        case .group(let name):
            guard SafeName.isSafe(name) else { throw DAQError(.malformedInput, "group '\(name)' is not a safe name", at: InputLocation(file: directory, field: "group")) }
            return directory + "/groups/" + name
        }
    }

    /// Where a renewed certificate is published (served without a client certificate as
    /// `/renewal/<name>.crt`): `name` is its public key's SHA-256 in hex; throws otherwise.
    public func renewal(named name: String) throws -> String {
        guard Self.isRenewalName(name) else {
            throw DAQError(.malformedInput, "renewal name '\(name)' is not a SHA-256 in hex", at: InputLocation(file: directory, field: "renewal"))
        }
        return directory + "/renewals/" + name + ".crt"
    }

    /// Whether `name` is a renewal's name: 64 lowercase hex digits.
    public static func isRenewalName(_ name: String) -> Bool {
        name.utf8.count == 64 && name.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// The manifest's published name for `kind` (the name a device polls).
    public static func manifestName(_ kind: UpdateKind) -> String { kind.rawValue + ".manifest" }
    /// The signature's published name for `kind`.
    public static func signatureName(_ kind: UpdateKind) -> String { kind.rawValue + ".sig" }
}
