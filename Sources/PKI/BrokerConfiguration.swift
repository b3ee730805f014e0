// The mosquitto 2.0 configuration and ACL for a DAQLink PKI (pure: text from settings, no I/O).
// Every setting carries the reason it is there; see docs/pki.md and shared/research/mosquitto.md.
import DAQCore

/// A mosquitto broker for DAQLink: one mTLS listener, certificate CN as username, per-device ACL.
public struct BrokerConfiguration: Sendable, Hashable {
    /// TCP port of the TLS listener.
    public var port: Int = 8883
    /// Address the listener binds to (loopback unless the broker must face the network).
    public var bindAddress: String = "127.0.0.1"
    /// CA certificate clients must chain to.
    public var caFile: String
    /// The broker's certificate.
    public var certificateFile: String
    /// The broker's private key.
    public var keyFile: String
    /// The CA's CRL; revoked devices are refused at the TLS handshake.
    public var revocationListFile: String
    /// Where the ACL file will be.
    public var aclFile: String
    /// Directory for mosquitto.db.
    public var persistenceDirectory: String
    /// The collector's certificate CN (its username): reads all devices, writes acks and commands.
    public var collectorName: String = "collector"
    /// `user` line: nil keeps mosquitto's default (drop to `mosquitto`). Test/demo brokers started as
    /// root need `root`, because the dropped user cannot read 0600 root-owned keys.
    public var runAsUser: String?
    /// Per-client queue limit; nil = unlimited (0). A limit makes mosquitto drop messages SILENTLY
    /// while still sending PUBACK 0, so only fault-injection brokers set it.
    public var queueLimit: Int?
    /// How long an offline durable session (and its queue) is kept.
    public var persistentClientExpiration: String = "14d"
    /// Seconds between persistence snapshots (the database is a snapshot; kill -9 loses the rest).
    public var autosaveIntervalSeconds: Int = 60
    /// QoS 1/2 messages in flight per client.
    public var maxInflightMessages: Int = 20
    /// Replace the client id with the certificate CN, so device A cannot connect as client id "B"
    /// and take over B's session (mosquitto does not bind client ids to certificates otherwise).
    public var clientIDFromCertificate: Bool = true

    /// A configuration for the PKI in `pki` writing its ACL into `outputDirectory`; data in
    /// `outputDirectory/data` unless `persistenceDirectory` is set. Paths should be absolute.
    public init(pki: PKILayout, outputDirectory: String, collectorName: String = "collector",
                persistenceDirectory: String? = nil) {
        caFile = pki.caCertificate
        certificateFile = pki.serverCertificate
        keyFile = pki.serverKey
        revocationListFile = pki.revocationList
        aclFile = outputDirectory + "/acl"
        self.persistenceDirectory = persistenceDirectory ?? outputDirectory + "/data"
        self.collectorName = collectorName
    }

    /// Throws when a value would produce a broken or unsafe broker.
    public func validate() throws {
        guard (1...65535).contains(port) else { throw DAQError(.malformedInput, "port \(port) is not 1–65535") }
        try CommonName.validateClientName(collectorName, field: "collector name")
        if let queueLimit, queueLimit < 1 {
            throw DAQError(.malformedInput, "--queue-limit must be at least 1 (omit it for unlimited queues)")
        }
        if let runAsUser { try Self.validateUserName(runAsUser) }
        guard Self.expirationSeconds(persistentClientExpiration) != nil else {
            throw DAQError(.malformedInput, """
                --client-expiration '\(persistentClientExpiration)' is not a mosquitto persistent_client_expiration: give a \
                whole number (1–\(Int32.max)) followed by h, d, w, m or y (hours, days, weeks, 30-day months, 365-day years), \
                e.g. 12h, 14d, 1w, 1y
                """)
        }
        // mosquitto.conf has no quoting: a value with whitespace would be cut or misread.
        for (name, value) in [("bind address", bindAddress)] + paths
        where value.isEmpty || value.contains(where: \.isWhitespace) {
            throw DAQError(.malformedInput, "\(name) '\(value)' cannot go into mosquitto.conf (empty or contains whitespace)")
        }
        guard autosaveIntervalSeconds > 0, maxInflightMessages > 0 else {
            throw DAQError(.malformedInput, "autosave interval and in-flight limit must be positive")
        }
    }

    /// Seconds in each unit mosquitto accepts for persistent_client_expiration (m and y are 30 and 365 days).
    static let expirationUnits: [Character: Int] = ["h": 3600, "d": 86_400, "w": 7 * 86_400, "m": 30 * 86_400, "y": 365 * 86_400]

    /// `text` in seconds when it is a duration mosquitto reads as written: digits (1…Int32.max) then
    /// one unit. mosquitto itself takes atoi() of what precedes the unit, so it refuses "forever" only
    /// at start-up, and reads "1xd" as 1d and a number past Int32.max as something else.
    public static func expirationSeconds(_ text: String) -> Int? {
        guard let unit = text.last, let seconds = expirationUnits[unit] else { return nil }
        let number = text.dropLast()
        guard !number.isEmpty, number.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let count = Int(number), count >= 1, count <= Int(Int32.max) else { return nil }
        return count * seconds
    }

