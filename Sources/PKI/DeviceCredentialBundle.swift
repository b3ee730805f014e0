// A device certificate bundle delivered over the air: one PEM file with the device's new
// certificate and its private key. Before the device stores it, the bundle must prove it is
// usable: the key matches the certificate, the certificate chains to the device's CA, is valid
// now, and names this device. A bundle that fails any check is never installed.
internal import COpenSSL
import DAQCore

/// The certificate and key of a checked bundle, as separate PEM files' bytes.
public struct DeviceCredentials: Sendable, Hashable {
    public var certificatePEM: [UInt8]
    public var keyPEM: [UInt8]
}

/// Checks and splits certificate bundles.
public enum DeviceCredentialBundle {
    /// Validates `bundle` (named `file` in errors) for device `deviceID` against the CA in `caFile`.
    public static func validate(_ bundle: [UInt8], deviceID: String, caFile: String, file: String) throws -> DeviceCredentials {
        OpenSSLFailure.clearQueue()
        let certificate = try OwnedCertificate.load(pem: bundle, file: file)
        let key = try OwnedKey.load(pem: bundle, file: file)
        guard X509_check_private_key(certificate.pointer, key.pointer) == 1 else {
            OpenSSLFailure.clearQueue()
            throw DAQError(.malformedInput, "the private key does not belong to the certificate", at: InputLocation(file: file, field: "key"))
        }
        let commonName = try Self.commonName(of: certificate, file: file)
        guard commonName == deviceID else {
            throw DAQError(.malformedInput, "the certificate is for '\(commonName)', this device is '\(deviceID)'", at: InputLocation(file: file, field: "CN"))
        }
        let authority = try OwnedCertificate.load(pem: try AtomicFile.read(caFile), file: caFile)
        guard let store = X509_STORE_new() else { throw OpenSSLFailure.error("allocating a certificate store") }
        defer { X509_STORE_free(store) }
        guard X509_STORE_add_cert(store, authority.pointer) == 1, let context = X509_STORE_CTX_new() else {
            throw OpenSSLFailure.error("preparing certificate verification", file: caFile)
        }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, certificate.pointer, nil) == 1 else {
            throw OpenSSLFailure.error("preparing certificate verification", file: file)
        }
        guard X509_verify_cert(context) == 1 else {
            let reason = String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(context))))
            OpenSSLFailure.clearQueue()
            throw DAQError(.malformedInput, "the certificate does not verify against \(caFile): \(reason)", at: InputLocation(file: file, field: "certificate"))
        }
        return DeviceCredentials(certificatePEM: try certificate.pem(), keyPEM: try key.pem())
    }

    private static func commonName(of certificate: OwnedCertificate, file: String) throws -> String {
        guard let name = X509_get_subject_name(certificate.pointer) else { throw OpenSSLFailure.error("reading the subject", file: file) }
        var buffer = [CChar](repeating: 0, count: 256)
        let length = X509_NAME_get_text_by_NID(name, NID_commonName, &buffer, Int32(buffer.count))
        guard length > 0 else { throw DAQError(.malformedInput, "the certificate has no common name", at: InputLocation(file: file, field: "CN")) }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
