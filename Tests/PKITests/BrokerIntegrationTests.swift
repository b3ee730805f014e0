// A real mosquitto 2.0.11 on loopback, configured by `daqctl broker-config` for a PKI made by
// `daqctl pki`, with real clients (mosquitto_pub / mosquitto_sub, paho-mqtt) using the generated
// certificates. Every broker is stopped in a defer, so a failing expectation never leaks one.
import Foundation
import Testing
import TestSupport

@Suite struct BrokerIntegrationTests {
    /// Creates the collector's durable session (QoS 1 on devices/#) and returns at SUBACK, so
    /// later publishes are queued for it even though no collector process is running.
    func attachCollector(_ broker: MosquittoBroker) throws {
        let result = try broker.subscribe(as: broker.collector, ["-c", "-i", "collector", "-q", "1", "-t", "devices/#", "-E"])
        #expect(result.status == 0, "collector subscribe: \(result.stderr)")
    }

    /// Drains `count` messages from the collector's durable session as "topic payload" lines.
    func drainCollector(_ broker: MosquittoBroker, count: Int, waitSeconds: Int = 5) throws -> [String] {
        let result = try broker.subscribe(as: broker.collector, ["-c", "-i", "collector", "-q", "1", "-t", "devices/#",
                                                                 "-C", String(count), "-W", String(waitSeconds), "-v"])
        return result.stdout.split(separator: "\n").map(String.init)
    }

    // Note: the broker forces client id = certificate CN, so every connection made with one
    // certificate shares one session; a clean-start connection (plain mosquitto_pub) as the
    // collector would wipe the collector's durable session. Hence the order of steps below.

    @Test func devicesPublishOnlyBelowTheirOwnIdAndTheCollectorReceivesIt() throws {
        let broker = try MosquittoBroker(devices: ["rig-a", "rig-b"])
        defer { broker.stop() }
        // The collector may not inject device data: PUBACK reason 0x87 (135, not authorized).
        let injected = try broker.publish(as: broker.collector, topic: "devices/rig-a/data", message: "injected", extraArguments: ["-d"])
        #expect(injected.stdout.contains("received PUBACK (Mid: 1, RC:135)"), "\(injected.stdout)")
        try attachCollector(broker)

        let own = try broker.publish(as: broker.device("rig-a"), topic: "devices/rig-a/data", message: "from-a", extraArguments: ["-d"])
        #expect(own.status == 0)
        #expect(own.stdout.contains("received PUBACK (Mid: 1, RC:0)"), "\(own.stdout)\(own.stderr)")

        // rig-a forging rig-b's data: PUBACK 0x87. mosquitto_pub 2.0.11 only warns and still exits 0,
        // so the reason code and what the collector gets are what we check.
        let forged = try broker.publish(as: broker.device("rig-a"), topic: "devices/rig-b/data", message: "forged", extraArguments: ["-d"])
        #expect(forged.stdout.contains("received PUBACK (Mid: 1, RC:135)"), "\(forged.stdout)\(forged.stderr)")
        #expect(forged.stderr.contains("Not authorized"))

        #expect(try broker.publish(as: broker.device("rig-b"), topic: "devices/rig-b/data", message: "sentinel").status == 0)
        // Queue order is publish order: had "forged" got through, it would precede the sentinel.
        #expect(try drainCollector(broker, count: 2) == ["devices/rig-a/data from-a", "devices/rig-b/data sentinel"])
    }

