// `daqctl pki`: create and run the internal certificate authority (CA, broker, collector and
// device certificates, revocation and CRL). A thin shell over the PKI module.
import ArgumentParser
import DAQCore
import Foundation
import OTA
import PKI

struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "Internal PKI: the CA, broker/collector/device certificates, revocation and the CRL.",
        discussion: """
        Every device gets its own certificate; its CN is the device id, which the broker uses as \
        the MQTT username and the ACL confines to devices/<id>/... . Typical flow:

          daqctl pki init --dir pki --server-name broker.lab --server-ip 10.0.0.5
          daqctl pki device --dir pki rig-01
          daqctl broker-config --pki pki --out broker
          mosquitto -c broker/mosquitto.conf
          daqctl pki revoke --dir pki rig-01    (then kill -HUP the broker)
          daqctl pki crl --dir pki              (before the CRL's nextUpdate)
          daqctl pki server --dir pki            (renewal: same names and addresses)
          daqctl pki renew --dir pki rig-01 --publish updates   (same key, new validity)

        Layout of DIR: ca.crt ca.key ca.crl index.json server.crt server.key collector.crt \
        collector.key devices/<id>.crt devices/<id>.key. Keys are EC P-256 PEM, mode 0600. \
        A device gets only ca.crt and its own .crt/.key; ca.key never leaves DIR.
        """,
        subcommands: [Init.self, Device.self, Renew.self, Bundle.self, Revoke.self, PublishCRL.self, Server.self, Collector.self, List.self]
    )
}

/// Usage checks the PKI commands share: refused with the usage (exit 64) before the PKI is opened.
enum PKIUsage {
    /// A validity or CRL period of at least one day.
    static func days(_ value: Int, option: String) throws {
        guard value >= 1 else { throw ValidationError("\(option) must be at least 1 day, not \(value)") }
    }

    /// A device id as the broker and the ACL take it (CommonName's rules).
    static func deviceID(_ id: String) throws { try names { try CommonName.validateClientName(id) } }

    /// `check`'s refusal of a name as a usage error.
    static func names(_ check: () throws -> Void) throws {
        do { try check() } catch let error as DAQError { throw ValidationError(error.message) }
    }
}

/// The `--dir` option shared by every pki subcommand.
struct PKIDirectoryOption: ParsableArguments {
    @Option(name: .customLong("dir"), help: ArgumentHelp("The PKI directory.", valueName: "DIR"))
    var directory: String

    var layout: PKILayout { PKILayout(directory: directory) }
}

