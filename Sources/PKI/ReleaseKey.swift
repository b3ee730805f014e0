// Ed25519 release keys for signing OTA manifests, over OpenSSL's EVP interface (EVP_DigestSign /
// EVP_DigestVerify with no digest: Ed25519 hashes internally). The private key is a PKCS#8 PEM
// file with mode 0600 from creation on; the public key is a SubjectPublicKeyInfo PEM file a device
// trusts. Each EVP object is freed exactly once: keys in deinit, contexts and BIOs with `defer`.
internal import COpenSSL
import DAQCore

/// The files `ReleaseKeyFiles.generate` writes into a directory.
public struct ReleaseKeyFiles: Sendable, Hashable {
    /// `release.key`: the private key (0600; stays on the release machine).
    public var privateKey: String
    /// `release.pub`: the public key devices trust.
    public var publicKey: String
    /// The key id that signatures name.
    public var keyID: String

    /// Generates a fresh Ed25519 key pair into `directory` (created 0700 if missing). Refuses to
    /// replace an existing key: every device trusting it would have to be re-provisioned.
    public static func generate(into directory: String) throws -> ReleaseKeyFiles {
        let files = ReleaseKeyFiles(privateKey: directory + "/release.key", publicKey: directory + "/release.pub", keyID: "")
        try AtomicFile.makeDirectory(directory, mode: 0o700)
        for path in [files.privateKey, files.publicKey] where AtomicFile.exists(path) {
            throw DAQError(.unsupported, "a release key already exists here; remove it first (devices trusting it must be re-provisioned)",
                           at: InputLocation(file: path))
        }
        OpenSSLFailure.clearQueue()
        let key = try Ed25519Key.generate()
        try AtomicFile.write(key.privatePEM(), to: files.privateKey, mode: AtomicFile.privateKeyMode)
        try AtomicFile.write(key.publicPEM(), to: files.publicKey, mode: AtomicFile.publicMode)
        var result = files
        result.keyID = try key.keyID()
        return result
    }
}

/// A release signing key loaded from its private PEM file.
public final class ReleaseSigningKey {
    private let key: Ed25519Key
    /// The id signatures made with this key carry.
    public let keyID: String

    /// Loads `path` (a PKCS#8 Ed25519 private key).
    public init(path: String) throws {
        OpenSSLFailure.clearQueue()
        key = try Ed25519Key.load(pem: AtomicFile.read(path), file: path, isPrivate: true)
        keyID = try key.keyID()
    }

    /// The 64-byte Ed25519 signature of `message`.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw OpenSSLFailure.error("allocating a signing context") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, nil, nil, key.pointer) == 1 else { throw OpenSSLFailure.error("starting an Ed25519 signature") }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = signature.count
        let status = message.withUnsafeBufferPointer { EVP_DigestSign(context, &signature, &length, $0.baseAddress, $0.count) }
        guard status == 1, length == 64 else { throw OpenSSLFailure.error("signing with Ed25519") }
        return signature
    }

    /// The matching public key as PEM.
    public func publicKeyPEM() throws -> [UInt8] { try key.publicPEM() }
}

/// A trusted release public key.
public final class ReleaseVerificationKey: @unchecked Sendable {
    // Sendable: the EVP_PKEY is never mutated after loading, and verification makes its own context.
    private let key: Ed25519Key
    /// The id signatures made with the matching private key carry.
    public let keyID: String

    /// Parses a public key PEM; `file` names it in errors.
    public init(pem: [UInt8], file: String) throws {
        OpenSSLFailure.clearQueue()
        key = try Ed25519Key.load(pem: pem, file: file, isPrivate: false)
        keyID = try key.keyID()
    }

    /// Loads the public key file at `path`.
    public convenience init(path: String) throws {
        try self.init(pem: AtomicFile.read(path), file: path)
    }

    /// True only when `signature` is this key's valid Ed25519 signature of `message`.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == 64, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        defer { ERR_clear_error() } // a failed verification leaves queue entries nobody should inherit
        guard EVP_DigestVerifyInit(context, nil, nil, nil, key.pointer) == 1 else { return false }
        let status = signature.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { EVP_DigestVerify(context, sig.baseAddress, sig.count, $0.baseAddress, $0.count) }
        }
        return status == 1
    }
}

