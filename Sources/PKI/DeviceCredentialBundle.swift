// A device certificate bundle delivered over the air: one PEM file with the device's new
// certificate and its private key. Before the device stores it, the bundle must prove it is
// usable: the key matches the certificate, the certificate chains to the device's CA, is valid
// now, and names this device. A bundle that fails any check is never installed.
internal import COpenSSL
import DAQCore

/// The certificate and key of a checked bundle, as separate PEM files' bytes, and the trust
/// anchors it carried (nil: none, the device keeps its own).
public struct DeviceCredentials: Sendable, Hashable {
    public var certificatePEM: [UInt8]
    public var keyPEM: [UInt8]
    /// CA certificates that become the device's trust anchors with this bundle (a CA change).
    public var authoritiesPEM: [UInt8]?

    public init(certificatePEM: [UInt8], keyPEM: [UInt8], authoritiesPEM: [UInt8]? = nil) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.authoritiesPEM = authoritiesPEM
    }
}

/// Checks and splits certificate bundles.
public enum DeviceCredentialBundle {
    /// Validates `bundle` (named `file` in errors) for device `deviceID`: against the CA
    /// certificates it carries, which then become the device's trust anchors (a CA change: the
    /// bundle's release signature vouches for them, as it does for firmware), else against the
    /// CA certificates in `caFile`.
    public static func validate(_ bundle: [UInt8], deviceID: String, caFile: String, file: String) throws -> DeviceCredentials {
        OpenSSLFailure.clearQueue()
        let certificates = try OwnedCertificate.loadAll(pem: bundle, file: file)
        let carried = certificates.filter(\.isAuthority)
        let own = certificates.filter { !$0.isAuthority }
        guard own.count == 1, let certificate = own.first else {
            throw DAQError(.malformedInput, "a bundle holds one device certificate (and CA certificates), not \(own.count)",
                           at: InputLocation(file: file, field: "certificate"))
        }
        let key = try OwnedKey.load(pem: bundle, file: file)
        guard X509_check_private_key(certificate.pointer, key.pointer) == 1 else {
            OpenSSLFailure.clearQueue()
            throw DAQError(.malformedInput, "the private key does not belong to the certificate", at: InputLocation(file: file, field: "key"))
        }
        let commonName = try Self.commonName(of: certificate, file: file)
        guard commonName == deviceID else {
            throw DAQError(.malformedInput, "the certificate is for '\(commonName)', this device is '\(deviceID)'", at: InputLocation(file: file, field: "CN"))
        }
        let anchors = carried.isEmpty ? try OwnedCertificate.loadAll(pem: try AtomicFile.read(caFile), file: caFile) : carried
        let anchorsFile = carried.isEmpty ? caFile : file
        guard let store = X509_STORE_new() else { throw OpenSSLFailure.error("allocating a certificate store") }
        defer { X509_STORE_free(store) }
        for anchor in anchors where X509_STORE_add_cert(store, anchor.pointer) != 1 {
            throw OpenSSLFailure.error("preparing certificate verification", file: anchorsFile)
        }
        guard let context = X509_STORE_CTX_new() else { throw OpenSSLFailure.error("preparing certificate verification", file: anchorsFile) }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, certificate.pointer, nil) == 1 else {
            throw OpenSSLFailure.error("preparing certificate verification", file: file)
        }
        guard X509_verify_cert(context) == 1 else {
            let reason = String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(context))))
            OpenSSLFailure.clearQueue()
            let against = carried.isEmpty ? caFile : "the \(carried.count) CA certificate(s) it carries"
            throw DAQError(.malformedInput, "the certificate does not verify against \(against): \(reason)", at: InputLocation(file: file, field: "certificate"))
        }
        let authorities = carried.isEmpty ? nil : try carried.map { try $0.pem() }.reduce([], +)
        return DeviceCredentials(certificatePEM: try certificate.pem(), keyPEM: try key.pem(), authoritiesPEM: authorities)
    }

    /// The name a device's renewal is published under: the SHA-256 (hex) of the public key of the
    /// certificate at `certificatePath`, the same for every certificate of that key. Not the
    /// device id: the renewal listener asks for no client certificate, and ids can be guessed;
    /// the public key travels encrypted in a TLS 1.3 handshake and is known to the device, its PKI
    /// and the broker only.
    public static func renewalName(certificatePath: String) throws -> String {
        try OwnedCertificate.load(pem: try AtomicFile.read(certificatePath), file: certificatePath).keyFingerprint(file: certificatePath)
    }

    /// A renewed certificate checked for use with the key in `keyFile`: no key of its own, and the
    /// `validate` checks (the key matches, this CA, valid now, this device). Returns the
    /// credentials (the renewed certificate, the same key), its serial and its end (seconds since
    /// the epoch: the caller keeps what it has unless the end is later).
    public static func validateRenewal(_ certificate: [UInt8], keyFile: String, deviceID: String, caFile: String,
                                       file: String) throws -> (credentials: DeviceCredentials, serial: String, end: Int) {
        guard !certificate.isEmpty, certificate.count <= maximumRenewalSize else {
            throw DAQError(.malformedInput, "a renewal is one PEM certificate (1 to \(maximumRenewalSize) bytes), not \(certificate.count) bytes",
                           at: InputLocation(file: file))
        }
        guard !String(decoding: certificate, as: UTF8.self).contains("PRIVATE KEY") else {
            throw DAQError(.malformedInput, "a renewal carries a certificate only, never a key", at: InputLocation(file: file, field: "key"))
        }
        // Served without authentication: it can never bring trust anchors (only a signed bundle can).
        let count = try OwnedCertificate.loadAll(pem: certificate, file: file).count
        guard count == 1 else {
            throw DAQError(.malformedInput, "a renewal is one certificate, not \(count): it never carries CA certificates", at: InputLocation(file: file, field: "certificate"))
        }
        // The device's own key first: the bundle's key is the first one in it.
        let credentials = try validate(try AtomicFile.read(keyFile) + [UInt8(ascii: "\n")] + certificate,
                                       deviceID: deviceID, caFile: caFile, file: file)
        let renewed = try OwnedCertificate.load(pem: certificate, file: file)
        return (credentials, try renewed.serial(file: file), try renewed.notAfter(file: file))
    }

    /// Largest renewal accepted (a P-256 certificate is under 1 kB).
    public static let maximumRenewalSize = 16 << 10

    private static func commonName(of certificate: OwnedCertificate, file: String) throws -> String {
        guard let name = X509_get_subject_name(certificate.pointer) else { throw OpenSSLFailure.error("reading the subject", file: file) }
        var buffer = [CChar](repeating: 0, count: 256)
        let length = X509_NAME_get_text_by_NID(name, NID_commonName, &buffer, Int32(buffer.count))
        guard length > 0 else { throw DAQError(.malformedInput, "the certificate has no common name", at: InputLocation(file: file, field: "CN")) }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
