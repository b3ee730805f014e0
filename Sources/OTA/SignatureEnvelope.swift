// The detached signature file beside a manifest (`<kind>.sig`): which release key signed, and the
// Ed25519 signature over the manifest's exact bytes. Naming the key lets a device hold several
// trusted keys (rotation) and tell "signed by a key I do not trust" from "tampered".
import DAQCore

/// A detached manifest signature.
public struct SignatureEnvelope: Sendable, Hashable {
    /// First line of every signature file.
    public static let header = "daqlink-ota-signature 1"
    /// Largest signature file accepted.
    public static let maximumSize = 512
    /// The only algorithm used.
    public static let algorithm = "ed25519"

    /// The signing key's id: 16 lowercase hex digits (the first 8 bytes of SHA-256 of the raw public key).
    public var keyID: String
    /// The 64-byte Ed25519 signature.
    public var signature: [UInt8]

    /// An envelope for `signature` made with key `keyID`.
    public init(keyID: String, signature: [UInt8]) {
        self.keyID = keyID
        self.signature = signature
    }

    /// The canonical bytes of the signature file.
    public func encoded() -> [UInt8] {
        RecordLines.encode(header: Self.header, fields: [
            ("algorithm", Self.algorithm), ("key", keyID), ("signature", Hex.encode(signature)),
        ])
    }

    /// Parses a signature file; errors name `file`, the line and the field.
    public static func parse(_ bytes: [UInt8], file: String) throws -> SignatureEnvelope {
        let values = try RecordLines.decode(bytes, header: header, keys: ["algorithm", "key", "signature"],
                                            maximumSize: maximumSize, file: file)
        guard values[0] == algorithm else {
            throw DAQError.malformed("unsupported algorithm '\(values[0])' (only ed25519)", file: file, line: 2, field: "algorithm")
        }
        guard values[1].utf8.count == 16, values[1].utf8.allSatisfy(UpdateManifest.isLowerHex) else {
            throw DAQError.malformed("key id must be 16 lowercase hex digits", file: file, line: 3, field: "key")
        }
        guard let signature = Hex.decode(values[2]), signature.count == 64 else {
            throw DAQError.malformed("signature must be 128 lowercase hex digits", file: file, line: 4, field: "signature")
        }
        return SignatureEnvelope(keyID: values[1], signature: signature)
    }
}

/// What the device concluded about a manifest's signature.
public enum SignatureStatus: Sendable, Hashable {
    /// A trusted key verified it.
    case valid(keyID: String)
    /// No signature file was there.
    case missing
    /// The signature file did not parse.
    case malformed
    /// Signed by a key the device does not trust.
    case unknownKey(keyID: String)
    /// A trusted key's signature that does not match the manifest bytes (tampered manifest or signature).
    case invalid(keyID: String)

    /// Decides the status of `envelope` (nil = absent) over `manifest`. `verify(keyID, signature,
    /// message)` is the crypto adapter, called only for a key in `trustedKeyIDs`.
    public static func check(envelope: [UInt8]?, manifest: [UInt8], trustedKeyIDs: Set<String>,
                             verify: (String, [UInt8], [UInt8]) -> Bool) -> SignatureStatus {
        guard let envelope else { return .missing }
        guard let parsed = try? SignatureEnvelope.parse(envelope, file: "<signature>") else { return .malformed }
        guard trustedKeyIDs.contains(parsed.keyID) else { return .unknownKey(keyID: parsed.keyID) }
        return verify(parsed.keyID, parsed.signature, manifest) ? .valid(keyID: parsed.keyID) : .invalid(keyID: parsed.keyID)
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    /// `bytes` as lowercase hex.
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of lowercase hex `text`, or nil if it is not (odd length, other characters).
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var index = 0
        while index < chars.count {
            guard let high = nibble(chars[index]), let low = nibble(chars[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): char - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
