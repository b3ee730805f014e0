// Builds and signs one X.509 v3 certificate: subject, serial, validity, public key and the v3
// extensions of its role (CA, server, client), signed ECDSA-SHA256 by the issuer's key.
internal import COpenSSL
import DAQCore

/// What to put into one certificate.
struct CertificateTemplate {
    var commonName: String
    var serial: String
    var notBefore: Int
    var notAfter: Int
    /// (NID, OpenSSL extension value) pairs, in order; `critical,` prefixes mark critical ones.
    var extensions: [(nid: Int32, value: String)]

    /// CA: may sign certificates and CRLs, nothing else; pathlen 0 since there are no intermediates.
    static func authority(commonName: String, serial: String, notBefore: Int, notAfter: Int) -> CertificateTemplate {
        CertificateTemplate(commonName: commonName, serial: serial, notBefore: notBefore, notAfter: notAfter, extensions: [
            (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
            (NID_key_usage, "critical,keyCertSign,cRLSign"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ])
    }

    /// TLS server: serverAuth only, so the broker's key can never pose as a device.
    static func server(commonName: String, subjectAlternativeNames: [String], serial: String,
                       notBefore: Int, notAfter: Int) -> CertificateTemplate {
        CertificateTemplate(commonName: commonName, serial: serial, notBefore: notBefore, notAfter: notAfter, extensions: [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, "serverAuth"),
            (NID_subject_alt_name, subjectAlternativeNames.joined(separator: ",")),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ])
    }

    /// TLS client (device or collector): clientAuth only, so a device key can never pose as the broker.
    static func client(commonName: String, serial: String, notBefore: Int, notAfter: Int) -> CertificateTemplate {
        CertificateTemplate(commonName: commonName, serial: serial, notBefore: notBefore, notAfter: notAfter, extensions: [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, "clientAuth"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ])
    }
}

enum CertificateBuilder {
    /// Signs `template` for `subjectKey`. `issuer` nil means self-signed (the CA), in which case
    /// `issuerKey` is `subjectKey`.
    static func sign(_ template: CertificateTemplate, subjectKey: OwnedKey,
                     issuer: OwnedCertificate?, issuerKey: OwnedKey) throws -> OwnedCertificate {
        guard let raw = X509_new() else { throw OpenSSLFailure.error("allocating a certificate") }
        let certificate = OwnedCertificate(raw)
        let x509 = certificate.pointer

        guard X509_set_version(x509, Int(X509_VERSION_3)) == 1 else { throw OpenSSLFailure.error("setting version 3") }
        try SerialNumber.withASN1Integer(template.serial) { serial in
            guard X509_set_serialNumber(x509, serial) == 1 else { throw OpenSSLFailure.error("setting the serial") }
        }
        try ASN1Time.with(template.notBefore) { time in
            guard X509_set1_notBefore(x509, time) == 1 else { throw OpenSSLFailure.error("setting notBefore") }
        }
        try ASN1Time.with(template.notAfter) { time in
            guard X509_set1_notAfter(x509, time) == 1 else { throw OpenSSLFailure.error("setting notAfter") }
        }
        try setSubject(x509, commonName: template.commonName)
        let issuerName = issuer.map { X509_get_subject_name($0.pointer) } ?? X509_get_subject_name(x509)
        guard X509_set_issuer_name(x509, issuerName) == 1 else { throw OpenSSLFailure.error("setting the issuer") }
        guard X509_set_pubkey(x509, subjectKey.pointer) == 1 else { throw OpenSSLFailure.error("setting the public key") }

        // The extension context must see the issuer (for authorityKeyIdentifier) and the subject
        // (for subjectKeyIdentifier); a self-signed CA is its own issuer, so its SKI goes in first.
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.pointer ?? x509, x509, nil, nil, 0)
        for (nid, value) in template.extensions {
            guard let extensionObject = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw OpenSSLFailure.error("building extension \(String(cString: OBJ_nid2sn(nid))) = \(value)")
            }
            defer { X509_EXTENSION_free(extensionObject) }
            guard X509_add_ext(x509, extensionObject, -1) == 1 else {
                throw OpenSSLFailure.error("adding extension \(String(cString: OBJ_nid2sn(nid)))")
            }
        }
        guard X509_sign(x509, issuerKey.pointer, EVP_sha256()) > 0 else {
            throw OpenSSLFailure.error("signing the certificate for \(template.commonName)")
        }
        return certificate
    }

    private static func setSubject(_ x509: OpaquePointer, commonName: String) throws {
        guard let name = X509_NAME_new() else { throw OpenSSLFailure.error("allocating a name") }
        defer { X509_NAME_free(name) }
        let added = commonName.withCString { cn in
            cn.withMemoryRebound(to: UInt8.self, capacity: commonName.utf8.count + 1) {
                X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, $0, -1, -1, 0)
            }
        }
        guard added == 1 else { throw OpenSSLFailure.error("setting CN=\(commonName)") }
        // X509_set_subject_name copies the name, so ours is freed by the defer above.
        guard X509_set_subject_name(x509, name) == 1 else { throw OpenSSLFailure.error("setting the subject") }
    }
}
