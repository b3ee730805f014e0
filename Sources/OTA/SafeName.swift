// Which names may become a path component on the server or the device: artifact files, hardware
// ids, device ids and group names. Anything else (slashes, "..", hidden files, control bytes) is
// refused, so no name from a manifest or a command line can walk out of its directory.

/// Validation of names that end up in paths.
public enum SafeName {
    /// Longest accepted name.
    public static let maximumLength = 64
    /// Suffixes reserved for the files `daqctl ota publish` writes beside an artifact.
    public static let reservedSuffixes = [".manifest", ".sig"]

    /// True for `[A-Za-z0-9_][A-Za-z0-9._-]{0,63}`: no separator, never `.`/`..`, never hidden, never an option.
    public static func isSafe(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength, bytes[0] != UInt8(ascii: "."), bytes[0] != UInt8(ascii: "-") else {
            return false
        }
        return bytes.allSatisfy { isNameByte($0) }
    }

    /// True when `name` is safe and does not collide with the manifest and signature files.
    public static func isSafeArtifactName(_ name: String) -> Bool {
        isSafe(name) && !reservedSuffixes.contains { name.hasSuffix($0) }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}
