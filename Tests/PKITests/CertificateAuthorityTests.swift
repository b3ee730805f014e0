// The CA against the outside oracle: `openssl verify`, `openssl x509 -text` and `openssl crl -text`
// read what the PKI module wrote through OpenSSL's C API.
import DAQCore
import Foundation
import PKI
import Testing
import TestSupport

/// Runs the openssl CLI (the oracle) and returns stdout + stderr.
func openssl(_ arguments: [String]) throws -> ProcessResult {
    try runProcess("openssl", arguments)
}

func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

@Suite struct CertificateAuthorityTests {
    let layout: PKILayout
    let authority: CertificateAuthority

    init() throws {
        layout = PKILayout(directory: try PackagePaths.temporaryDirectory("pki").appendingPathComponent("pki").path)
        var settings = AuthoritySettings()
        settings.authorityName = "Test Fleet CA"
        settings.server = ServerCertificateRequest(dnsNames: ["localhost", "broker.test"], ipAddresses: ["127.0.0.1", "::1"])
        authority = try CertificateAuthority.create(layout, settings: settings)
    }

    @Test func everyIssuedCertificateVerifiesAgainstTheCA() throws {
        try authority.issueDeviceCertificate("ecu-01")
        for path in [layout.caCertificate, layout.serverCertificate, layout.collectorCertificate, layout.deviceCertificate("ecu-01")] {
            let result = try openssl(["verify", "-CAfile", layout.caCertificate, path])
            #expect(result.status == 0, "\(path): \(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("\(path): OK"))
        }
    }

    @Test func caCertificateIsAConstrainedSelfSignedV3Authority() throws {
        let text = try openssl(["x509", "-in", layout.caCertificate, "-noout", "-text"]).stdout
        #expect(text.contains("Version: 3 (0x2)"))
        #expect(text.contains("Issuer: CN = Test Fleet CA"))
        #expect(text.contains("Subject: CN = Test Fleet CA"))
        #expect(text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE"))
        #expect(text.contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"))
        #expect(text.contains("X509v3 Subject Key Identifier"))
        #expect(text.contains("ASN1 OID: prime256v1"))
        #expect(text.contains("ecdsa-with-SHA256"))
    }

    @Test func serverCertificateCarriesSANsAndServerAuthOnly() throws {
        let text = try openssl(["x509", "-in", layout.serverCertificate, "-noout", "-text"]).stdout
        #expect(text.contains("Subject: CN = localhost"))
        #expect(text.contains("DNS:localhost, DNS:broker.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"))
        #expect(text.contains("X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n"))
        #expect(text.contains("CA:FALSE"))
        // The purpose check OpenSSL applies in a TLS handshake, not just the text.
        #expect(try openssl(["verify", "-CAfile", layout.caCertificate, "-purpose", "sslserver", layout.serverCertificate]).status == 0)
        #expect(try openssl(["verify", "-CAfile", layout.caCertificate, "-purpose", "sslclient", layout.serverCertificate]).status != 0)
    }

    @Test func deviceAndCollectorCertificatesAreClientAuthWithTheirCN() throws {
        try authority.issueDeviceCertificate("ecu-bench_7.a")
        for (path, cn) in [(layout.deviceCertificate("ecu-bench_7.a"), "ecu-bench_7.a"), (layout.collectorCertificate, "collector")] {
            let text = try openssl(["x509", "-in", path, "-noout", "-text"]).stdout
            #expect(text.contains("Subject: CN = \(cn)\n"))
            #expect(text.contains("X509v3 Extended Key Usage: \n                TLS Web Client Authentication\n"))
            #expect(!text.contains("Subject Alternative Name"))
            #expect(try openssl(["verify", "-CAfile", layout.caCertificate, "-purpose", "sslclient", path]).status == 0)
            #expect(try openssl(["verify", "-CAfile", layout.caCertificate, "-purpose", "sslserver", path]).status != 0)
        }
    }

