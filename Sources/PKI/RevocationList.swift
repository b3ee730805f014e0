// The CA's certificate revocation list: every revoked serial, signed by the CA, as PEM.
// mosquitto loads it with `crlfile` and OpenSSL then refuses revoked client certificates.
internal import COpenSSL
import DAQCore
import Foundation

/// A published CRL as written to `ca.crl`.
public struct RevocationList: Sendable, Hashable {
    /// Where it was written.
    public var path: String
    /// The cRLNumber extension (increases with every publication).
    public var number: Int
    /// thisUpdate.
    public var thisUpdate: Date
    /// nextUpdate: after this moment OpenSSL treats the CRL as expired and refuses EVERY client,
    /// so republish (`daqctl pki crl`) well before it.
    public var nextUpdate: Date
    /// Serials (uppercase hex) listed as revoked.
    public var revokedSerials: [String]
}

enum RevocationListBuilder {
    /// A CRL v2 over `revoked`, signed by the CA, as PEM.
    static func pem(revoked: [CertificateRecord], number: Int, thisUpdate: Int, nextUpdate: Int,
                    authority: OwnedCertificate, authorityKey: OwnedKey) throws -> [UInt8] {
        guard let crl = X509_CRL_new() else { throw OpenSSLFailure.error("allocating a CRL") }
        defer { X509_CRL_free(crl) }
        guard X509_CRL_set_version(crl, Int(X509_CRL_VERSION_2)) == 1,
              X509_CRL_set_issuer_name(crl, X509_get_subject_name(authority.pointer)) == 1 else {
            throw OpenSSLFailure.error("setting the CRL version and issuer")
        }
        try ASN1Time.with(thisUpdate) { time in
            guard X509_CRL_set1_lastUpdate(crl, time) == 1 else { throw OpenSSLFailure.error("setting thisUpdate") }
        }
        try ASN1Time.with(nextUpdate) { time in
            guard X509_CRL_set1_nextUpdate(crl, time) == 1 else { throw OpenSSLFailure.error("setting nextUpdate") }
        }
        for record in revoked {
            try addEntry(crl, record)
        }
        guard X509_CRL_sort(crl) == 1 else { throw OpenSSLFailure.error("sorting the CRL") }

        guard let crlNumber = ASN1_INTEGER_new() else { throw OpenSSLFailure.error("allocating the CRL number") }
        defer { ASN1_INTEGER_free(crlNumber) }
        guard ASN1_INTEGER_set(crlNumber, number) == 1,
              X509_CRL_add1_ext_i2d(crl, NID_crl_number, crlNumber, 0, 0) == 1 else {
            throw OpenSSLFailure.error("adding the CRL number")
        }
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, authority.pointer, nil, nil, crl, 0)
        guard let keyIdentifier = X509V3_EXT_conf_nid(nil, &context, NID_authority_key_identifier, "keyid:always") else {
            throw OpenSSLFailure.error("building the CRL's authorityKeyIdentifier")
        }
        defer { X509_EXTENSION_free(keyIdentifier) }
        guard X509_CRL_add_ext(crl, keyIdentifier, -1) == 1 else {
            throw OpenSSLFailure.error("adding the CRL's authorityKeyIdentifier")
        }
        guard X509_CRL_sign(crl, authorityKey.pointer, EVP_sha256()) > 0 else {
            throw OpenSSLFailure.error("signing the CRL")
        }
        return try PEM.write("writing the PEM CRL") { PEM_write_bio_X509_CRL($0, crl) }
    }

    private static func addEntry(_ crl: OpaquePointer, _ record: CertificateRecord) throws {
        guard let entry = X509_REVOKED_new() else { throw OpenSSLFailure.error("allocating a CRL entry") }
        var owned = false
        // Until X509_CRL_add0_revoked succeeds the entry is ours to free; afterwards the CRL owns it.
        defer { if !owned { X509_REVOKED_free(entry) } }
        try SerialNumber.withASN1Integer(record.serial) { serial in
            guard X509_REVOKED_set_serialNumber(entry, serial) == 1 else {
                throw OpenSSLFailure.error("setting revoked serial \(record.serial)")
            }
        }
        let revokedAt = Int((record.revokedAt ?? Date()).timeIntervalSince1970)
        try ASN1Time.with(revokedAt) { time in
            guard X509_REVOKED_set_revocationDate(entry, time) == 1 else {
                throw OpenSSLFailure.error("setting the revocation date of \(record.serial)")
            }
        }
        guard X509_CRL_add0_revoked(crl, entry) == 1 else { throw OpenSSLFailure.error("adding \(record.serial) to the CRL") }
        owned = true
    }
}