    @Test func devicesReadOnlyTheirOwnAcksNotOtherDevicesData() throws {
        let broker = try MosquittoBroker(devices: ["rig-a", "rig-b"])
        defer { broker.stop() }
        // mosquitto grants the SUBSCRIBE to devices/rig-b/# and filters on delivery, so the proof
        // is what arrives: rig-b's data and ack are published first, the ack to rig-a last; -C 1
        // keeps only the first message rig-a receives.
        let rigA = try broker.startSubscriber(as: broker.device("rig-a"),
                                              ["-q", "1", "-t", "devices/rig-b/#", "-t", "devices/rig-a/ack",
                                               "-C", "1", "-W", "10", "-v", "-d"])
        #expect(rigA.waitForOutput(containing: "Subscribed"))
        #expect(try broker.publish(as: broker.device("rig-b"), topic: "devices/rig-b/data", message: "secret").status == 0)
        #expect(try broker.publish(as: broker.collector, topic: "devices/rig-b/ack", message: "ack-for-b").status == 0)
        #expect(try broker.publish(as: broker.collector, topic: "devices/rig-a/ack", message: "ack-17").status == 0)
        let received = rigA.finish()
        #expect(received.status == 0, "\(received.stderr)")
        #expect(received.stdout.contains("\ndevices/rig-a/ack ack-17\n"), "\(received.stdout)")
        #expect(!received.stdout.contains("secret"))
        #expect(!received.stdout.contains("ack-for-b"))
    }

    @Test func clientsWithoutACertificateOrWithAForeignOneAreRefused() throws {
        let broker = try MosquittoBroker(devices: ["rig-a"])
        defer { broker.stop() }
        let anonymous = try broker.publish(as: nil, topic: "devices/rig-a/data", message: "x")
        #expect(anonymous.status != 0)
        #expect(broker.logContains("peer did not return a certificate"))

        // Same device id, but issued by a different CA.
        let rogue = try PackagePaths.temporaryDirectory("rogue-pki").appendingPathComponent("pki").path
        let daqctl = PackagePaths.executable("daqctl").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", rogue]).status == 0)
        #expect(try runProcess(daqctl, ["pki", "device", "--dir", rogue, "rig-a"]).status == 0)
        let impostor = MQTTClientIdentity(name: "rig-a", certificate: URL(fileURLWithPath: "\(rogue)/devices/rig-a.crt"),
                                          key: URL(fileURLWithPath: "\(rogue)/devices/rig-a.key"))
        #expect(try broker.publish(as: impostor, topic: "devices/rig-a/data", message: "x").status != 0)
        #expect(broker.logContains("certificate verify failed"))
        // Control: the genuine certificate connects.
        #expect(try broker.publish(as: broker.device("rig-a"), topic: "devices/rig-a/data", message: "x").status == 0)
    }

    // `mosquitto_pub --tls-version tlsv1.2` only sets a MINIMUM (it then negotiates TLS 1.3), so a
    // TLS 1.2-only client needs a capped TLS stack: Python's ssl with maximum_version = TLSv1_2.
    static let tlsProbe = """
    import ssl, sys, time, paho.mqtt.client as mqtt
    ca, cert, key, port, cap = sys.argv[1:6]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    if cap == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5)
    client.tls_set_context(context)
    try:
        client.connect("localhost", int(port), 10)
    except Exception as error:
        print("refused", type(error).__name__, error)
        sys.exit(0)
    client.loop_start()
    deadline = time.time() + 5
    while not client.is_connected() and time.time() < deadline:
        time.sleep(0.02)
    print("connected" if client.is_connected() else "not-connected", client.socket().version() if client.socket() else "")
    client.disconnect()
    client.loop_stop()
    """

    @Test func tls12OnlyClientsAreRefusedAndTls13IsUsed() throws {
        let broker = try MosquittoBroker(devices: ["rig-a"])
        defer { broker.stop() }
        let rigA = broker.device("rig-a")
        let arguments = [broker.caFile.path, rigA.certificate.path, rigA.key.path, String(broker.port)]
        let capped = try broker.runClient(["python3", "-c", Self.tlsProbe] + arguments + ["1.2"])
        #expect(capped.stdout.hasPrefix("refused"), "\(capped.stdout)\(capped.stderr)")
        #expect(broker.logContains("unsupported protocol"))
        let current = try broker.runClient(["python3", "-c", Self.tlsProbe] + arguments + ["default"])
        #expect(current.stdout == "connected TLSv1.3\n", "\(current.stdout)\(current.stderr)")
    }