extension PKICommand {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a CA, the broker certificate, the collector certificate and an empty CRL.",
            discussion: """
            The broker certificate's subjectAltNames are every --server-name (DNS) and --server-ip; \
            clients check the broker's address against them, so list every name and address devices \
            will connect to. Refuses to replace an existing CA unless --force: a new CA invalidates every \
            certificate the old one issued.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "CN of the CA.") var caName = "DAQLink Internal CA"
        @Option(help: "CA validity in days.") var caDays = 3650
        @Option(help: "DNS name of the broker (repeatable; the first is also its CN).") var serverName: [String] = ["localhost"]
        @Option(help: "IP address of the broker (repeatable).") var serverIp: [String] = ["127.0.0.1"]
        @Option(help: "Broker certificate validity in days.") var serverDays = 825
        @Option(help: "CN of the collector's client certificate (its MQTT username).") var collectorName = "collector"
        @Option(help: "Collector certificate validity in days.") var collectorDays = 825
        @Option(help: "Days until the CRL's nextUpdate.") var crlDays = 30
        @Flag(help: "Replace an existing CA (every certificate it issued stops verifying).") var force = false

        func validate() throws {
            try PKIUsage.names {
                try CommonName.validateDisplayName(caName, field: "CA name")
                try CommonName.validateClientName(collectorName, field: "collector name")
                for name in serverName { try CommonName.validateDNSName(name) }
            }
            try PKIUsage.days(caDays, option: "--ca-days")
            try PKIUsage.days(serverDays, option: "--server-days")
            try PKIUsage.days(collectorDays, option: "--collector-days")
            try PKIUsage.days(crlDays, option: "--crl-days")
        }

        func run() throws {
            var settings = AuthoritySettings()
            settings.authorityName = caName
            settings.authorityValidityDays = caDays
            settings.server = ServerCertificateRequest(dnsNames: serverName, ipAddresses: serverIp, validityDays: serverDays)
            settings.collectorName = collectorName
            settings.collectorValidityDays = collectorDays
            settings.revocationListValidityDays = crlDays
            let authority = try CertificateAuthority.create(pki.layout, settings: settings, overwrite: force)
            let layout = authority.layout
            print("created CA '\(caName)' in \(layout.directory)")
            if force && FileManager.default.fileExists(atPath: layout.devicesDirectory) {
                // The old device certificates chain to the replaced CA and no longer verify.
                FileHandle.standardError.write(Data("note: certificates in \(layout.devicesDirectory) were issued by the old CA; re-issue them with `daqctl pki device`\n".utf8))
            }
            for record in try authority.index().certificates.suffix(3) {
                print("  \(record.role.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(record.commonName)  serial \(record.serial)")
            }
            print("next: daqctl pki device --dir \(layout.directory) <device-id>; daqctl broker-config --pki \(layout.directory) --out <dir>")
        }
    }

    struct Device: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a device's client certificate (CN = device id).",
            discussion: """
            Writes devices/<ID>.crt and devices/<ID>.key. The id becomes the MQTT username and a topic \
            level, so it may only use A–Z a–z 0–9 . _ - (at most 64). Give the device ca.crt and its own \
            two files. Refuses an id that still has an unrevoked certificate unless --force.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Argument(help: "The device id.") var id: String
        @Option(help: "Validity in days.") var days = 365
        @Flag(help: "Issue although the device has an unrevoked certificate (the old one stays valid until revoked).") var force = false

        func validate() throws {
            try PKIUsage.deviceID(id)
            try PKIUsage.days(days, option: "--days")
        }

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            let issued = try authority.issueDeviceCertificate(id, validityDays: days, replacingActive: force)
            print("issued device '\(id)' serial \(issued.record.serial)")
            print("  certificate \(issued.certificatePath)")
            print("  key         \(issued.keyPath)")
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Renew a device's certificate for the key it already holds.",
            discussion: """
            Signs a new certificate (new serial, --days from now) for the public key in \
            devices/<ID>.crt, which must be unrevoked, and writes it there; the key stays. With \
            --publish, also writes UPDATES/renewals/<KEY>.crt (KEY: the SHA-256 of the device's \
            public key, in hex, so nobody lists the fleet by guessing ids), which nginx serves \
            without a client certificate when `daqctl ota nginx-config` had --renewal-port. A \
            device run with --ota-renewal-url fetches it once its certificate ends within 30 days, or has ended (the \
            broker and the mTLS update server refuse it then), checks it (this CA, its id, its own key, \
            a later end), and connects with it. A revoked device is refused: give it a new key \
            (pki device --force) and a certificate update instead.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Argument(help: "The device id.") var id: String
        @Option(help: "Validity in days.") var days = 365
        @Option(help: ArgumentHelp("Also publish the certificate in this update directory (UPDATES/renewals/<KEY>.crt).", valueName: "UPDATES"))
        var publish: String?

        func validate() throws {
            try PKIUsage.deviceID(id)
            try PKIUsage.days(days, option: "--days")
            if publish?.isEmpty == true { throw ValidationError("--publish wants the update directory nginx serves") }
        }

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            // The update directory first: a renewal signed but not published would make the next
            // try issue yet another serial.
            // Named by the key, which the renewal keeps (a device unknown here is refused by the
            // renewal below, with its own message).
            let certificate = pki.layout.deviceCertificate(id)
            let name = FileManager.default.fileExists(atPath: certificate) ? try DeviceCredentialBundle.renewalName(certificatePath: certificate) : ""
            let target = name.isEmpty ? nil : try publish.map { try UpdateDirectoryLayout(directory: $0).renewal(named: name) }
            if let target {
                let folder = URL(fileURLWithPath: target).deletingLastPathComponent().path
                do {
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
                } catch {
                    throw DAQError(.io, "cannot create: \(FileFailure.reason(error, path: folder))", at: InputLocation(file: folder))
                }
            }
            let issued = try authority.renewDeviceCertificate(id, validityDays: days)
            print("renewed device '\(id)' serial \(issued.record.serial), valid until \(CredentialLifetime.stamp(Int(issued.record.notAfter.timeIntervalSince1970)))")
            print("  certificate \(issued.certificatePath) (the key \(issued.keyPath) is unchanged)")
            if let target {
                try ArtifactFile.write(try ArtifactFile.read(issued.certificatePath), to: target)
                print("  published  \(target) (served as /renewal/\(name).crt by the renewal listener)")
            } else {
                print("  not published: the device has nothing to fetch until it is in UPDATES/renewals/\(name).crt (--publish UPDATES)")
            }
        }
    }

    struct Bundle: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a device's certificate and key as one PEM file for a certificate update.",
            discussion: """
            Writes devices/<ID>.crt and .key into --out (0600: it holds the key), checked as the \
            device will check it. Sign it (daqctl ota sign --kind certificates) and publish it for \
            that device only.

