// The device's update directory on disk: the A/B slots, the persisted boot state, the staging
// areas downloads land in, and the version records of experiments and certificate bundles.
//
//   DIR/boot-state.0, boot-state.1        two copies of BootState; the higher generation wins
//   DIR/slots/a/daqlink, slots/b/daqlink  the slot binaries
//   DIR/slots/<s>/release.manifest        the signed manifest the slot's binary was verified against
//   DIR/staging/<kind>/                   manifest, signature and the artifact being downloaded
//   DIR/<kind>/versions                   ArtifactVersions of experiments and certificates
//   DIR/experiment/experiment-<v>.toml    installed experiments
//   DIR/certificates/…                    pending / current device credentials
//   DIR/status/…                          the status outbox (StatusOutbox)
//
// Every write is atomic (temporary file, fsync, rename, directory fsync), so a power cut leaves
// either the old or the new file, never a mixture.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore
import OTA
import PKI
import Uplink

/// Paths and atomic operations of one update directory.
public struct SlotDirectory: Sendable {
    /// The slot binary's file name.
    public static let binaryName = "daqlink"
    /// The manifest kept beside an installed slot binary.
    public static let releaseManifestName = "release.manifest"

    /// The update directory.
    public let root: String

    /// The directory at `root` (created with `prepare()`).
    public init(root: String) {
        var trimmed = root
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed
    }

    /// `slots/<slot>`.
    public func slotPath(_ slot: Slot) -> String { root + "/slots/" + slot.rawValue }
    /// The slot's binary.
    public func binaryPath(_ slot: Slot) -> String { slotPath(slot) + "/" + Self.binaryName }
    /// The manifest the slot's binary was installed from (absent for the factory slot).
    public func releaseManifestPath(_ slot: Slot) -> String { slotPath(slot) + "/" + Self.releaseManifestName }
    /// Where a download of `kind` is staged.
    public func stagingPath(_ kind: UpdateKind) -> String { root + "/staging/" + kind.rawValue }
    /// The staged artifact (partial while downloading).
    public func stagedArtifactPath(_ kind: UpdateKind) -> String { stagingPath(kind) + "/artifact" }
    /// The staged manifest and signature (kept so a resumed download needs no new manifest).
    public func stagedManifestPath(_ kind: UpdateKind) -> String { stagingPath(kind) + "/manifest" }
    public func stagedSignaturePath(_ kind: UpdateKind) -> String { stagingPath(kind) + "/signature" }
    /// The directory of a slot-less kind's installed files.
    public func kindPath(_ kind: UpdateKind) -> String { root + "/" + kind.rawValue }
    /// The status outbox directory.
    public var statusPath: String { root + "/status" }

    /// Creates the directory tree (idempotent).
    public func prepare() throws {
        for path in [root, root + "/slots", slotPath(.a), slotPath(.b), root + "/staging", statusPath]
            + UpdateKind.allCases.flatMap({ [stagingPath($0), kindPath($0)] }) {
            try AtomicFile.makeDirectory(path, mode: 0o755)
        }
    }

    // MARK: boot state

    private func bootStatePath(_ copy: UInt64) -> String { root + "/boot-state.\(copy % 2)" }

    /// The newest readable boot state, or nil on a device that never had one. A copy that does
    /// not parse (torn by a power cut in an old kernel, bit rot) is skipped; if both copies exist
    /// and neither parses, that is an error naming both.
    public func loadBootState() throws -> BootState? {
        var newest: BootState?
        var problems: [String] = []
        for copy: UInt64 in [0, 1] {
            let path = bootStatePath(copy)
            guard AtomicFile.exists(path) else { continue }
            do {
                let state = try BootState.parse(try AtomicFile.read(path), file: path)
                if newest == nil || state.generation > newest!.generation { newest = state }
            } catch {
                problems.append("\(error)")
            }
        }
        if newest == nil && !problems.isEmpty {
            throw DAQError(.malformedInput, "no readable boot state: " + problems.joined(separator: "; "), at: InputLocation(file: root))
        }
        return newest
    }

    /// Writes `state` durably over the older copy (the other copy stays as it was).
    public func persist(_ state: BootState) throws {
        try AtomicFile.write(state.encoded(), to: bootStatePath(state.generation), mode: AtomicFile.publicMode)
        CrashPoint.reached("boot state \(state.generation): \(state.inactive)", root: root)
    }

