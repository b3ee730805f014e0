// The device's MQTT/HTTPS credentials across a certificate rotation. A new bundle is installed as
// "pending"; the uplink tries it on its next connection and only when that connection succeeds is
// it promoted to "current". Until then the old credentials stay on disk and in use for fallback.
//
//   DIR/certificates/bundle-<v>/device.crt, device.key, ca.crt   one bundle (ca.crt: the trust
//                                               anchors it brought or kept; absent: the provisioned CA)
//   DIR/certificates/renewal-<serial>/          a renewed certificate with the key (and anchors) in use
//   DIR/certificates/current -> bundle-<v> | renewal-<serial>   the credentials in use (absent: the provisioned ones)
//   DIR/certificates/pending -> …               credentials awaiting their first successful connection
//   DIR/certificates/versions                   ArtifactVersions (installed = the last promoted bundle's version)
//   DIR/certificates/renewal-refused            the serials of the renewals the broker refused, one per line
//   DIR/certificates/renewal-set-aside          "<serial> <unix time>": renewals that failed while the certificate
//                                               in use had expired, and when each may be tried again
#if canImport(Glibc)
import Glibc
#endif
import DAQCore
import OTA
import PKI

/// Certificate and key file paths, and the trust anchors that came with them.
public struct CredentialFiles: Sendable, Hashable {
    public var certificateFile: String
    public var keyFile: String
    /// The CA certificates a bundle brought (a CA change); nil: the provisioned CA file.
    public var caFile: String?

    public init(certificateFile: String, keyFile: String, caFile: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.caFile = caFile
    }

    /// Whether a connection made with `used` (certificate and key paths) was made with these.
    public func wereUsed(in used: CredentialFiles) -> Bool {
        certificateFile == used.certificateFile && keyFile == used.keyFile
    }
}

/// Current and pending device credentials in an update directory.
public struct CredentialStore: Sendable {
    /// The credentials the device was provisioned with (`--cert/--key` or `--pki`).
    public let provisioned: CredentialFiles
    private let directory: SlotDirectory
    private var base: String { directory.kindPath(.certificates) }

    public init(directory: SlotDirectory, provisioned: CredentialFiles) {
        self.directory = directory
        self.provisioned = provisioned
    }

    /// The certificate and key inside `name` (a bundle directory or a symlink to one), and its
    /// `ca.crt` when the bundle brought trust anchors.
    private func files(_ name: String) -> CredentialFiles {
        let authorities = "\(base)/\(name)/ca.crt"
        return CredentialFiles(certificateFile: "\(base)/\(name)/device.crt", keyFile: "\(base)/\(name)/device.key",
                               caFile: AtomicFile.exists(authorities) ? authorities : nil)
    }

    /// The credentials in use: the last promoted bundle, else the provisioned files.
    public var current: CredentialFiles {
        let installed = files("current")
        return AtomicFile.exists(installed.certificateFile) && AtomicFile.exists(installed.keyFile) ? installed : provisioned
    }

    /// A bundle waiting for its first connection, with its version. Its files are named by the
    /// bundle's own directory, not by the `pending` link: a connection's outcome then belongs to
    /// the credentials it was made with, even when the link has moved on since.
    public var pending: (files: CredentialFiles, version: UInt64)? {
        guard let versions = try? directory.versions(of: .certificates), versions.accepted > versions.installed,
              // A bundle of an older release, superseded by one accepted since, is not this one.
              let target = linkTarget("pending"), target == "bundle-\(versions.accepted)" else { return nil }
        let candidate = files(target)
        guard AtomicFile.exists(candidate.certificateFile), AtomicFile.exists(candidate.keyFile) else { return nil }
        return (candidate, versions.accepted)
    }