            With --trust FILE (repeatable), the bundle also carries the CA certificates in FILE, and \
            the device trusts exactly those once it has connected with the bundle: the way to a new \
            CA. Make the NEW PKI; run the broker and nginx with --pki OLD --also-trust NEW (they \
            still show OLD's certificate, and accept devices of both); send each device a bundle \
            from NEW with --trust NEW/ca.crt --trust OLD/ca.crt. Once every device has committed it, \
            run them with --pki NEW alone. docs/pki.md, "Changing the CA".
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Argument(help: "The device id.") var id: String
        @Option(help: ArgumentHelp("The bundle file to write.", valueName: "FILE")) var out: String
        @Option(help: ArgumentHelp("CA certificates the device trusts from this bundle on (repeatable).", valueName: "FILE"))
        var trust: [String] = []

        func validate() throws { try PKIUsage.deviceID(id) }

        func run() throws {
            let layout = pki.layout
            var bundle = try AtomicFile.read(layout.deviceCertificate(id)) + [UInt8(ascii: "\n")] + AtomicFile.read(layout.deviceKey(id))
            for file in trust { bundle += [UInt8(ascii: "\n")] + (try AtomicFile.read(file)) }
            let checked = try DeviceCredentialBundle.validate(bundle, deviceID: id, caFile: layout.caCertificate, file: out)
            if !trust.isEmpty && checked.authoritiesPEM == nil {
                throw DAQError(.malformedInput, "no CA certificate in \(trust.joined(separator: ", "))", at: InputLocation(file: trust[0], field: "trust"))
            }
            try AtomicFile.write(bundle, to: out, mode: AtomicFile.privateKeyMode)
            print("wrote \(out) (0600): device '\(id)', its certificate and key"
                  + (trust.isEmpty ? "" : ", and the CA certificates of \(trust.joined(separator: ", ")) as its trust anchors"))
            print("next: daqctl ota sign --kind certificates … \(out); daqctl ota publish --device \(id) …")
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a device's certificates, or one certificate by serial, and republish the CRL.",
            discussion: """
            With ID: every unrevoked certificate of that device; with ID --superseded, only those \
            whose key is not the one of devices/<ID>.crt: after a new key reached the device in a \
            certificate bundle, the old key's certificates would otherwise stay valid until they \
            end. Run it only once `ota history` shows that bundle committed: revoked before, the \
            key the device uses is refused by the broker and nginx, and the device cannot fetch \
            the bundle any more. With --serial (as `pki list` shows \
            it): that one certificate, a device's or the collector's (an old or leaked collector \
            certificate, once the collector runs with a new one from `pki collector`).

            mosquitto reads the CRL at start and on SIGHUP (kill -HUP <mosquitto pid>): from then on \
            it refuses the revoked certificate at every new connection. A client connected with it \
            now stays connected until it reconnects (mosquitto checks the CRL only in the TLS \
            handshake): restart the broker to cut it (its persistence keeps the sessions and queues).
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Argument(help: "The device id (omit it with --serial).") var id: String?
        @Option(help: ArgumentHelp("Revoke only the certificate with this serial (hex).", valueName: "HEX")) var serial: String?
        @Flag(help: "With ID: only the certificates whose key is not that of devices/<ID>.crt. Only once the device committed the bundle of that key: before, it is locked out until someone reaches it.")
        var superseded = false
        @Option(help: "Days until the new CRL's nextUpdate.") var crlDays = 30

        func validate() throws {
            guard (id == nil) != (serial == nil) else {
                throw ValidationError("give either a device id or --serial HEX")
            }
            if superseded && id == nil { throw ValidationError("--superseded needs the device id") }
            if let id { try PKIUsage.deviceID(id) }
            try PKIUsage.days(crlDays, option: "--crl-days")
        }

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            let list: RevocationList
            if let serial {
                let revoked = try authority.revoke(serial: serial, revocationListValidityDays: crlDays)
                list = revoked.list
                print("revoked the \(revoked.record.role.rawValue) certificate '\(revoked.record.commonName)' serial \(revoked.record.serial); "
                      + "CRL #\(list.number) lists \(list.revokedSerials.count) serial(s), next update \(list.nextUpdate)")
                for sibling in revoked.alsoRevoked {
                    print("  and serial \(sibling.serial) of '\(sibling.commonName)': the same key (a renewal)")
                }
                let others = try authority.index().active(revoked.record.role, commonName: revoked.record.commonName)
                if revoked.record.keyFingerprint == nil, revoked.record.role == .device, !others.isEmpty {
                    FileHandle.standardError.write(Data(("note: serial \(revoked.record.serial) was issued before the index kept key fingerprints: "
                        + "'\(revoked.record.commonName)' still has \(others.map(\.serial).joined(separator: ", ")), which may be of the same key "
                        + "(a renewal); revoke the device (pki revoke \(revoked.record.commonName)) if its key leaked\n").utf8))
                }
            } else if let id, superseded {
                let result = try authority.revokeSuperseded(id, revocationListValidityDays: crlDays)
                for record in result.unknown {
                    FileHandle.standardError.write(Data("note: serial \(record.serial) was issued before the index kept key fingerprints: kept (it may be of the current key)\n".utf8))
                }
                let kept = try authority.index().active(.device, commonName: id).filter { record in !result.unknown.contains { $0.serial == record.serial } }
                guard let published = result.list else {
                    print("nothing superseded: the unrevoked certificates of '\(id)' with a known key (\(kept.map(\.serial).joined(separator: ", "))) "
                          + "are of the key of \(pki.layout.deviceCertificate(id))")
                    return
                }
                list = published
                print("revoked \(result.revoked.count) superseded certificate(s) of '\(id)': \(result.revoked.map(\.serial).joined(separator: ", ")); "
                      + "kept \(kept.map(\.serial).joined(separator: ", ")) (the key of \(pki.layout.deviceCertificate(id))); "
                      + "CRL #\(list.number) lists \(list.revokedSerials.count) serial(s), next update \(list.nextUpdate)")
            } else if let id {
                list = try authority.revokeDevice(id, revocationListValidityDays: crlDays)
                print("revoked device '\(id)'; CRL #\(list.number) lists \(list.revokedSerials.count) serial(s), next update \(list.nextUpdate)")
            } else {
                return
            }
            print("reload the broker (kill -HUP) so it loads \(list.path) and refuses new connections with it "
                  + "(a broker or nginx run with --also-trust reads a joined copy: run broker-config or nginx-config again first);")
            print("a client connected with it now stays connected until it reconnects: restart the broker to cut it "
                  + "(a collector run with --pki refuses a revoked device's batches meanwhile)")
        }
    }

    struct PublishCRL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl",
            abstract: "Republish the CRL with a new nextUpdate.",
            discussion: "Once a CRL's nextUpdate passes, the broker refuses EVERY client. Run this (and reload the broker: kill -HUP) well before."
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "Days until nextUpdate.") var days = 30

        func validate() throws { try PKIUsage.days(days, option: "--days") }

        func run() throws {
            let list = try CertificateAuthority(opening: pki.layout).publishRevocationList(validityDays: days)
            print("published CRL #\(list.number) (\(list.revokedSerials.count) revoked) valid until \(list.nextUpdate): \(list.path)")
        }
    }

    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue the broker's certificate again from the same CA (before it ends).",
            discussion: """
            Replaces server.crt and server.key; every device and the collector go on trusting it \
            (same CA). Without --server-name and --server-ip it keeps the names and addresses of \
            the certificate it replaces (give them to change them: the ones left out are dropped). \
            Restart the broker to load it.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "DNS name of the broker (repeatable; the first is also its CN). Default: the current certificate's.") var serverName: [String] = []
        @Option(help: "IP address of the broker (repeatable). Default: the current certificate's.") var serverIp: [String] = []
        @Option(help: "Validity in days.") var days = 825

        func validate() throws {
            try PKIUsage.names { for name in serverName { try CommonName.validateDNSName(name) } }
            try PKIUsage.days(days, option: "--days")
        }

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            var request = ServerCertificateRequest(dnsNames: serverName, ipAddresses: serverIp, validityDays: days)
            if serverName.isEmpty && serverIp.isEmpty {
                // The names the broker is reached by do not change with its renewal: renewing with
                // the defaults (localhost, 127.0.0.1) cut off every device that used its address.
                let names = try authority.index().active(.server).last?.subjectAlternativeNames ?? ["DNS:localhost", "IP:127.0.0.1"]
                request.dnsNames = names.filter { $0.hasPrefix("DNS:") }.map { String($0.dropFirst(4)) }
                request.ipAddresses = names.filter { $0.hasPrefix("IP:") }.map { String($0.dropFirst(3)) }
            }
            let issued = try authority.issueServerCertificate(request)
            print("issued the broker certificate '\(issued.record.commonName)' serial \(issued.record.serial) "
                  + "(\(issued.record.subjectAlternativeNames.joined(separator: ", "))): \(issued.certificatePath)")
            print("restart the broker so it loads it")
        }
    }

    struct Collector: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue the collector's certificate again from the same CA (before it ends).",
            discussion: """
            Replaces collector.crt and collector.key, under the collector's current name unless \
            --name (the broker's ACL names it: a new name needs `daqctl broker-config` again). \
            Restart `daqctl collect` to use it. The old certificate stays valid until it ends: \
            revoke it (daqctl pki revoke --serial HEX, the old serial is in the output) once the \
            collector runs with the new one, and at once if its key leaked.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "CN of the collector (its MQTT username; the broker's ACL names it). Default: the current one's.") var name: String?
        @Option(help: "Validity in days.") var days = 825

        func validate() throws {
            if let name { try PKIUsage.names { try CommonName.validateClientName(name, field: "collector name") } }
            try PKIUsage.days(days, option: "--days")
        }

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            let current = try authority.index().active(.collector).last
            let commonName = name ?? current?.commonName ?? "collector"
            let issued = try authority.issueCollectorCertificate(commonName: commonName, validityDays: days)
            print("issued the collector certificate '\(commonName)' serial \(issued.record.serial): \(issued.certificatePath)")
            if let current, current.commonName != commonName {
                print("the broker's ACL names the collector '\(current.commonName)': write it again (daqctl broker-config) and reload the broker")
            }
            print("restart the collector so it uses it"
                  + (current.map { "; then revoke the old certificate: daqctl pki revoke --dir \(pki.directory) --serial \($0.serial)" } ?? ""))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every certificate the CA issued.")
        @OptionGroup var pki: PKIDirectoryOption

        func run() throws {
            let index = try CertificateAuthority(opening: pki.layout).index()
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withFullDate]
            print("ROLE       STATUS   NOT AFTER   SERIAL                            CN")
            for record in index.certificates {
                let status = record.isRevoked ? "revoked" : (record.notAfter < Date() ? "expired" : "valid")
                print([record.role.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0),
                       status.padding(toLength: 8, withPad: " ", startingAt: 0),
                       formatter.string(from: record.notAfter).padding(toLength: 11, withPad: " ", startingAt: 0),
                       record.serial.padding(toLength: 33, withPad: " ", startingAt: 0),
                       record.commonName + (record.subjectAlternativeNames.isEmpty ? "" : " (\(record.subjectAlternativeNames.joined(separator: ", ")))")]
                    .joined(separator: " "))
            }
        }
    }
}