    /// The `user` line names the Unix account mosquitto switches to after it starts, not an MQTT user.
    private static func validateUserName(_ name: String) throws {
        let bytes = Array(name.utf8)
        let valid = (1...32).contains(bytes.count) && bytes[0] != UInt8(ascii: "-") && bytes.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z"))
                || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
        guard valid else {
            throw DAQError(.malformedInput, """
                --user '\(name)' is not a Unix user name (the account mosquitto runs as once started): \
                use 1–32 of A–Z a–z 0–9 . _ -, not starting with '-'
                """)
        }
    }

    private var paths: [(String, String)] {
        [("cafile", caFile), ("certfile", certificateFile), ("keyfile", keyFile), ("crlfile", revocationListFile),
         ("acl_file", aclFile), ("persistence directory", persistenceDirectory)]
    }

    /// The text of mosquitto.conf.
    public func mosquittoConf() -> String {
        let queue = queueLimit.map(String.init) ?? "0"
        var lines = [
            "# mosquitto.conf for DAQLink, generated by `daqctl broker-config`. Regenerate rather than edit.",
            "",
            "# One set of security settings for every listener, so no listener can be left open by mistake.",
            "per_listener_settings false",
            "# No certificate, no connection; no password logins at all.",
            "allow_anonymous false",
        ]
        if let runAsUser {
            lines += ["# Test/demo broker: stay \(runAsUser) so the 0600 keys stay readable (mosquitto drops to user",
                      "# 'mosquitto' otherwise and then fails with 'Permission denied').",
                      "user \(runAsUser)"]
        }
        lines += [
            "",
            "# Durable sessions survive a broker restart. The database is a snapshot every",
            "# autosave_interval seconds: a kill -9 loses what arrived since (the devices' journals resend it).",
            "persistence true",
            "persistence_location \(persistenceDirectory)/",
            "autosave_interval \(autosaveIntervalSeconds)",
            "# Offline durable sessions (the collector's queue) are kept this long, then dropped.",
            "persistent_client_expiration \(persistentClientExpiration)",
            "",
            queueLimit == nil
                ? "# 0 = unlimited. The default (1000) drops messages SILENTLY while PUBACK 0 still goes back."
                : "# DELIBERATELY SMALL QUEUE for fault tests: overflow is dropped silently, PUBACK still 0.",
            "max_queued_messages \(queue)",
            "max_queued_bytes 0",
            "max_inflight_messages \(maxInflightMessages)",
            "# Send small packets (CONNACK, PUBACK, the collector's acks) at once: with Nagle they wait",
            "# for the peer's delayed ACK, measured 40 ms per CONNACK and per last ack on loopback.",
            "set_tcp_nodelay true",
            "",
            "# Each device may only touch devices/<its CN>/...; see the ACL file.",
            "acl_file \(aclFile)",
            "",
            "log_dest stderr",
            "# The log also goes to $SYS/broker/log/<level>: the collector watches level E for session",
            "# takeovers (\"already connected, closing old connection\"), which clients are never told of.",
            "log_dest topic",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
            "# The only listener: MQTT over mutual TLS 1.3.",
            "listener \(port) \(bindAddress)",
            "cafile \(caFile)",
            "certfile \(certificateFile)",
            "keyfile \(keyFile)",
            "# Revoked device certificates are refused at the handshake. The CRL has a nextUpdate: once it",
            "# passes, OpenSSL refuses EVERY client, so republish (`daqctl pki crl`) and reload (SIGHUP) in time.",
            "crlfile \(revocationListFile)",
            "require_certificate true",
            "# The certificate's CN becomes the MQTT username, which the ACL's %u patterns use.",
            "use_identity_as_username true",
        ]
        if clientIDFromCertificate {
            lines += ["# The client id is otherwise NOT bound to the certificate: device A could connect as",
                      "# client id \"B\" and take over B's session. Force client id = username = CN.",
                      "use_username_as_clientid true"]
        }
        lines += [
            "# Minimum TLS version: TLS 1.2 and older clients are refused.",
            "tls_version tlsv1.3",
            "",
        ]
        return lines.joined(separator: "\n")
    }

    /// The text of the ACL file.
    public func accessControlList() -> String {
        [
            "# ACL for DAQLink, generated by `daqctl broker-config`. %u is the client certificate's CN.",
            "# Patterns apply to every authenticated client: a device writes only below its own id,",
            "# and reads only what is addressed to it.",
            "pattern write devices/%u/#",
            "# End-to-end acks from the collector (the device trims its journal only on these).",
            "pattern read devices/%u/ack",
            "# Commands (e.g. configuration changes) for this device.",
            "pattern read devices/%u/cmd",
            "# OTA notifications for this device (the image itself comes over HTTPS).",
            "pattern read devices/%u/ota/#",
            "",
            "# The collector reads every device's data and answers with acks and commands.",
            "user \(collectorName)",
            "topic read devices/#",
            "topic write devices/+/ack",
            "topic write devices/+/cmd",
            "topic write devices/+/ota/#",
            "# ... and the broker's error log, where session takeovers show (`log_dest topic`).",
            "topic read $SYS/broker/log/E",
            "",
        ].joined(separator: "\n")
    }
}
