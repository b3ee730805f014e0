// Owning Swift wrappers for the OpenSSL objects the PKI keeps beyond one statement (key,
// certificate), PEM encoding through memory BIOs, and random serial numbers. Each wrapper frees
// its object exactly once, in deinit; transient objects are freed with `defer` where made.
internal import COpenSSL
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

/// An owned EVP_PKEY (EC P-256 here). Used inside one PKI operation, never shared across threads.
final class OwnedKey {
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    /// A fresh EC key on P-256: small keys and fast handshakes on the device's SBC.
    static func generateP256() throws -> OwnedKey {
        guard let key = daqlink_pki_generate_p256() else { throw OpenSSLFailure.error("generating an EC P-256 key") }
        return OwnedKey(key)
    }

    /// The public key a certificate carries (for a renewal: the same key, signed again).
    static func publicKey(of certificate: OwnedCertificate, file: String) throws -> OwnedKey {
        guard let key = X509_get_pubkey(certificate.pointer) else { throw OpenSSLFailure.error("reading the public key", file: file) }
        return OwnedKey(key)
    }

    /// Parses a PEM private key; `file` names it in errors.
    static func load(pem: [UInt8], file: String) throws -> OwnedKey {
        let key = try PEM.withReadBIO(pem, file: file) { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        guard let key else { throw OpenSSLFailure.error("reading a PEM private key", file: file) }
        return OwnedKey(key)
    }

    /// The key as unencrypted PKCS#8 PEM (protected by file mode 0600, not a passphrase: the
    /// device and broker start unattended).
    func pem() throws -> [UInt8] {
        try PEM.write("writing a PEM private key") { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }
}

/// An owned X509 certificate.
final class OwnedCertificate {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_free(pointer) }

    /// Parses a PEM certificate; `file` names it in errors.
    static func load(pem: [UInt8], file: String) throws -> OwnedCertificate {
        let certificate = try PEM.withReadBIO(pem, file: file) { PEM_read_bio_X509($0, nil, nil, nil) }
        guard let certificate else { throw OpenSSLFailure.error("reading a PEM certificate", file: file) }
        return OwnedCertificate(certificate)
    }

    /// Every certificate in a PEM text, in order (other blocks, such as a key, are passed over);
    /// throws when there is none.
    static func loadAll(pem: [UInt8], file: String) throws -> [OwnedCertificate] {
        let found: [OwnedCertificate] = try PEM.withReadBIO(pem, file: file) { bio in
            var certificates: [OwnedCertificate] = []
            while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { certificates.append(OwnedCertificate(certificate)) }
            return certificates
        }
        OpenSSLFailure.clearQueue()  // the end of the text reads as "no start line"
        guard !found.isEmpty else { throw DAQError(.malformedInput, "no PEM certificate in it", at: InputLocation(file: file, field: "certificate")) }
        // Reading stops at a damaged block: what follows it would be dropped unsaid.
        let text = String(decoding: pem, as: UTF8.self)
        let blocks = ["-----BEGIN CERTIFICATE-----", "-----BEGIN X509 CERTIFICATE-----"].reduce(0) { $0 + text.components(separatedBy: $1).count - 1 }
        guard found.count == blocks else {
            throw DAQError(.malformedInput, "certificate \(found.count + 1) of \(blocks) cannot be read", at: InputLocation(file: file, field: "certificate"))
        }
        return found
    }

    /// SHA-256 of the public key (hex): the same for every certificate of one key.
    func keyFingerprint(file: String) throws -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard X509_pubkey_digest(pointer, EVP_sha256(), &digest, &length) == 1 else { throw OpenSSLFailure.error("hashing the public key", file: file) }
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether this is a CA certificate (basicConstraints CA:TRUE), a trust anchor rather than a
    /// device's own.
    var isAuthority: Bool { X509_check_ca(pointer) >= 1 }

    /// The certificate as PEM.
    func pem() throws -> [UInt8] {
        try PEM.write("writing a PEM certificate") { PEM_write_bio_X509($0, pointer) }
    }

    /// The serial number as uppercase hex, as `SerialNumber.random` makes it and the index keeps it.
    func serial(file: String) throws -> String {
        guard let integer = X509_get_serialNumber(pointer), let number = ASN1_INTEGER_to_BN(integer, nil) else {
            throw OpenSSLFailure.error("reading the serial", file: file)
        }
        defer { BN_free(number) }
        guard let hex = BN_bn2hex(number) else { throw OpenSSLFailure.error("formatting the serial", file: file) }
        defer { daqlink_pki_free(hex) }
        return String(cString: hex)
    }

    /// notBefore in seconds since the epoch; `file` names the certificate in errors.
    func notBefore(file: String) throws -> Int {
        var fields = tm()
        guard let time = X509_get0_notBefore(pointer), ASN1_TIME_to_tm(time, &fields) == 1 else {
            throw OpenSSLFailure.error("reading notBefore", file: file)
        }
        return Int(timegm(&fields))
    }

    /// notAfter in seconds since the epoch; `file` names the certificate in errors.
    func notAfter(file: String) throws -> Int {
        var fields = tm()
        guard let time = X509_get0_notAfter(pointer), ASN1_TIME_to_tm(time, &fields) == 1 else {
            throw OpenSSLFailure.error("reading notAfter", file: file)
        }
        return Int(timegm(&fields))
    }
}

/// PEM through memory BIOs.
enum PEM {
    /// Runs `body` with a memory BIO that `body` fills; returns the bytes it wrote.
    static func write(_ action: String, _ body: (OpaquePointer) -> Int32) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSLFailure.error("allocating a memory BIO") }
        defer { BIO_free(bio) }
        guard body(bio) == 1 else { throw OpenSSLFailure.error(action) }
        var bytes: UnsafeMutablePointer<CChar>? = nil
        let count = daqlink_pki_bio_contents(bio, &bytes)
        guard count > 0, let bytes else { throw OpenSSLFailure.error(action) }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }

    /// Runs `body` with a read-only memory BIO over `pem`.
    static func withReadBIO<T>(_ pem: [UInt8], file: String, _ body: (OpaquePointer) -> T) throws -> T {
        try pem.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else {
                throw OpenSSLFailure.error("allocating a memory BIO", file: file)
            }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }
}

