// `daqctl pki`: create and run the internal certificate authority (CA, broker, collector and
// device certificates, revocation and CRL). A thin shell over the PKI module.
import ArgumentParser
import DAQCore
import Foundation
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
          daqctl pki server --dir pki --server-name broker.lab  (renewal)

        Layout of DIR: ca.crt ca.key ca.crl index.json server.crt server.key collector.crt \
        collector.key devices/<id>.crt devices/<id>.key. Keys are EC P-256 PEM, mode 0600. \
        A device gets only ca.crt and its own .crt/.key; ca.key never leaves DIR.
        """,
        subcommands: [Init.self, Device.self, Revoke.self, PublishCRL.self, Server.self, Collector.self, List.self]
    )
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

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            let issued = try authority.issueDeviceCertificate(id, validityDays: days, replacingActive: force)
            print("issued device '\(id)' serial \(issued.record.serial)")
            print("  certificate \(issued.certificatePath)")
            print("  key         \(issued.keyPath)")
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a device's certificates and republish the CRL.",
            discussion: "mosquitto reads the CRL at start and on SIGHUP: reload (kill -HUP <mosquitto pid>) or restart the broker for the revocation to take effect."
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Argument(help: "The device id.") var id: String
        @Option(help: "Days until the new CRL's nextUpdate.") var crlDays = 30

        func run() throws {
            let authority = try CertificateAuthority(opening: pki.layout)
            let list = try authority.revokeDevice(id, revocationListValidityDays: crlDays)
            print("revoked device '\(id)'; CRL #\(list.number) lists \(list.revokedSerials.count) serial(s), next update \(list.nextUpdate)")
            print("reload the broker (kill -HUP) or restart it so it loads \(list.path)")
        }
    }

    struct PublishCRL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl",
            abstract: "Republish the CRL with a new nextUpdate.",
            discussion: "Once a CRL's nextUpdate passes, the broker refuses EVERY client. Run this (and restart the broker) well before."
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "Days until nextUpdate.") var days = 30

        func run() throws {
            let list = try CertificateAuthority(opening: pki.layout).publishRevocationList(validityDays: days)
            print("published CRL #\(list.number) (\(list.revokedSerials.count) revoked) valid until \(list.nextUpdate): \(list.path)")
        }
    }

    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue the broker's certificate again from the same CA (before it ends).",
            discussion: """
            Replaces server.crt and server.key; every device and the collector go on trusting it             (same CA). Give every name and address devices connect to, as for init. Restart the             broker to load it.
            """
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "DNS name of the broker (repeatable; the first is also its CN).") var serverName: [String] = ["localhost"]
        @Option(help: "IP address of the broker (repeatable).") var serverIp: [String] = ["127.0.0.1"]
        @Option(help: "Validity in days.") var days = 825

        func run() throws {
            let issued = try CertificateAuthority(opening: pki.layout).issueServerCertificate(
                ServerCertificateRequest(dnsNames: serverName, ipAddresses: serverIp, validityDays: days))
            print("issued the broker certificate '\(issued.record.commonName)' serial \(issued.record.serial): \(issued.certificatePath)")
            print("restart the broker so it loads it")
        }
    }

    struct Collector: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue the collector's certificate again from the same CA (before it ends).",
            discussion: "Replaces collector.crt and collector.key. Restart `daqctl collect` to use it; the broker needs nothing."
        )
        @OptionGroup var pki: PKIDirectoryOption
        @Option(help: "CN of the collector (its MQTT username; the broker's ACL names it).") var name = "collector"
        @Option(help: "Validity in days.") var days = 825

        func run() throws {
            let issued = try CertificateAuthority(opening: pki.layout).issueCollectorCertificate(commonName: name, validityDays: days)
            print("issued the collector certificate '\(name)' serial \(issued.record.serial): \(issued.certificatePath)")
            print("restart the collector so it uses it")
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