    @Test func aRevokedDeviceIsRefusedAfterTheCRLIsRepublishedAndTheBrokerRestarted() throws {
        let broker = try MosquittoBroker(devices: ["rig-lost", "rig-kept"])
        defer { broker.stop() }
        try attachCollector(broker)
        #expect(try broker.publish(as: broker.device("rig-lost"), topic: "devices/rig-lost/data", message: "before").status == 0)

        try broker.revokeDevice("rig-lost")
        try broker.restart()
        let refused = try broker.publish(as: broker.device("rig-lost"), topic: "devices/rig-lost/data", message: "after")
        #expect(refused.status != 0)
        #expect(broker.logContains("certificate verify failed"))
        #expect(try broker.publish(as: broker.device("rig-kept"), topic: "devices/rig-kept/data", message: "kept").status == 0)
        // The collector's durable session and its queue survived the restart (persistence).
        #expect(try drainCollector(broker, count: 2) == ["devices/rig-lost/data before", "devices/rig-kept/data kept"])
    }

    @Test func sighupReloadsTheCRLWithoutARestart() throws {
        let broker = try MosquittoBroker(devices: ["rig-lost", "rig-kept"])
        defer { broker.stop() }
        #expect(try broker.publish(as: broker.device("rig-lost"), topic: "devices/rig-lost/data", message: "before").status == 0)
        try broker.revokeDevice("rig-lost")
        try broker.reload()
        #expect(try broker.publish(as: broker.device("rig-lost"), topic: "devices/rig-lost/data", message: "after").status != 0)
        #expect(try broker.publish(as: broker.device("rig-kept"), topic: "devices/rig-kept/data", message: "kept").status == 0)
        #expect(!broker.log().contains("terminating"), "the same broker process kept running")
    }

    @Test func theClientIdIsBoundToTheCertificateSoSessionsCannotBeTakenOver() throws {
        let broker = try MosquittoBroker(devices: ["rig-a", "rig-b"])
        defer { broker.stop() }
        // rig-b listens for commands on a live connection with client id "rig-b".
        let listener = try broker.startSubscriber(as: broker.device("rig-b"),
                                                  ["-i", "rig-b", "-q", "1", "-t", "devices/rig-b/cmd", "-C", "1", "-W", "10", "-d"])
        #expect(listener.waitForOutput(containing: "Subscribed"))

        // rig-a asks for client id "rig-b": the broker renames it to its CN instead of kicking rig-b.
        #expect(try broker.publish(as: broker.device("rig-a"), topic: "devices/rig-a/data", message: "x",
                                   extraArguments: ["-i", "rig-b"]).status == 0)
        #expect(broker.logContains("as rig-a ("))
        #expect(!broker.log().contains("already connected"), "\(broker.log())")

        // rig-b's original connection is still there to receive a command.
        #expect(try broker.publish(as: broker.collector, topic: "devices/rig-b/cmd", message: "still-here").status == 0)
        let received = listener.finish()
        #expect(received.status == 0, "\(received.stderr)")
        #expect(received.stdout.contains("\nstill-here\n"), "\(received.stdout)")
    }

    @Test(arguments: [nil, 2] as [Int?])
    func queuesAreUnlimitedUnlessAFaultBrokerAsksForALimit(_ limit: Int?) throws {
        let broker = try MosquittoBroker(devices: ["rig-a"], queueLimit: limit)
        defer { broker.stop() }
        try attachCollector(broker)
        for sequence in 1...6 {
            // Every publish is acknowledged with success, even the ones a limited broker drops.
            let result = try broker.publish(as: broker.device("rig-a"), topic: "devices/rig-a/data", message: "seq-\(sequence)",
                                            extraArguments: ["-d"])
            #expect(result.stdout.contains("RC:0"), "\(result.stdout)")
        }
        let received = try drainCollector(broker, count: 6, waitSeconds: 2)
        if let limit {
            #expect(received.count < 6, "a limited queue drops silently")
            #expect(received.count >= limit)
            #expect(received.first == "devices/rig-a/data seq-1")
        } else {
            #expect(received == (1...6).map { "devices/rig-a/data seq-\($0)" })
        }
    }
}