/// Certificate serial numbers.
enum SerialNumber {
    /// 128 random bits with the top bit set (always 16 significant bytes, never zero): unpredictable
    /// serials, as CA/Browser practice asks, well inside RFC 5280's 20-octet limit. Returns uppercase hex.
    static func random() throws -> String {
        guard let number = BN_new() else { throw OpenSSLFailure.error("allocating a BIGNUM") }
        defer { BN_free(number) }
        guard BN_rand(number, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 else {
            throw OpenSSLFailure.error("drawing a random serial number")
        }
        guard let hex = BN_bn2hex(number) else { throw OpenSSLFailure.error("formatting a serial number") }
        defer { daqlink_pki_free(hex) }
        return String(cString: hex)
    }

    /// `hex` as a freshly allocated ASN1_INTEGER handed to `body` and freed afterwards.
    static func withASN1Integer<T>(_ hex: String, _ body: (UnsafeMutablePointer<ASN1_INTEGER>) throws -> T) throws -> T {
        var number: OpaquePointer? = nil
        guard BN_hex2bn(&number, hex) > 0, let number else { throw OpenSSLFailure.error("parsing serial \(hex)") }
        defer { BN_free(number) }
        guard let integer = BN_to_ASN1_INTEGER(number, nil) else { throw OpenSSLFailure.error("encoding serial \(hex)") }
        defer { ASN1_INTEGER_free(integer) }
        return try body(integer)
    }
}

/// ASN1_TIME values for validity periods and CRL dates.
enum ASN1Time {
    /// A fresh ASN1_TIME for `seconds` since the epoch, handed to `body` and freed afterwards.
    static func with<T>(_ seconds: Int, _ body: (UnsafeMutablePointer<ASN1_TIME>) throws -> T) throws -> T {
        guard let time = ASN1_TIME_set(nil, time_t(seconds)) else { throw OpenSSLFailure.error("encoding a time") }
        defer { ASN1_TIME_free(time) }
        return try body(time)
    }
}
