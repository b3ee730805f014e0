// Where each file of the internal PKI lives inside its directory (pure: paths only, no I/O).

/// The fixed layout of a PKI directory made by `daqctl pki init`:
///
/// ```
/// ca.crt ca.key ca.crl index.json
/// server.crt server.key
/// collector.crt collector.key
/// devices/<id>.crt devices/<id>.key
/// ```
public struct PKILayout: Sendable, Hashable {
    /// The PKI directory as given (make it absolute before handing paths to a broker).
    public let directory: String

    /// A layout rooted at `directory`.
    public init(directory: String) {
        var trimmed = directory
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.directory = trimmed
    }

    /// `directory/name`.
    public func path(_ name: String) -> String { directory + "/" + name }

    /// The CA's self-signed certificate (the trust anchor devices, collector and broker load).
    public var caCertificate: String { path("ca.crt") }
    /// The CA's private key (0600; never leaves this directory).
    public var caKey: String { path("ca.key") }
    /// The CA's current revocation list, PEM.
    public var revocationList: String { path("ca.crl") }
    /// The JSON index of every certificate issued, with serials and revocation dates.
    public var index: String { path("index.json") }
    /// Serialises concurrent `daqctl pki` runs on this directory.
    var lockFile: String { path(".lock") }
    /// The broker's certificate (serverAuth, SANs).
    public var serverCertificate: String { path("server.crt") }
    /// The broker's private key.
    public var serverKey: String { path("server.key") }
    /// The collector's client certificate.
    public var collectorCertificate: String { path("collector.crt") }
    /// The collector's private key.
    public var collectorKey: String { path("collector.key") }
    /// The folder holding one certificate and key per device.
    public var devicesDirectory: String { path("devices") }
    /// A device's client certificate.
    public func deviceCertificate(_ deviceID: String) -> String { devicesDirectory + "/\(deviceID).crt" }
    /// A device's private key.
    public func deviceKey(_ deviceID: String) -> String { devicesDirectory + "/\(deviceID).key" }
}
