// The internal certificate authority: creates the CA, issues broker, collector and device
// certificates, revokes devices and publishes the CRL, all inside one PKI directory.
internal import COpenSSL
import DAQCore
import Foundation

/// What `CertificateAuthority.create` makes besides the CA itself.
public struct AuthoritySettings: Sendable, Hashable {
    /// The CA's CN.
    public var authorityName: String = "DAQLink Internal CA"
    /// CA lifetime; long, because replacing it means re-issuing every device.
    public var authorityValidityDays: Int = 3650
    /// The broker certificate request.
    public var server = ServerCertificateRequest()
    /// The collector's CN (its MQTT username in the ACL).
    public var collectorName: String = "collector"
    /// Lifetime of the collector certificate.
    public var collectorValidityDays: Int = 825
    /// How long the first (empty) CRL is valid.
    public var revocationListValidityDays: Int = 30

    /// Defaults: localhost / 127.0.0.1 broker, collector "collector".
    public init() {}
}

/// A broker certificate to issue.
public struct ServerCertificateRequest: Sendable, Hashable {
    /// DNS subjectAltNames; the first one is also the CN. Clients verify the broker's name against these.
    public var dnsNames: [String] = ["localhost"]
    /// IP subjectAltNames (IPv4 or IPv6), for clients that connect by address.
    public var ipAddresses: [String] = ["127.0.0.1"]
    /// Lifetime in days.
    public var validityDays: Int = 825

    /// localhost + 127.0.0.1 for 825 days unless changed.
    public init(dnsNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1"], validityDays: Int = 825) {
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.validityDays = validityDays
    }
}

/// A certificate and key pair written into the PKI directory.
public struct IssuedCertificate: Sendable, Hashable {
    /// The index entry.
    public var record: CertificateRecord
    /// Absolute or as-given path of the certificate (PEM, 0644).
    public var certificatePath: String
    /// Path of the private key (PEM, 0600).
    public var keyPath: String
}

/// The CA living in a PKI directory (see `PKILayout`). Every operation loads what it needs from
/// disk, holds the directory lock while it changes files, and frees its OpenSSL objects before returning.
public struct CertificateAuthority: Sendable {
    /// The files of this PKI.
    public let layout: PKILayout

    /// Opens an existing PKI; throws if the CA certificate, key or index is missing.
    public init(opening layout: PKILayout) throws {
        for path in [layout.caCertificate, layout.caKey, layout.index] where !AtomicFile.exists(path) {
            throw DAQError(.io, "not a PKI directory (missing \(path)); run `daqctl pki init` first",
                           at: InputLocation(file: path))
        }
        self.layout = layout
    }

