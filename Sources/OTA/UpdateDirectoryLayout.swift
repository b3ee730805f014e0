// Where published updates live in the directory nginx serves (pure: paths only, no I/O).
//
//   UPDATES/devices/<device-id>/<kind>.manifest, <kind>.sig, <artifact>
//   UPDATES/groups/<group>/<kind>.manifest, <kind>.sig, <artifact>
//   UPDATES/renewals/<device-id>.crt   a renewed certificate (`daqctl pki renew --publish`)
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

    /// Where a device's renewed certificate is published (served without a client certificate
    /// as `/renewal/<id>.crt`); throws if the id is not a `SafeName`.
    public func renewal(for deviceID: String) throws -> String {
        guard SafeName.isSafe(deviceID) else { throw DAQError(.malformedInput, "device id '\(deviceID)' is not a safe name", at: InputLocation(file: directory, field: "device")) }
        return directory + "/renewals/" + deviceID + ".crt"
    }

    /// The manifest's published name for `kind` (the name a device polls).
    public static func manifestName(_ kind: UpdateKind) -> String { kind.rawValue + ".manifest" }
    /// The signature's published name for `kind`.
    public static func signatureName(_ kind: UpdateKind) -> String { kind.rawValue + ".sig" }
}
