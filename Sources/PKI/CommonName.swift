// Which names may become a certificate CN, a DNS SAN or an IP SAN (pure checks).
//
// A client certificate's CN becomes the MQTT username (use_identity_as_username) and is put into
// topics through the ACL's %u, so it must never contain MQTT wildcards, a topic separator, or
// anything that would break a line of mosquitto's ACL file.

import DAQCore

/// Validation of the names the PKI writes into certificates.
public enum CommonName {
    /// Longest accepted device id / client CN (CN itself allows 64 characters).
    public static let maximumLength = 64

    /// Accepts `[A-Za-z0-9._-]{1,64}`, not starting with `.` or `-`; otherwise throws naming `field`.
    public static func validateClientName(_ name: String, field: String = "device id") throws {
        guard !name.isEmpty, name.utf8.count <= maximumLength else {
            throw DAQError(.malformedInput, "\(field) must be 1–\(maximumLength) characters, got \(name.utf8.count)")
        }
        // The character found as it is, escaped when it is a control character ("ü" showed as
        // the Latin-1 reading of its first byte, a newline was echoed raw).
        for scalar in name.unicodeScalars where !(scalar.isASCII && isNameByte(UInt8(scalar.value))) {
            throw DAQError(.malformedInput,
                           "\(field) \(name.debugDescription) may only contain A–Z a–z 0–9 . _ - (it becomes an MQTT username and topic level); found \(String(scalar).debugDescription)")
        }
        if let first = name.utf8.first, first == UInt8(ascii: ".") || first == UInt8(ascii: "-") {
            throw DAQError(.malformedInput, "\(field) \(name.debugDescription) must not start with '.' or '-'")
        }
    }

    /// Accepts a DNS name for a subjectAltName: letters, digits, `-`, `.`, and a leading `*.` wildcard.
    public static func validateDNSName(_ name: String) throws {
        let body = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
        let ok = !body.isEmpty && body.utf8.count <= 253 && body.utf8.allSatisfy {
            isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
        }
        guard ok else { throw DAQError(.malformedInput, "'\(name)' is not a DNS name usable as a subjectAltName") }
    }

    /// Accepts a free-text CN such as the CA's name: printable ASCII without `,` `/` `=` or control bytes.
    public static func validateDisplayName(_ name: String, field: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= maximumLength && name.utf8.allSatisfy {
            $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "=")
        }
        guard ok else {
            throw DAQError(.malformedInput, "\(field) '\(name)' must be 1–\(maximumLength) printable ASCII characters without , / =")
        }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}
