// The uplink stage's C libraries, linked now so later stages (MQTT over mTLS, OTA signatures)
// start from a package that already builds against them.
internal import CMosquitto
internal import COpenSSL

/// Versions of the C libraries the uplink links against, for `--version` and diagnostics.
public enum LinkedLibraries {
    /// libmosquitto's version as `major.minor.revision`.
    public static var mosquittoVersion: String {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        return "\(major).\(minor).\(revision)"
    }

    /// OpenSSL's version text (e.g. `OpenSSL 3.0.19 …`).
    public static var openSSLVersion: String {
        String(cString: OpenSSL_version(Int32(OPENSSL_VERSION)))
    }
}
