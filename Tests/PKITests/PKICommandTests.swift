// `daqctl pki` and `daqctl broker-config` as a user runs them: the built binary, real files.
import Foundation
import Testing
import TestSupport

@Suite struct PKICommandTests {
    let daqctl = PackagePaths.executable("daqctl").path

    @Test func initDeviceRevokeListAndBrokerConfig() throws {
        let root = try PackagePaths.temporaryDirectory("pki-cli")
        let pki = root.appendingPathComponent("pki").path
        let initResult = try runProcess(daqctl, ["pki", "init", "--dir", pki, "--ca-name", "Bench CA",
                                                 "--server-name", "broker.lab", "--server-ip", "10.1.2.3", "--server-ip", "127.0.0.1"])
        #expect(initResult.status == 0, "\(initResult.stderr)")
        for file in ["ca.crt", "ca.key", "ca.crl", "index.json", "server.crt", "server.key", "collector.crt", "collector.key"] {
            #expect(FileManager.default.fileExists(atPath: "\(pki)/\(file)"), "\(file)")
        }
        let san = try runProcess("openssl", ["x509", "-in", "\(pki)/server.crt", "-noout", "-ext", "subjectAltName"]).stdout
        #expect(san.contains("DNS:broker.lab, IP Address:10.1.2.3, IP Address:127.0.0.1"))

        let again = try runProcess(daqctl, ["pki", "init", "--dir", pki])
        #expect(again.status != 0)
        #expect(again.stderr.contains("--force"), "tells the user how to replace the CA: \(again.stderr)")

        #expect(try runProcess(daqctl, ["pki", "device", "--dir", pki, "rig-7"]).status == 0)
        // Bad ids and periods are usage errors (exit 64, with the usage), as elsewhere: they exited 1.
        let bad = try runProcess(daqctl, ["pki", "device", "--dir", pki, "rig/8"])
        #expect(bad.status == 64 && bad.stderr.contains("may only contain") && bad.stderr.contains("Usage: daqctl pki device"), "\(bad.stderr)")
        for (arguments, message) in [(["pki", "device", "--dir", pki, "rig-8", "--days", "0"], "--days must be at least 1 day, not 0"),
                                     (["pki", "revoke", "--dir", pki, ""], "device id must be 1–64 characters, got 0"),
                                     (["pki", "crl", "--dir", pki, "--days", "-3"], "--days must be at least 1 day, not -3"),
                                     (["pki", "init", "--dir", root.path + "/other", "--crl-days", "0"], "--crl-days must be at least 1 day, not 0"),
                                     (["pki", "init", "--dir", root.path + "/other", "--collector-name", "a/b"], "collector name \"a/b\" may only contain"),
                                     (["pki", "init", "--dir", root.path + "/other", "--server-name", "bad name"], "'bad name' is not a DNS name"),
                                     (["pki", "collector", "--dir", pki, "--name", "x y"], "collector name \"x y\" may only contain"),
                                     (["pki", "server", "--dir", pki, "--server-name", "a_b"], "'a_b' is not a DNS name")] {
            let refused = try runProcess(daqctl, arguments)
            #expect(refused.status == 64 && refused.stderr.contains(message), "\(arguments): \(refused.status) \(refused.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: root.path + "/other"), "refused before anything is written")
        #expect(try runProcess(daqctl, ["pki", "revoke", "--dir", pki, "rig-7"]).status == 0)

        let list = try runProcess(daqctl, ["pki", "list", "--dir", pki]).stdout
        #expect(list.contains("revoked"))
        #expect(list.contains("rig-7"))
        #expect(list.contains("Bench CA"))

        let out = root.appendingPathComponent("broker").path
        let config = try runProcess(daqctl, ["broker-config", "--pki", pki, "--out", out, "--port", "18884", "--queue-limit", "3"])
        #expect(config.status == 0, "\(config.stderr)")
        let conf = try String(contentsOfFile: "\(out)/mosquitto.conf", encoding: .utf8)
        #expect(conf.contains("\nlistener 18884 127.0.0.1\n"))
        #expect(conf.contains("\nmax_queued_messages 3\n"))
        #expect(conf.contains("\ncrlfile \(pki)/ca.crl\n"))
        #expect(FileManager.default.fileExists(atPath: "\(out)/acl"))
        #expect(FileManager.default.fileExists(atPath: "\(out)/data"))
    }

    /// Renewals keep what the broker and the devices rely on, and an old collector certificate
    /// can be revoked (from a review: `pki server` dropped the broker's address, `pki collector`
    /// renamed the collector to "collector", and no collector certificate could be revoked).
    @Test func renewalsKeepNamesAndAnOldCollectorCertificateIsRevokedBySerial() throws {
        let root = try PackagePaths.temporaryDirectory("pki-renew")
        let pki = root.appendingPathComponent("pki").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", pki, "--server-name", "broker.lab", "--server-ip", "10.0.0.5",
                                        "--collector-name", "col-a"]).status == 0)
        let oldCollector = root.appendingPathComponent("old-collector.crt").path
        try FileManager.default.copyItem(atPath: "\(pki)/collector.crt", toPath: oldCollector)

        let server = try runProcess(daqctl, ["pki", "server", "--dir", pki])
        #expect(server.status == 0, "\(server.stderr)")
        let san = try runProcess("openssl", ["x509", "-in", "\(pki)/server.crt", "-noout", "-ext", "subjectAltName"]).stdout
        #expect(san.contains("DNS:broker.lab, IP Address:10.0.0.5"), "\(san)")

        let collector = try runProcess(daqctl, ["pki", "collector", "--dir", pki])
        #expect(collector.status == 0, "\(collector.stderr)")
        let subject = try runProcess("openssl", ["x509", "-in", "\(pki)/collector.crt", "-noout", "-subject"]).stdout
        #expect(subject.contains("CN = col-a"), "\(subject)")
        // The old certificate's serial, from the renewal's own advice.
        let advice = try #require(collector.stdout.split(separator: "\n").first { $0.contains("pki revoke") })
        let serial = String(try #require(advice.split(separator: " ").last))
        let oldSerial = try runProcess("openssl", ["x509", "-in", oldCollector, "-noout", "-serial"]).stdout
        #expect(oldSerial.contains("serial=\(serial)"), "\(oldSerial) vs \(advice)")

        let verifyOld = { try runProcess("openssl", ["verify", "-CAfile", "\(pki)/ca.crt", "-CRLfile", "\(pki)/ca.crl", "-crl_check", oldCollector]) }
        #expect(try verifyOld().status == 0, "valid until revoked")
        let revoke = try runProcess(daqctl, ["pki", "revoke", "--dir", pki, "--serial", serial])
        #expect(revoke.status == 0 && revoke.stdout.contains("revoked the collector certificate 'col-a'"), "\(revoke.stdout)\(revoke.stderr)")
        #expect(revoke.stdout.contains("stays connected until it reconnects"), "says what HUP does not do: \(revoke.stdout)")
        #expect(try verifyOld().stdout.contains("certificate revoked") || (try verifyOld().stderr.contains("certificate revoked")))
        let current = try runProcess("openssl", ["verify", "-CAfile", "\(pki)/ca.crt", "-CRLfile", "\(pki)/ca.crl", "-crl_check", "\(pki)/collector.crt"])
        #expect(current.status == 0, "the new one still verifies: \(current.stdout)\(current.stderr)")

        // The CA and the broker certificate are not revoked, and say why.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(pki)/index.json"))) as! [String: Any]
        let records = index["certificates"] as! [[String: Any]]
        for (role, reason) in [("ca", "a CA is replaced"), ("server", "devices do not check a CRL")] {
            let serial = try #require(records.first { $0["role"] as? String == role }?["serial"] as? String)
            let refused = try runProcess(daqctl, ["pki", "revoke", "--dir", pki, "--serial", serial])
            #expect(refused.status != 0 && refused.stderr.contains(reason), "\(role): \(refused.stderr)")
        }
        #expect(try runProcess(daqctl, ["pki", "revoke", "--dir", pki, "--serial", "ABCDEF"]).stderr.contains("no certificate with serial ABCDEF"))

        // The CRL counts from five minutes back, like the certificates: a broker whose clock lags
        // two minutes does not refuse everyone (error 11, "CRL is not yet valid").
        let lagging = try runProcess("openssl", ["verify", "-attime", String(Int(Date().timeIntervalSince1970) - 120), "-CAfile", "\(pki)/ca.crt",
                                                 "-CRLfile", "\(pki)/ca.crl", "-crl_check", "\(pki)/collector.crt"])
        #expect(lagging.status == 0, "\(lagging.stdout)\(lagging.stderr)")
    }

    @Test func lifetimesOutsideOneDayAndTheCAAreRefused() throws {
        let root = try PackagePaths.temporaryDirectory("pki-cli-days")
        let expired = root.appendingPathComponent("pki2").path
        let zero = try runProcess(daqctl, ["pki", "init", "--dir", expired, "--ca-days", "0"])
        #expect(zero.status == 64)
        #expect(zero.stderr.contains("--ca-days must be at least 1 day, not 0"), "\(zero.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(expired)/ca.crt"))

        let pki = root.appendingPathComponent("pki").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", pki]).status == 0)
        for arguments in [["pki", "device", "--dir", pki, "ecu-04", "--days", "99999999"],
                          ["pki", "device", "--dir", pki, "ecu-04", "--days", "3651"],
                          ["pki", "crl", "--dir", pki, "--days", "99999999"]] {
            let result = try runProcess(daqctl, arguments)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.contains("past the CA's notAfter"), "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("day(s) left"), "\(arguments): \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(pki)/devices/ecu-04.crt"))
        let overlong = try runProcess(daqctl, ["pki", "init", "--dir", root.appendingPathComponent("pki3").path,
                                               "--ca-days", "100", "--server-days", "825"])
        #expect(overlong.status != 0 && overlong.stderr.contains("broker certificate validity of 825 days"), "\(overlong.stderr)")
    }

    @Test func brokerConfigRefusesAnExpirationMosquittoCannotReadAndNamesTheUnixUser() throws {
        let root = try PackagePaths.temporaryDirectory("broker-config-cli")
        let pki = root.appendingPathComponent("pki").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", pki]).status == 0)
        let out = root.appendingPathComponent("broker").path
        for bad in ["forever", "14", "d", "0d", "1xd", "-1d", "14D", "2147483648d"] {
            let result = try runProcess(daqctl, ["broker-config", "--pki", pki, "--out", out, "--client-expiration=\(bad)"])
            #expect(result.status != 0, "\(bad)")
            #expect(result.stderr.contains("--client-expiration '\(bad)'") && result.stderr.contains("h, d, w, m or y"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(out)/mosquitto.conf"))
        let user = try runProcess(daqctl, ["broker-config", "--pki", pki, "--out", out, "--user", "no such user"])
        #expect(user.status != 0)
        #expect(user.stderr.contains("Unix user name"), "\(user.stderr)")
        #expect(!user.stderr.contains("MQTT"), "the user line is the broker's account, not an MQTT username: \(user.stderr)")
        let good = try runProcess(daqctl, ["broker-config", "--pki", pki, "--out", out, "--client-expiration", "12h", "--user", "root"])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(try String(contentsOfFile: "\(out)/mosquitto.conf", encoding: .utf8).contains("\npersistent_client_expiration 12h\n"))
    }

    @Test func helpTeachesTheFlow() throws {
        let help = try runProcess(daqctl, ["pki", "--help"]).stdout
        for needle in ["pki init", "pki device", "broker-config", "pki revoke", "0600", "devices/<id>"] {
            #expect(help.contains(needle), "\(needle)")
        }
        let brokerHelp = try runProcess(daqctl, ["broker-config", "--help"]).stdout
        #expect(brokerHelp.contains("--user"))
        #expect(brokerHelp.contains("--queue-limit"))
    }
}