    /// Creates a new CA with its broker certificate, collector certificate and an empty CRL.
    /// Refuses to replace an existing CA unless `overwrite` (every certificate it issued would stop verifying).
    @discardableResult
    public static func create(_ layout: PKILayout, settings: AuthoritySettings = AuthoritySettings(),
                              overwrite: Bool = false) throws -> CertificateAuthority {
        try CommonName.validateDisplayName(settings.authorityName, field: "CA name")
        try CommonName.validateClientName(settings.collectorName, field: "collector name")
        try validate(settings.server)
        // Every lifetime is checked before anything is written: a refusal never leaves half a PKI.
        let now = Validity.now()
        let notAfter = try Validity.end(days: settings.authorityValidityDays, from: now, what: "CA validity")
        let lifetime = AuthorityLifetime(notAfter: notAfter, file: layout.caCertificate)
        _ = try Validity.end(days: settings.server.validityDays, from: now, what: "broker certificate validity", issuer: lifetime)
        _ = try Validity.end(days: settings.collectorValidityDays, from: now, what: "collector certificate validity", issuer: lifetime)
        _ = try Validity.end(days: settings.revocationListValidityDays, from: now, what: "CRL validity", issuer: lifetime)
        try AtomicFile.makeDirectory(layout.directory, mode: 0o700)
        try AtomicFile.withLock(layout.lockFile) {
            if !overwrite, let existing = [layout.caCertificate, layout.caKey].first(where: AtomicFile.exists) {
                throw DAQError(.unsupported, "a CA already exists here; pass --force to replace it (every certificate it issued stops verifying)",
                               at: InputLocation(file: existing))
            }
            OpenSSLFailure.clearQueue()
            let key = try OwnedKey.generateP256()
            let serial = try SerialNumber.random()
            let template = CertificateTemplate.authority(commonName: settings.authorityName, serial: serial,
                                                         notBefore: now - Validity.skew, notAfter: notAfter)
            let certificate = try CertificateBuilder.sign(template, subjectKey: key, issuer: nil, issuerKey: key)
            try AtomicFile.write(key.pem(), to: layout.caKey, mode: AtomicFile.privateKeyMode)
            try AtomicFile.write(certificate.pem(), to: layout.caCertificate, mode: AtomicFile.publicMode)
            var index = CertificateIndex()
            index.certificates.append(CertificateRecord(
                serial: serial, commonName: settings.authorityName, role: .authority,
                notBefore: Validity.date(now - Validity.skew), notAfter: Validity.date(notAfter), certificateFile: "ca.crt"))
            try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode)
        }
        let authority = try CertificateAuthority(opening: layout)
        try authority.issueServerCertificate(settings.server)
        try authority.issueCollectorCertificate(commonName: settings.collectorName,
                                                validityDays: settings.collectorValidityDays)
        try authority.publishRevocationList(validityDays: settings.revocationListValidityDays)
        return authority
    }

    /// The index as it is on disk now.
    public func index() throws -> CertificateIndex {
        try CertificateIndex.decode(AtomicFile.read(layout.index), file: layout.index)
    }

    /// Issues (or replaces) the broker certificate `server.crt` / `server.key`.
    @discardableResult
    public func issueServerCertificate(_ request: ServerCertificateRequest) throws -> IssuedCertificate {
        try Self.validate(request)
        let names = request.dnsNames.map { "DNS:\($0)" } + request.ipAddresses.map { "IP:\($0)" }
        let commonName = request.dnsNames.first ?? request.ipAddresses[0]
        return try issue(role: .server, commonName: commonName, validityDays: request.validityDays, what: "broker certificate validity",
                         certificatePath: layout.serverCertificate, keyPath: layout.serverKey,
                         relativeFile: "server.crt", subjectAlternativeNames: names) { serial, from, until in
            .server(commonName: commonName, subjectAlternativeNames: names, serial: serial, notBefore: from, notAfter: until)
        }
    }

    /// Issues (or replaces) the collector's client certificate `collector.crt` / `collector.key`.
    @discardableResult
    public func issueCollectorCertificate(commonName: String = "collector", validityDays: Int = 825) throws -> IssuedCertificate {
        try CommonName.validateClientName(commonName, field: "collector name")
        return try issue(role: .collector, commonName: commonName, validityDays: validityDays, what: "collector certificate validity",
                         certificatePath: layout.collectorCertificate, keyPath: layout.collectorKey,
                         relativeFile: "collector.crt") { serial, from, until in
            .client(commonName: commonName, serial: serial, notBefore: from, notAfter: until)
        } checkIndex: { index in
            if index.active(.device, commonName: commonName).count > 0 {
                throw DAQError(.unsupported, "'\(commonName)' is already a device's id; the collector needs its own name")
            }
        }
    }

    /// Issues a device certificate `devices/<id>.crt` / `.key` with CN = `deviceID`.
    /// Refuses a name already used by the collector or the broker, and a device that still has an
    /// unrevoked certificate unless `replacingActive` (the old one stays valid until revoked).
    @discardableResult
    public func issueDeviceCertificate(_ deviceID: String, validityDays: Int = 365,
                                       replacingActive: Bool = false) throws -> IssuedCertificate {
        try CommonName.validateClientName(deviceID)
        try AtomicFile.makeDirectory(layout.devicesDirectory, mode: 0o700)
        return try issue(role: .device, commonName: deviceID, validityDays: validityDays, what: "device certificate validity",
                         certificatePath: layout.deviceCertificate(deviceID), keyPath: layout.deviceKey(deviceID),
                         relativeFile: "devices/\(deviceID).crt") { serial, from, until in
            .client(commonName: deviceID, serial: serial, notBefore: from, notAfter: until)
        } checkIndex: { index in
            // A device named like the collector would get the collector's ACL rights.
            if let other = index.certificates.first(where: { $0.role != .device && $0.commonName == deviceID }) {
                throw DAQError(.unsupported, "'\(deviceID)' is the \(other.role.rawValue)'s name and cannot be a device id")
            }
            if !replacingActive, let active = index.active(.device, commonName: deviceID).last {
                throw DAQError(.unsupported, "device '\(deviceID)' already has an unrevoked certificate (serial \(active.serial)); revoke it first, or pass --force to issue another")
            }
        }
    }

    /// Renews device `deviceID`: a new certificate (new serial, new validity) for the key its
    /// certificate `devices/<id>.crt` holds, which must be one of its unrevoked certificates. The
    /// key does not change, and the device already holds it, so the new certificate is all the
    /// device needs. A certificate is public, and useless without its key: a device whose
    /// certificate has expired may fetch it without a client certificate (docs/ota.md,
    /// "Certificate renewal"). A revoked device is refused: it gets a new key or nothing.
    @discardableResult
    public func renewDeviceCertificate(_ deviceID: String, validityDays: Int = 365) throws -> IssuedCertificate {
        try renewDevice(deviceID, validityDays: validityDays, period: nil)
    }

    /// `renewDeviceCertificate`, or with `period` an explicit notBefore…notAfter (tests make an
    /// expired certificate with it).
    func renewDevice(_ deviceID: String, validityDays: Int, period: (notBefore: Int, notAfter: Int)?) throws -> IssuedCertificate {
        try CommonName.validateClientName(deviceID)
        let path = layout.deviceCertificate(deviceID)
        let bytes = try AtomicFile.read(path)
        let current = try OwnedCertificate.load(pem: bytes, file: path)
        let currentSerial = try current.serial(file: path)
        let fingerprint = try current.keyFingerprint(file: path)
        let subjectKey = try OwnedKey.publicKey(of: current, file: path)
        return try issue(role: .device, commonName: deviceID, validityDays: validityDays, what: "device certificate validity",
                         certificatePath: path, keyPath: layout.deviceKey(deviceID), relativeFile: "devices/\(deviceID).crt",
                         subjectKey: subjectKey, period: period) { serial, from, until in
            .client(commonName: deviceID, serial: serial, notBefore: from, notAfter: until)
        } checkIndex: { index in
            // Read outside the lock: a `pki device --force` since then would pair the new key's
            // file with a certificate of the old one.
            guard (try? AtomicFile.read(path)) == bytes else {
                throw DAQError(.unsupported, "changed while it was being renewed; run `pki renew` again", at: InputLocation(file: path))
            }
            let records = index.certificates.filter { $0.role == .device && $0.commonName == deviceID }
            guard let position = index.certificates.firstIndex(where: {
                $0.role == .device && $0.commonName == deviceID && Self.sameSerial($0.serial, currentSerial)
            }) else {
                throw DAQError(.unsupported, "serial \(currentSerial) is not a certificate this CA issued to '\(deviceID)' (\(layout.index) has no such record)",
                               at: InputLocation(file: path, field: "serial"))
            }
            // This certificate revoked, or any other of the same key (a renewal, before).
            if let revoked = records.first(where: { $0.isRevoked && (Self.sameSerial($0.serial, currentSerial) || $0.keyFingerprint == fingerprint) }) {
                throw DAQError(.unsupported, "device '\(deviceID)' is revoked (serial \(revoked.serial), the key of \(path)): a revoked key is never renewed; "
                               + "issue a new key and certificate (daqctl pki device --dir \(layout.directory) \(deviceID) --force) if the device is trusted again",
                               at: InputLocation(file: layout.index))
            }
            // A record from before fingerprints were kept gets its own now: revoking either
            // certificate then revokes both.
            if index.certificates[position].keyFingerprint == nil { index.certificates[position].keyFingerprint = fingerprint }
        }
    }

    /// Two serials as hex, equal whatever their case and leading zeros.
    static func sameSerial(_ one: String, _ other: String) -> Bool {
        one.uppercased().drop { $0 == "0" } == other.uppercased().drop { $0 == "0" }
    }

    /// Revokes every unrevoked certificate of device `deviceID` and republishes the CRL.
    /// The broker only notices after it reloads the CRL (SIGHUP or restart).
    @discardableResult
    public func revokeDevice(_ deviceID: String, revocationListValidityDays: Int = 30) throws -> RevocationList {
        try CommonName.validateClientName(deviceID)
        // Checked before the index changes: a revocation recorded but never published would be lost.
        try checkRevocationListValidity(days: revocationListValidityDays)
        try AtomicFile.withLock(layout.lockFile) {
            var index = try index()
            let now = Date()
            var count = 0
            for position in index.certificates.indices
            where index.certificates[position].role == .device && index.certificates[position].commonName == deviceID
                && !index.certificates[position].isRevoked {
                index.certificates[position].revokedAt = now
                count += 1
            }
            guard count > 0 else {
                let known = index.certificates.contains { $0.role == .device && $0.commonName == deviceID }
                throw DAQError(.unsupported, known ? "device '\(deviceID)' is already revoked" : "no certificate was issued to device '\(deviceID)'",
                               at: InputLocation(file: layout.index))
            }
            try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode)
        }
        return try publishRevocationList(validityDays: revocationListValidityDays)
    }

    /// Revokes every unrevoked certificate of device `deviceID` whose key is not the one of
    /// `devices/<id>.crt` (the newest issued): what a key change left valid once the device has
    /// committed its new bundle. Certificates from before the index kept key fingerprints are
    /// left alone and returned as `unknown` (their key may be the current one). Publishes the
    /// CRL when something was revoked.
    public func revokeSuperseded(_ deviceID: String, revocationListValidityDays: Int = 30) throws
        -> (revoked: [CertificateRecord], unknown: [CertificateRecord], list: RevocationList?) {
        try CommonName.validateClientName(deviceID)
        try checkRevocationListValidity(days: revocationListValidityDays)
        let path = layout.deviceCertificate(deviceID)
        let fingerprint = try OwnedCertificate.load(pem: try AtomicFile.read(path), file: path).keyFingerprint(file: path)
        let (revoked, unknown): ([CertificateRecord], [CertificateRecord]) = try AtomicFile.withLock(layout.lockFile) {
            var index = try index()
            guard index.certificates.contains(where: { $0.role == .device && $0.commonName == deviceID && !$0.isRevoked && $0.keyFingerprint == fingerprint }) else {
                throw DAQError(.unsupported, "no unrevoked certificate of '\(deviceID)' in the index is known to have the key of \(path) "
                               + "(revoked, or issued before the index kept key fingerprints: `pki renew` records it); nothing was revoked",
                               at: InputLocation(file: layout.index))
            }
            let now = Date()
            var revoked: [CertificateRecord] = [], unknown: [CertificateRecord] = []
            for position in index.certificates.indices where index.certificates[position].role == .device
                && index.certificates[position].commonName == deviceID && !index.certificates[position].isRevoked {
                switch index.certificates[position].keyFingerprint {
                case nil: unknown.append(index.certificates[position])
                case fingerprint: continue
                default:
                    index.certificates[position].revokedAt = now
                    revoked.append(index.certificates[position])
                }
            }
            if !revoked.isEmpty { try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode) }
            return (revoked, unknown)
        }
        return (revoked, unknown, revoked.isEmpty ? nil : try publishRevocationList(validityDays: revocationListValidityDays))
    }

    /// Revokes the one certificate with `serial` (hex, as `pki list` shows it): an old or leaked
    /// collector certificate, or one device certificate of several. The CA cannot be revoked by
    /// its own CRL, and a broker certificate's revocation would reach no one (devices do not check
    /// a CRL): both are refused, saying so.
    /// Every other unrevoked certificate of the same key (a renewal's, or the one it renewed) is
    /// revoked with it, and returned as `alsoRevoked`: revoking a certificate because its key
    /// leaked must not leave another certificate of that key valid.
    @discardableResult
    public func revoke(serial: String, revocationListValidityDays: Int = 30) throws
        -> (record: CertificateRecord, alsoRevoked: [CertificateRecord], list: RevocationList) {
        try checkRevocationListValidity(days: revocationListValidityDays)
        let record: (CertificateRecord, [CertificateRecord]) = try AtomicFile.withLock(layout.lockFile) {
            var index = try index()
            guard let position = index.certificates.firstIndex(where: { Self.sameSerial($0.serial, serial) }) else {
                throw DAQError(.unsupported, "no certificate with serial \(serial) was issued by this CA (daqctl pki list shows them)",
                               at: InputLocation(file: layout.index))
            }
            let found = index.certificates[position]
            switch found.role {
            case .authority:
                throw DAQError(.unsupported, "serial \(serial) is the CA itself: a CA is replaced (daqctl pki init --force), not revoked")
            case .server:
                throw DAQError(.unsupported, "serial \(serial) is a broker certificate: devices do not check a CRL, so revoking it would "
                               + "change nothing; issue a new one (daqctl pki server) and restart the broker")
            case .collector, .device:
                break
            }
            guard !found.isRevoked else {
                throw DAQError(.unsupported, "serial \(serial) (\(found.role.rawValue) '\(found.commonName)') is already revoked")
            }
            let now = Date()
            index.certificates[position].revokedAt = now
            var siblings: [CertificateRecord] = []
            if let fingerprint = found.keyFingerprint {
                for other in index.certificates.indices where !index.certificates[other].isRevoked
                    && index.certificates[other].keyFingerprint == fingerprint {
                    index.certificates[other].revokedAt = now
                    siblings.append(index.certificates[other])
                }
            }
            try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode)
            return (index.certificates[position], siblings)
        }
        return (record.0, record.1, try publishRevocationList(validityDays: revocationListValidityDays))
    }

    /// Writes a fresh CRL (`ca.crl`) listing every revoked serial, valid for `validityDays`.
    @discardableResult
    public func publishRevocationList(validityDays: Int = 30) throws -> RevocationList {
        try AtomicFile.withLock(layout.lockFile) {
            OpenSSLFailure.clearQueue()
            var index = try index()
            let (certificate, key) = try loadAuthority()
            let now = Validity.now()
            let until = try Validity.end(days: validityDays, from: now, what: "CRL validity",
                                         issuer: authorityLifetime(certificate))
            let number = index.nextCRLNumber
            // thisUpdate backdated like the certificates' notBefore: a broker whose clock lags
            // refused every client while the CRL was "not yet valid".
            let pem = try RevocationListBuilder.pem(revoked: index.revoked, number: number, thisUpdate: now - Validity.skew,
                                                    nextUpdate: until, authority: certificate, authorityKey: key)
            try AtomicFile.write(pem, to: layout.revocationList, mode: AtomicFile.publicMode)
            index.nextCRLNumber = number + 1
            try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode)
            return RevocationList(path: layout.revocationList, number: number, thisUpdate: Validity.date(now - Validity.skew),
                                  nextUpdate: Validity.date(until), revokedSerials: index.revoked.map(\.serial))
        }
    }

    // MARK: - Shared issue path

    /// Issues one certificate. With `subjectKey` (a renewal) no key is made or written; with
    /// `period` the validity is that, not `validityDays` from now.
    private func issue(role: CertificateRole, commonName: String, validityDays: Int, what: String,
                       certificatePath: String, keyPath: String, relativeFile: String,
                       subjectAlternativeNames: [String] = [], subjectKey: OwnedKey? = nil,
                       period: (notBefore: Int, notAfter: Int)? = nil,
                       template: (String, Int, Int) -> CertificateTemplate,
                       checkIndex: (inout CertificateIndex) throws -> Void = { _ in }) throws -> IssuedCertificate {
        try AtomicFile.withLock(layout.lockFile) {
            OpenSSLFailure.clearQueue()
            var index = try index()
            try checkIndex(&index)
            let (authority, authorityKey) = try loadAuthority()
            let now = Validity.now()
            let notBefore = period?.notBefore ?? now - Validity.skew
            let notAfter = try period?.notAfter ?? Validity.end(days: validityDays, from: now, what: what, issuer: authorityLifetime(authority))
            let serial = try SerialNumber.random()
            let key = try subjectKey ?? OwnedKey.generateP256()
            let certificate = try CertificateBuilder.sign(template(serial, notBefore, notAfter), subjectKey: key,
                                                          issuer: authority, issuerKey: authorityKey)
            // The index first: a certificate that reaches the disk is always in it, so it can be
            // revoked (written last, a crash left an unrevocable one). Then the key, then the
            // certificate: a first issue never leaves a certificate without its key.
            let record = CertificateRecord(serial: serial, commonName: commonName, role: role,
                                           notBefore: Validity.date(notBefore), notAfter: Validity.date(notAfter),
                                           subjectAlternativeNames: subjectAlternativeNames, certificateFile: relativeFile,
                                           keyFingerprint: try certificate.keyFingerprint(file: certificatePath))
            index.certificates.append(record)
            try AtomicFile.write(index.encoded(), to: layout.index, mode: AtomicFile.publicMode)
            if subjectKey == nil { try AtomicFile.write(key.pem(), to: keyPath, mode: AtomicFile.privateKeyMode) }
            try AtomicFile.write(certificate.pem(), to: certificatePath, mode: AtomicFile.publicMode)
            return IssuedCertificate(record: record, certificatePath: certificatePath, keyPath: keyPath)
        }
    }

    /// The end of the CA's lifetime, as its certificate says.
    private func authorityLifetime(_ certificate: OwnedCertificate) throws -> AuthorityLifetime {
        AuthorityLifetime(notAfter: try certificate.notAfter(file: layout.caCertificate), file: layout.caCertificate)
    }

    /// Throws unless a CRL valid for `days` from now would fit inside the CA's lifetime.
    private func checkRevocationListValidity(days: Int) throws {
        let certificate = try OwnedCertificate.load(pem: AtomicFile.read(layout.caCertificate), file: layout.caCertificate)
        _ = try Validity.end(days: days, from: Validity.now(), what: "CRL validity", issuer: authorityLifetime(certificate))
    }

    private func loadAuthority() throws -> (OwnedCertificate, OwnedKey) {
        let certificate = try OwnedCertificate.load(pem: AtomicFile.read(layout.caCertificate), file: layout.caCertificate)
        let key = try OwnedKey.load(pem: AtomicFile.read(layout.caKey), file: layout.caKey)
        guard X509_check_private_key(certificate.pointer, key.pointer) == 1 else {
            throw OpenSSLFailure.error("matching ca.key to ca.crt", file: layout.caKey)
        }
        return (certificate, key)
    }

    private static func validate(_ request: ServerCertificateRequest) throws {
        guard !request.dnsNames.isEmpty || !request.ipAddresses.isEmpty else {
            throw DAQError(.malformedInput, "the broker certificate needs at least one DNS name or IP address")
        }
        for name in request.dnsNames { try CommonName.validateDNSName(name) }
        for address in request.ipAddresses { try IPAddressText.validate(address) }
    }
}