    /// A renewed certificate waiting for its first connection, with its serial (files named by
    /// its own directory, as `pending`'s).
    public var pendingRenewal: (files: CredentialFiles, serial: String)? {
        guard let target = linkTarget("pending"), target.hasPrefix(Self.renewalPrefix) else { return nil }
        let candidate = files(target), serial = String(target.dropFirst(Self.renewalPrefix.count))
        guard AtomicFile.exists(candidate.certificateFile), AtomicFile.exists(candidate.keyFile),
              !refusedRenewals.contains(serial), setAsideRenewals[serial] == nil else { return nil }
        return (candidate, serial)
    }

    /// The serial of the renewal in use (`current` names a renewal's directory), else nil.
    public var currentRenewal: String? {
        guard let target = linkTarget("current"), target.hasPrefix(Self.renewalPrefix) else { return nil }
        return String(target.dropFirst(Self.renewalPrefix.count))
    }

    private static let renewalPrefix = "renewal-"
    private var refusedRenewalPath: String { "\(base)/renewal-refused" }

    /// The serials of the renewals the broker refused (never tried again), one per line.
    public var refusedRenewals: Set<String> {
        Set(((try? AtomicFile.read(refusedRenewalPath)) ?? []).split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) })
    }

    private var setAsidePath: String { "\(base)/renewal-set-aside" }

    /// The renewals that failed while the certificate in use had expired (the failures may have
    /// been the broker's, so each is tried again), with the Unix time from which it may be.
    public var setAsideRenewals: [String: Int64] {
        var entries: [String: Int64] = [:]
        for line in ((try? AtomicFile.read(setAsidePath)) ?? []).split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count == 2, let after = Int64(String(decoding: fields[1], as: UTF8.self)) else { continue }
            entries[String(decoding: fields[0], as: UTF8.self)] = after
        }
        return entries
    }

    /// Writes the set-aside renewals, one "serial time" per line.
    private func recordSetAside(_ entries: [String: Int64]) throws {
        let text = entries.keys.sorted().map { "\($0) \(entries[$0]!)" }.joined(separator: "\n")
        try AtomicFile.write(Array(text.utf8), to: setAsidePath, mode: AtomicFile.publicMode)
    }

    /// Stores a checked renewal (the renewed certificate, the key in use and the trust anchors in
    /// use, if a bundle brought them) in its own directory and arms it as `pending`, like a bundle.
    /// A serial refused or set aside before is taken off its list first (the caller tries one
    /// again only once the certificate in use has expired, and a set-aside one once its time
    /// has come): `pendingRenewal` ignored it, and it was never tried.
    public func installRenewal(_ credentials: DeviceCredentials, serial: String) throws {
        guard SafeName.isSafe(serial) else {
            throw DAQError(.malformedInput, "serial '\(serial)' is not a plain hex number", at: InputLocation(file: base, field: "serial"))
        }
        let refused = refusedRenewals
        if refused.contains(serial) { try recordRefused(refused.subtracting([serial])) }
        var setAside = setAsideRenewals
        if setAside.removeValue(forKey: serial) != nil { try recordSetAside(setAside) }
        // A bundle armed whole (its link is written last) whose place this renewal takes.
        if let displaced = pending {
            try AtomicFile.write(Array("bundle-\(displaced.version)".utf8), to: replacedPath, mode: AtomicFile.publicMode)
        }
        try arm(credentials, in: Self.renewalPrefix + serial)
    }

    /// Writes `credentials` into their own directory `name`, then points the `pending` symlink at
    /// it (one atomic rename: a crash leaves no half-armed bundle). The files: key, certificate,
    /// and the trust anchors it brought (else none: the directory's `ca.crt` would outlive a
    /// bundle without).
    private func arm(_ credentials: DeviceCredentials, in name: String) throws {
        try AtomicFile.makeDirectory(base, mode: 0o700)
        try AtomicFile.makeDirectory("\(base)/\(name)", mode: 0o700)
        let target = files(name)
        try AtomicFile.write(credentials.keyPEM, to: target.keyFile, mode: AtomicFile.privateKeyMode)
        try AtomicFile.write(credentials.certificatePEM, to: target.certificateFile, mode: AtomicFile.publicMode)
        let authorities = "\(base)/\(name)/ca.crt"
        if let pem = credentials.authoritiesPEM {
            try AtomicFile.write(pem, to: authorities, mode: AtomicFile.publicMode)
        } else {
            unlink(authorities)
        }
        try swapLink("pending", to: name)
    }

    /// The pending renewal connected: it becomes `current` (one atomic rename). Renewals have no
    /// version: the versions record stays the last bundle's.
    public func promoteRenewal() throws {
        try promoteLink()
        CrashPoint.reached("promoted the pending renewal", root: directory.root)
    }

    /// `pending` renamed over `current` (atomic), the directory synced.
    private func promoteLink() throws {
        guard rename("\(base)/pending", "\(base)/current") == 0 else { throw AtomicFile.posixError("cannot promote", "\(base)/pending") }
        AtomicFile.syncDirectory(base)
    }

    /// Where installing a renewal over a pending bundle records that bundle's directory: the
    /// bundle it took the place of, to be armed again after it (`rearmReplacedBundle`).
    private var replacedPath: String { "\(base)/replaced-by-renewal" }

    /// The bundle a renewal took the place of (recorded by `installRenewal`), when nothing arms
    /// it any more: still the accepted release, not installed, not failed, and `pending` gone or
    /// naming a renewal that was rolled back. (A renewal takes a pending bundle's place only while
    /// the certificate in use has expired; once the renewal connected, was refused or set aside,
    /// the bundle was neither pending nor fetched again, its version being accepted: a change of
    /// CA it brought was lost.) A record, not an inference from what is missing: a rolled-back
    /// bundle whose failed mark a new offer cleared, or one whose directory a power cut left half
    /// written, was never displaced. Its directory name and version.
    private var replacedBundle: (name: String, version: UInt64)? {
        guard let recorded = try? AtomicFile.read(replacedPath), let versions = try? directory.versions(of: .certificates),
              versions.accepted > versions.installed, directory.failedVersion(.certificates) != versions.accepted else { return nil }
        let name = "bundle-\(versions.accepted)"
        guard String(decoding: recorded, as: UTF8.self) == name, linkTarget("current") != name else { return nil }
        switch linkTarget("pending") {
        case nil: return (name, versions.accepted)
        case let target? where target.hasPrefix(Self.renewalPrefix):
            let serial = String(target.dropFirst(Self.renewalPrefix.count))
            return refusedRenewals.contains(serial) || setAsideRenewals[serial] != nil ? (name, versions.accepted) : nil
        default: return nil
        }
    }

    /// Arms again the bundle a renewal took the place of (`replacedBundle`), after the renewal
    /// connected or was rolled back, and at a start (a power cut between the two steps); returns
    /// its version, or nil when there is none.
    @discardableResult
    public func rearmReplacedBundle() throws -> UInt64? {
        guard let bundle = replacedBundle else {
            // A record whose bundle failed, was superseded or installed is done with; one
            // waiting behind a renewal still pending stays.
            if pendingRenewal == nil { forgetReplacedBundle() }
            return nil
        }
        try swapLink("pending", to: bundle.name)
        forgetReplacedBundle()
        return bundle.version
    }

    /// The record of a displaced bundle is done with: armed again, committed, rolled back, or
    /// another bundle installed.
    private func forgetReplacedBundle() {
        guard unlink(replacedPath) == 0 else { return }
        AtomicFile.syncDirectory(base)
    }

    /// The pending renewal never connected: disarm it (arming again the bundle it took the place
    /// of, if any: `rearmReplacedBundle`), and record its serial. Refused
    /// (`retryAfter` nil), the same certificate is not tried again; set aside (the certificate in
    /// use had expired, so the failures may have been the broker's), it may be from
    /// `retryAfter` (Unix time), also after a restart. (Recorded first: a power cut between the
    /// two leaves the link, which `pendingRenewal` ignores, and the record tells the start that
    /// the renewal was rolled back, whose report the cut may have taken.)
    public func discardRenewal(serial: String, retryAfter: Int64?) throws {
        if let retryAfter {
            // Entries due two days before this one are done with (tried again, or never fetched
            // again), and so are those due after it (set by a clock that ran ahead).
            var setAside = setAsideRenewals.filter { $0.value > retryAfter - 2 * 86_400 && $0.value <= retryAfter }
            setAside[serial] = retryAfter
            do {
                try recordSetAside(setAside)
            } catch {
                // Not recorded (a full disk): disarmed all the same, or it would be tried at
                // every reconnect; a restart then tries it at once (or the bundle it displaced).
                unlinkPending()
                throw error
            }
            CrashPoint.reached("set renewal \(serial) aside", root: directory.root)
        } else {
            try recordRefused(refusedRenewals.union([serial]))
            CrashPoint.reached("recorded renewal \(serial) as refused", root: directory.root)
        }
        // The bundle it took the place of is pending again (one rename), else the link goes.
        if try rearmReplacedBundle() == nil { unlinkPending() }
    }

    /// Writes the refused serials, one per line.
    private func recordRefused(_ serials: Set<String>) throws {
        try AtomicFile.write(Array(serials.sorted().joined(separator: "\n").utf8), to: refusedRenewalPath, mode: AtomicFile.publicMode)
    }

    /// Where the link `name` points (nil: no link).
    private func linkTarget(_ name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let length = readlink("\(base)/\(name)", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Stores checked credentials of `version` in their own directory, then points the `pending`
    /// symlink at it (one atomic rename: a crash leaves no half-armed bundle).
    public func installPending(_ credentials: DeviceCredentials, version: UInt64) throws {
        try arm(credentials, in: "bundle-\(version)")
        forgetReplacedBundle()
    }

    /// The pending bundle connected: make it current (one atomic rename), then record its version.
    public func promotePending(version: UInt64, floor: UInt64) throws {
        try promoteLink()
        forgetReplacedBundle()
        CrashPoint.reached("promoted the pending certificates", root: directory.root)
        var versions = try directory.versions(of: .certificates)
        versions.installed = version
        versions.floor = max(versions.floor, floor)
        try directory.persist(versions, of: .certificates)
    }

    /// At a start: finishes a promotion a power cut interrupted between its rename and its
    /// versions record (the `current` link names the accepted bundle, the record an older one);
    /// returns the version. Otherwise the accepted bundle was fetched and installed again, and
    /// reported `installed` twice.
    public func finishInterruptedPromotion(floor: (UInt64) -> UInt64) throws -> UInt64? {
        guard let target = linkTarget("current"), target.hasPrefix("bundle-"), let version = UInt64(target.dropFirst("bundle-".count)),
              !AtomicFile.exists("\(base)/pending") else { return nil }
        var versions = try directory.versions(of: .certificates)
        guard version == versions.accepted, version > versions.installed else { return nil }
        versions.installed = version
        versions.floor = max(versions.floor, floor(version))
        try directory.persist(versions, of: .certificates)
        return version
    }

    /// The pending bundle never connected: disarm it (the caller marks its version failed, so it
    /// is never retried).
    public func discardPending() {
        unlinkPending()
        forgetReplacedBundle()
    }

    private func unlinkPending() {
        unlink("\(base)/pending")
        AtomicFile.syncDirectory(base)
    }

    private func swapLink(_ name: String, to target: String) throws {
        let temporary = "\(base)/.\(name).tmp"
        unlink(temporary)
        guard symlink(target, temporary) == 0 else { throw AtomicFile.posixError("cannot create link", temporary) }
        guard rename(temporary, "\(base)/\(name)") == 0 else { throw AtomicFile.posixError("cannot rename link", "\(base)/\(name)") }
        AtomicFile.syncDirectory(base)
        CrashPoint.reached("certificates link \(name) → \(target)", root: directory.root)
    }
}