    // MARK: staging and install

    /// Empties the staging area of `kind` (the kind's state already says nothing there is used).
    public func clearStaging(_ kind: UpdateKind) throws {
        let directory = stagingPath(kind)
        try AtomicFile.makeDirectory(directory, mode: 0o755)
        for name in ["artifact", "artifact.validator", "manifest", "signature", "failed"] {
            let path = directory + "/" + name
            if unlink(path) != 0 && errno != ENOENT { throw AtomicFile.posixError("cannot remove", path) }
        }
        AtomicFile.syncDirectory(directory)
        CrashPoint.reached("cleared staging/\(kind.rawValue)", root: root)
    }

    /// Keeps the accepted manifest and signature beside the download.
    public func stage(manifest: [UInt8], signature: [UInt8], for kind: UpdateKind) throws {
        try AtomicFile.write(manifest, to: stagedManifestPath(kind), mode: AtomicFile.publicMode)
        try AtomicFile.write(signature, to: stagedSignaturePath(kind), mode: AtomicFile.publicMode)
        CrashPoint.reached("staged the \(kind.rawValue) manifest", root: root)
    }

    /// Records that release `version` of `kind` failed for good (hash, content, disk).
    public func markFailed(_ kind: UpdateKind, version: UInt64) throws {
        try AtomicFile.write(Array("\(version)\n".utf8), to: stagingPath(kind) + "/failed", mode: AtomicFile.publicMode)
    }

    /// The release of `kind` that last failed for good, if any.
    public func failedVersion(_ kind: UpdateKind) -> UInt64? {
        (try? AtomicFile.read(stagingPath(kind) + "/failed")).flatMap { UInt64(String(decoding: $0.dropLast(), as: UTF8.self)) }
    }

    /// The staged manifest of `kind`, if one is there and parses.
    public func stagedManifest(_ kind: UpdateKind) -> UpdateManifest? { Self.manifest(at: stagedManifestPath(kind)) }

    /// The manifest `slot`'s binary was installed from (nil for the factory image, or unreadable).
    public func releaseManifest(_ slot: Slot) -> UpdateManifest? { Self.manifest(at: releaseManifestPath(slot)) }

    private static func manifest(at path: String) -> UpdateManifest? {
        guard let bytes = try? AtomicFile.read(path) else { return nil }
        return try? UpdateManifest.parse(bytes, file: path)
    }