/// An owned Ed25519 EVP_PKEY.
final class Ed25519Key {
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    static func generate() throws -> Ed25519Key {
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw OpenSSLFailure.error("allocating an Ed25519 key context") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_keygen(context, &key) == 1, let key else {
            throw OpenSSLFailure.error("generating an Ed25519 key")
        }
        return Ed25519Key(key)
    }

    /// Parses a private (PKCS#8) or public (SubjectPublicKeyInfo) PEM and insists on Ed25519.
    static func load(pem: [UInt8], file: String, isPrivate: Bool) throws -> Ed25519Key {
        let parsed = try PEM.withReadBIO(pem, file: file) { bio in
            isPrivate ? PEM_read_bio_PrivateKey(bio, nil, nil, nil) : PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let parsed else { throw unreadable(pem, file: file, isPrivate: isPrivate) }
        let key = Ed25519Key(parsed)
        guard EVP_PKEY_get_id(parsed) == EVP_PKEY_ED25519 else {
            throw DAQError(.unsupported, "not an Ed25519 key (release keys are Ed25519)", at: InputLocation(file: file))
        }
        return key
    }

    /// Why `pem` gave no key: no PEM at all, the wrong half of a key pair (or another PEM object),
    /// or, for a damaged key, OpenSSL's own reason. The usual mix-up is release.pub for release.key.
    private static func unreadable(_ pem: [UInt8], file: String, isPrivate: Bool) -> DAQError {
        let wanted = isPrivate ? "a private key: --key wants the private key, e.g. release.key"
                               : "a public key: give the release public key, e.g. release.pub"
        let text = String(decoding: pem, as: UTF8.self)
        guard let begin = text.range(of: "-----BEGIN "),
              let end = text.range(of: "-----", range: begin.upperBound..<text.endIndex) else {
            OpenSSLFailure.clearQueue()
            return DAQError(.malformedInput, "not a PEM file (no -----BEGIN line), so not \(wanted)", at: InputLocation(file: file))
        }
        let label = String(text[begin.upperBound..<end.lowerBound])
        if label.hasSuffix("PRIVATE KEY") != isPrivate {
            OpenSSLFailure.clearQueue()
            return DAQError(.malformedInput, "holds a \(label.lowercased()) (BEGIN \(label)), not \(wanted)", at: InputLocation(file: file))
        }
        return OpenSSLFailure.error(isPrivate ? "reading a PEM private key" : "reading a PEM public key", file: file)
    }

    func privatePEM() throws -> [UInt8] {
        try PEM.write("writing a PEM private key") { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }

    func publicPEM() throws -> [UInt8] {
        try PEM.write("writing a PEM public key") { PEM_write_bio_PUBKEY($0, pointer) }
    }

    /// The first 8 bytes of SHA-256 over the raw 32-byte public key, as 16 hex digits.
    func keyID() throws -> String {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(pointer, &raw, &length) == 1, length == 32 else {
            throw OpenSSLFailure.error("reading the raw Ed25519 public key")
        }
        var digest = [UInt8](repeating: 0, count: 32)
        var digestLength: UInt32 = 0
        guard EVP_Digest(raw, raw.count, &digest, &digestLength, EVP_sha256(), nil) == 1 else {
            throw OpenSSLFailure.error("hashing the public key")
        }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.prefix(8).flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }
}

/// Every release public key a device trusts, by key id: two during a key rotation, one otherwise.
public struct ReleaseTrustStore: Sendable {
    private let keys: [String: ReleaseVerificationKey]

    /// Loads each public key file; refuses an empty list and duplicate keys.
    public init(publicKeyPaths: [String]) throws {
        guard !publicKeyPaths.isEmpty else { throw DAQError(.unsupported, "no trusted release key given") }
        var keys: [String: ReleaseVerificationKey] = [:]
        for path in publicKeyPaths {
            let key = try ReleaseVerificationKey(path: path)
            guard keys[key.keyID] == nil else {
                throw DAQError(.malformedInput, "release key \(key.keyID) is listed twice", at: InputLocation(file: path))
            }
            keys[key.keyID] = key
        }
        self.keys = keys
    }

    /// The ids of the trusted keys.
    public var keyIDs: Set<String> { Set(keys.keys) }

    /// True when the trusted key `keyID` verifies `signature` over `message`; false for an unknown id.
    public func verify(keyID: String, signature: [UInt8], message: [UInt8]) -> Bool {
        keys[keyID]?.verify(signature: signature, message: message) ?? false
    }
}
