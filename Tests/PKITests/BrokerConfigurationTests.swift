// The generated mosquitto.conf and ACL, as text (pure), including the settings whose absence
// was measured to lose data or open the broker.
import DAQCore
import PKI
import Testing

@Suite struct BrokerConfigurationTests {
    let layout = PKILayout(directory: "/srv/pki")

    func lines(_ text: String) -> Set<String> {
        Set(text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty })
    }

    @Test func defaultConfigurationIsMutualTLS13WithUnlimitedQueues() throws {
        let configuration = BrokerConfiguration(pki: layout, outputDirectory: "/srv/broker")
        try configuration.validate()
        let conf = lines(configuration.mosquittoConf())
        let expected: Set<String> = [
            "per_listener_settings false", "allow_anonymous false",
            "listener 8883 127.0.0.1",
            "cafile /srv/pki/ca.crt", "certfile /srv/pki/server.crt", "keyfile /srv/pki/server.key", "crlfile /srv/pki/ca.crl",
            "require_certificate true", "use_identity_as_username true", "use_username_as_clientid true",
            "tls_version tlsv1.3",
            "persistence true", "persistence_location /srv/broker/data/", "persistent_client_expiration 14d",
            "max_queued_messages 0", "max_queued_bytes 0",
            "acl_file /srv/broker/acl",
        ]
        #expect(expected.subtracting(conf).isEmpty, "missing: \(expected.subtracting(conf))")
        #expect(!conf.contains { $0.hasPrefix("user ") }, "production brokers keep mosquitto's own user")
        #expect(!conf.contains { $0.hasPrefix("password_file") || $0.hasPrefix("psk") })
        #expect(conf.filter { $0.hasPrefix("listener ") }.count == 1, "exactly one listener, the TLS one")
    }

    @Test func optionsForTestBrokersAndFaultInjection() throws {
        var configuration = BrokerConfiguration(pki: layout, outputDirectory: "/tmp/b", collectorName: "fleet-collector",
                                                persistenceDirectory: "/var/lib/daq")
        configuration.port = 18883
        configuration.bindAddress = "0.0.0.0"
        configuration.runAsUser = "root"
        configuration.queueLimit = 5
        configuration.clientIDFromCertificate = false
        try configuration.validate()
        let conf = lines(configuration.mosquittoConf())
        #expect(conf.isSuperset(of: ["listener 18883 0.0.0.0", "user root", "max_queued_messages 5", "max_queued_bytes 0",
                                     "persistence_location /var/lib/daq/"]))
        #expect(!conf.contains("use_username_as_clientid true"))
        #expect(configuration.accessControlList().contains("\nuser fleet-collector\n"))
    }

    @Test func aclConfinesDevicesToTheirOwnTopics() {
        let acl = BrokerConfiguration(pki: layout, outputDirectory: "/srv/broker").accessControlList()
        let rules = acl.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(rules == [
            "pattern write devices/%u/#",
            "pattern read devices/%u/ack",
            "pattern read devices/%u/cmd",
            "pattern read devices/%u/ota/#",
            "user collector",
            "topic read devices/#",
            "topic write devices/+/ack",
            "topic write devices/+/cmd",
            "topic write devices/+/ota/#",
            "topic read $SYS/broker/log/E",
        ])
    }

    @Test func clientExpirationFollowsMosquittosOwnSyntax() {
        #expect(BrokerConfiguration.expirationSeconds("12h") == 12 * 3600)
        #expect(BrokerConfiguration.expirationSeconds("14d") == 14 * 86_400)
        #expect(BrokerConfiguration.expirationSeconds("1w") == 7 * 86_400)
        #expect(BrokerConfiguration.expirationSeconds("2m") == 60 * 86_400)
        #expect(BrokerConfiguration.expirationSeconds("99999y") == 99999 * 365 * 86_400)
        #expect(BrokerConfiguration.expirationSeconds("2147483647h") == 2_147_483_647 * 3600)
        // mosquitto reads the number with atoi(): "1xd" would be 1d, 2147483648h something else, "forever" fails at start.
        for bad in ["forever", "", "14", "d", "0d", "-1d", "+1d", " 1d", "1xd", "1.5d", "14D", "2147483648h", "99999999999h"] {
            #expect(BrokerConfiguration.expirationSeconds(bad) == nil, "\(bad)")
            var configuration = BrokerConfiguration(pki: layout, outputDirectory: "/srv/broker")
            configuration.persistentClientExpiration = bad
            #expect(throws: DAQError.self) { try configuration.validate() }
        }
    }

    @Test(arguments: ["no such user", "", "-root", "user:x", String(repeating: "u", count: 33)])
    func aBadRunAsUserIsCalledAUnixUserName(_ user: String) {
        var configuration = BrokerConfiguration(pki: layout, outputDirectory: "/srv/broker")
        configuration.runAsUser = user
        let error = #expect(throws: DAQError.self) { try configuration.validate() }
        #expect(error?.message.contains("Unix user name") == true, "\(String(describing: error))")
        #expect(error?.message.contains("MQTT") == false)
    }

    @Test func valuesThatWouldBreakTheConfigAreRefused() {
        var configuration = BrokerConfiguration(pki: PKILayout(directory: "/my pki"), outputDirectory: "/srv/broker")
        #expect(throws: DAQError.self) { try configuration.validate() }
        configuration = BrokerConfiguration(pki: layout, outputDirectory: "/srv/broker")
        configuration.port = 0
        #expect(throws: DAQError.self) { try configuration.validate() }
        configuration.port = 8883
        configuration.queueLimit = 0
        #expect(throws: DAQError.self) { try configuration.validate() }
        configuration.queueLimit = nil
        configuration.collectorName = "devices/#"
        #expect(throws: DAQError.self) { try configuration.validate() }
    }
}
