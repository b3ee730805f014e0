// The PKI's record of every certificate it issued: serial, CN, role, validity, revocation.
// Revocation works from this file (by CN → serials), so it is the CA's memory, kept as JSON.
import DAQCore
import Foundation

/// What a certificate is for; decides its extensions and its place in the PKI directory.
public enum CertificateRole: String, Codable, Sendable, CaseIterable {
    /// The self-signed certificate authority.
    case authority = "ca"
    /// The broker (extendedKeyUsage serverAuth, subjectAltNames).
    case server
    /// The fleet-side collector client (clientAuth; reads every device's topics).
    case collector
    /// One data-acquisition device (clientAuth; CN = device id = MQTT username).
    case device
}

/// One issued certificate as the index remembers it.
public struct CertificateRecord: Codable, Sendable, Hashable {
    /// The serial number as uppercase hex (what `openssl x509 -serial` and `openssl crl -text` print).
    public var serial: String
    /// The subject CN.
    public var commonName: String
    /// What the certificate is for.
    public var role: CertificateRole
    /// Start of validity.
    public var notBefore: Date
    /// End of validity.
    public var notAfter: Date
    /// subjectAltNames (server certificates), as `DNS:name` / `IP:address`.
    public var subjectAlternativeNames: [String]
    /// The certificate file, relative to the PKI directory.
    public var certificateFile: String
    /// When the certificate was revoked; nil while it is in good standing.
    public var revokedAt: Date?
    /// SHA-256 of its public key (hex): a renewal signs the same key again, so revoking one
    /// certificate revokes every one of its key. Nil in records written before it was kept.
    public var keyFingerprint: String?

    /// True once revoked.
    public var isRevoked: Bool { revokedAt != nil }

    /// A record for a freshly issued certificate.
    public init(serial: String, commonName: String, role: CertificateRole, notBefore: Date, notAfter: Date,
                subjectAlternativeNames: [String] = [], certificateFile: String, revokedAt: Date? = nil,
                keyFingerprint: String? = nil) {
        self.serial = serial
        self.commonName = commonName
        self.role = role
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.subjectAlternativeNames = subjectAlternativeNames
        self.certificateFile = certificateFile
        self.revokedAt = revokedAt
        self.keyFingerprint = keyFingerprint
    }
}

/// The contents of `index.json`.
public struct CertificateIndex: Codable, Sendable, Hashable {
    /// Format version of the file.
    public var version: Int
    /// The number the next CRL will carry (RFC 5280: monotonically increasing).
    public var nextCRLNumber: Int
    /// Every certificate issued by this CA, in issue order.
    public var certificates: [CertificateRecord]

    /// An empty index for a new CA.
    public init() {
        version = 1
        nextCRLNumber = 1
        certificates = []
    }

    /// Unrevoked certificates of `role`, optionally only those with CN `commonName`.
    public func active(_ role: CertificateRole, commonName: String? = nil) -> [CertificateRecord] {
        certificates.filter { $0.role == role && !$0.isRevoked && (commonName == nil || $0.commonName == commonName) }
    }

    /// Every revoked certificate (the CRL's contents).
    public var revoked: [CertificateRecord] { certificates.filter(\.isRevoked) }

    /// The CN the collector certificate carries (the ACL's `user` line), if one was issued.
    public var collectorName: String? { active(.collector).last?.commonName }

    /// The JSON bytes written to `index.json` (stable key order so diffs stay readable).
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Parses `index.json`; `file` names it in the error.
    public static func decode(_ bytes: [UInt8], file: String) throws -> CertificateIndex {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(CertificateIndex.self, from: Data(bytes))
        } catch {
            throw DAQError(.malformedInput, "not a DAQLink certificate index: \(error)", at: InputLocation(file: file))
        }
    }
}