    /// Length of the file at `path` (0 when there is none).
    public static func size(of path: String) -> UInt64 {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_size) : 0
    }

    /// True when the file at `path` has exactly the manifest's length and SHA-256.
    public static func matches(_ path: String, _ manifest: UpdateManifest) -> Bool {
        guard let found = SHA256Digest.file(path) else { return false }
        return found.length == manifest.length && found.sha256 == manifest.sha256
    }

    /// Installs the verified staged firmware into `slot`, atomically and idempotently: the slot's
    /// manifest first, then the binary renamed into place, both fsynced, then the directory.
    /// Repeating it after a crash finds the binary already in place and only re-checks it.
    public func installFirmware(into slot: Slot, manifest: UpdateManifest) throws {
        let staged = stagedArtifactPath(.firmware), target = binaryPath(slot)
        if !Self.matches(staged, manifest) {
            // Already moved by an earlier, interrupted install?
            guard Self.matches(target, manifest), (try? AtomicFile.read(releaseManifestPath(slot))) == (try? manifest.encoded()) else {
                throw DAQError(.io, "the staged image no longer matches version \(manifest.version)'s length and SHA-256",
                               at: InputLocation(file: staged))
            }
            return
        }
        try AtomicFile.makeDirectory(slotPath(slot), mode: 0o755)
        try AtomicFile.write(try manifest.encoded(), to: releaseManifestPath(slot), mode: AtomicFile.publicMode)
        CrashPoint.reached("wrote slot \(slot.rawValue)'s manifest", root: root)
        let fd = open(staged, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.posixError("cannot open", staged) }
        defer { close(fd) }
        guard fchmod(fd, 0o755) == 0, fsync(fd) == 0 else { throw AtomicFile.posixError("cannot make executable and sync", staged) }
        guard rename(staged, target) == 0 else { throw AtomicFile.posixError("cannot rename into the slot", target) }
        AtomicFile.syncDirectory(slotPath(slot))
        AtomicFile.syncDirectory(stagingPath(.firmware))
        CrashPoint.reached("renamed the image into slot \(slot.rawValue)", root: root)
    }

    /// The slot whose `daqlink boot` a "reboot" runs: the committed one, unless its image no
    /// longer verifies and the other one's does (a damaged committed binary ran as the
    /// bootchooser, before any check, after every install and every failed trial; a review).
    /// The bootchooser it starts then finds the damage and falls back by its own rules.
    /// The other slot qualifies as the bootchooser's fallback does: the release before (at or
    /// above the floor, not newer than the committed one: a newer one there is a trial that was
    /// rolled back) or the factory image (no release manifest); or as its trial, armed with
    /// attempts left (an install's reboot: the bootchooser starts the trial first).
    public func rebootSlot() -> Slot {
        guard let state = (try? loadBootState()) ?? nil else { return .a }
        let active = state.active, other = active.other
        guard verifySlot(active) != nil, verifySlot(other) == nil else { return active }
        let version = releaseManifest(other)?.version
        // A trial armed there (just installed: the bootchooser starts it first anyway).
        if case .trial(let trial, _, let attemptsLeft) = state.inactive, attemptsLeft > 0, version == trial { return other }
        if let version, version < state.floor || version > state.committedVersion { return active }
        return other
    }

    /// Checks that `slot` holds a bootable binary: present, executable, and — unless it is the
    /// factory image (no release manifest) — exactly the length and SHA-256 it was installed with.
    public func verifySlot(_ slot: Slot) -> String? {
        let binary = binaryPath(slot)
        guard access(binary, X_OK) == 0 else { return "\(binary) is missing or not executable" }
        let manifestPath = releaseManifestPath(slot)
        guard AtomicFile.exists(manifestPath) else { return nil }
        guard let bytes = try? AtomicFile.read(manifestPath), let manifest = try? UpdateManifest.parse(bytes, file: manifestPath) else {
            return "\(manifestPath) does not parse"
        }
        return Self.matches(binary, manifest) ? nil : "\(binary) does not match its manifest (version \(manifest.version))"
    }

    // MARK: boot arguments

    private var runArgumentsPath: String { root + "/run-arguments" }

    /// Keeps the arguments `daqlink boot` was given for `daqlink run` (NUL-separated).
    public func saveRunArguments(_ arguments: [String]) throws {
        try AtomicFile.write(Array(arguments.joined(separator: "\0").utf8), to: runArgumentsPath, mode: AtomicFile.publicMode)
    }

    /// The arguments the last `daqlink boot` was given for `daqlink run`.
    public func runArguments() throws -> [String] {
        let bytes = try AtomicFile.read(runArgumentsPath)
        return bytes.isEmpty ? [] : bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: other kinds

    private func versionsPath(_ kind: UpdateKind) -> String { kindPath(kind) + "/versions" }

    /// The version record of a slot-less kind (all zero before the first install).
    public func versions(of kind: UpdateKind) throws -> ArtifactVersions {
        let path = versionsPath(kind)
        guard AtomicFile.exists(path) else { return ArtifactVersions() }
        return try ArtifactVersions.parse(try AtomicFile.read(path), file: path)
    }

    /// Persists the version record of a slot-less kind.
    public func persist(_ versions: ArtifactVersions, of kind: UpdateKind) throws {
        try AtomicFile.makeDirectory(kindPath(kind), mode: 0o755)
        try AtomicFile.write(versions.encoded(), to: versionsPath(kind), mode: AtomicFile.publicMode)
        CrashPoint.reached("\(kind.rawValue) versions \(versions)", root: root)
    }

    /// The installed experiment file of `version`.
    public func experimentPath(version: UInt64) -> String { kindPath(.experiment) + "/experiment-\(version).toml" }

    /// The experiment the device should run: the installed one, if any.
    public func installedExperiment() throws -> String? {
        let versions = try versions(of: .experiment)
        guard versions.installed > 0 else { return nil }
        let path = experimentPath(version: versions.installed)
        return AtomicFile.exists(path) ? path : nil
    }

    /// Free bytes for an unprivileged writer on the file system holding `path`.
    public static func freeBytes(at path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }
}