    @Test func keysAre0600AndCertificates0644() throws {
        try authority.issueDeviceCertificate("ecu-02")
        for key in [layout.caKey, layout.serverKey, layout.collectorKey, layout.deviceKey("ecu-02")] {
            #expect(try fileMode(key) == 0o600, "\(key)")
            #expect(try openssl(["pkey", "-in", key, "-noout"]).status == 0, "\(key) is a readable PEM key")
        }
        for file in [layout.caCertificate, layout.serverCertificate, layout.collectorCertificate,
                     layout.deviceCertificate("ecu-02"), layout.revocationList, layout.index] {
            #expect(try fileMode(file) == 0o644, "\(file)")
        }
        // No temporary files are left behind by the atomic writes.
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: layout.directory).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }

    @Test func serialsAreRandom128BitAndMatchTheIndex() throws {
        let first = try authority.issueDeviceCertificate("ecu-03")
        let second = try authority.issueDeviceCertificate("ecu-04")
        #expect(first.record.serial != second.record.serial)
        for issued in [first, second] {
            #expect(issued.record.serial.count == 32, "128 bits with the top bit set = 32 hex digits")
            let printed = try openssl(["x509", "-in", issued.certificatePath, "-noout", "-serial"]).stdout
            #expect(printed.trimmingCharacters(in: .whitespacesAndNewlines) == "serial=\(issued.record.serial)")
        }
        let index = try authority.index()
        #expect(index.certificates.map(\.role) == [.authority, .server, .collector, .device, .device])
        #expect(Set(index.certificates.map(\.serial)).count == index.certificates.count)
    }

    @Test func revocationPutsTheSerialOnTheCRLAndCRLCheckRejectsOnlyThatDevice() throws {
        let revoked = try authority.issueDeviceCertificate("ecu-lost")
        try authority.issueDeviceCertificate("ecu-kept")
        let empty = try openssl(["crl", "-in", layout.revocationList, "-noout", "-text"]).stdout
        #expect(empty.contains("No Revoked Certificates."))

        let list = try authority.revokeDevice("ecu-lost", revocationListValidityDays: 7)
        #expect(list.revokedSerials == [revoked.record.serial])
        let crl = try openssl(["crl", "-in", layout.revocationList, "-noout", "-text"]).stdout
        #expect(crl.contains("Serial Number: \(revoked.record.serial)"))
        #expect(crl.contains("Issuer: CN = Test Fleet CA"))
        #expect(crl.contains("X509v3 CRL Number: \n                \(list.number)"))
        #expect(try openssl(["crl", "-in", layout.revocationList, "-noout", "-CAfile", layout.caCertificate]).stderr
            .contains("verify OK"))
        // Valid 7 days from now; thisUpdate 5 minutes back, like the certificates' notBefore.
        #expect(list.nextUpdate.timeIntervalSince(list.thisUpdate) == 7 * 86_400 + 300)

        let bundle = layout.path("ca-with-crl.pem")
        try (String(contentsOfFile: layout.caCertificate, encoding: .utf8) + String(contentsOfFile: layout.revocationList, encoding: .utf8))
            .write(toFile: bundle, atomically: true, encoding: .utf8)
        let rejected = try openssl(["verify", "-crl_check", "-CAfile", bundle, layout.deviceCertificate("ecu-lost")])
        #expect(rejected.status != 0)
        #expect((rejected.stdout + rejected.stderr).contains("certificate revoked"))
        #expect(try openssl(["verify", "-crl_check", "-CAfile", bundle, layout.deviceCertificate("ecu-kept")]).status == 0)

        #expect(try authority.index().active(.device).map(\.commonName) == ["ecu-kept"])
        #expect(throws: DAQError.self) { try authority.revokeDevice("ecu-lost") }
        #expect(throws: DAQError.self) { try authority.revokeDevice("never-issued") }
    }

    @Test func crlNumbersIncrease() throws {
        let first = try authority.publishRevocationList()
        let second = try authority.publishRevocationList()
        #expect(second.number == first.number + 1)
    }

    @Test func reissueRequiresRevocationOrExplicitReplacement() throws {
        let first = try authority.issueDeviceCertificate("ecu-05")
        #expect(throws: DAQError.self) { try authority.issueDeviceCertificate("ecu-05") }
        let replacement = try authority.issueDeviceCertificate("ecu-05", replacingActive: true)
        #expect(replacement.record.serial != first.record.serial)
        try authority.revokeDevice("ecu-05")
        #expect(try authority.index().active(.device, commonName: "ecu-05").isEmpty, "revoke covers every certificate of the id")
        let afterRevocation = try authority.issueDeviceCertificate("ecu-05")
        #expect(try authority.index().active(.device, commonName: "ecu-05") == [afterRevocation.record])
    }

    @Test(arguments: ["collector", "localhost", "", "a/b", "dev+", "dev#", "dev ice", ".hidden", "-flag",
                      String(repeating: "x", count: 65), "défaut"])
    func unsafeOrReservedDeviceIDsAreRefused(_ id: String) throws {
        #expect(throws: DAQError.self) { try authority.issueDeviceCertificate(id) }
        #expect(!FileManager.default.fileExists(atPath: layout.deviceCertificate(id)) || id.isEmpty)
    }

    @Test func existingCAIsNotReplacedWithoutOverwrite() throws {
        let before = try String(contentsOfFile: layout.caCertificate, encoding: .utf8)
        #expect(throws: DAQError.self) { try CertificateAuthority.create(layout) }
        #expect(try String(contentsOfFile: layout.caCertificate, encoding: .utf8) == before)
        try CertificateAuthority.create(layout, overwrite: true)
        #expect(try String(contentsOfFile: layout.caCertificate, encoding: .utf8) != before)
    }

    @Test func badServerNamesAndMissingDirectoriesAreReported() throws {
        #expect(throws: DAQError.self) {
            try authority.issueServerCertificate(ServerCertificateRequest(dnsNames: ["bad,name"], ipAddresses: []))
        }
        #expect(throws: DAQError.self) {
            try authority.issueServerCertificate(ServerCertificateRequest(dnsNames: [], ipAddresses: ["300.1.1.1"]))
        }
        do {
            _ = try CertificateAuthority(opening: PKILayout(directory: "/nonexistent/pki"))
            Issue.record("opening a missing PKI must fail")
        } catch let error as DAQError {
            #expect(error.location?.file == "/nonexistent/pki/ca.crt")
        }
    }

    @Test func aCorruptCAKeyNamesTheFileAndOpenSSLsReason() throws {
        try "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n"
            .write(toFile: layout.caKey, atomically: false, encoding: .utf8)
        do {
            try authority.issueDeviceCertificate("ecu-06")
            Issue.record("a corrupt CA key must fail")
        } catch let error as DAQError {
            #expect(error.location?.file == layout.caKey)
            #expect(error.message.contains("OpenSSL"))
            #expect(error.message.contains("error:"), "carries OpenSSL's error-queue text: \(error.message)")
        }
    }
}
