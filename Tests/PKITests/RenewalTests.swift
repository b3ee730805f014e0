// Certificate renewal: a new certificate for the key a device already holds, checked by the
// device before use. `openssl` is the outside oracle for what the CA wrote.
import DAQCore
import Foundation
@testable import PKI
import Testing
import TestSupport

@Suite struct RenewalTests {
    let layout: PKILayout
    let authority: CertificateAuthority

    init() throws {
        layout = PKILayout(directory: try PackagePaths.temporaryDirectory("pki-renew").appendingPathComponent("pki").path)
        authority = try CertificateAuthority.create(layout)
    }

    private func text(_ path: String, _ arguments: [String]) throws -> String {
        try openssl(["x509", "-in", path, "-noout"] + arguments).stdout
    }

    @Test func aRenewalSignsTheSameKeyAgainWithANewSerialAndALaterEnd() throws {
        let first = try authority.issueDeviceCertificate("ecu-01", validityDays: 10)
        let key = try Data(contentsOf: URL(fileURLWithPath: first.keyPath))
        let publicKey = try text(first.certificatePath, ["-pubkey"])
        let firstEnd = try CredentialLifetime.certificateEnd(path: first.certificatePath)

        let renewed = try authority.renewDeviceCertificate("ecu-01", validityDays: 400)
        #expect(renewed.certificatePath == first.certificatePath && renewed.keyPath == first.keyPath)
        #expect(try Data(contentsOf: URL(fileURLWithPath: first.keyPath)) == key, "the key never changes")
        #expect(try text(renewed.certificatePath, ["-pubkey"]) == publicKey)
        #expect(renewed.record.serial != first.record.serial)
        #expect(try text(renewed.certificatePath, ["-serial"]).contains("serial=\(renewed.record.serial)"))
        #expect(try CredentialLifetime.certificateEnd(path: renewed.certificatePath) > firstEnd + 300 * 86_400)
        #expect(try text(renewed.certificatePath, ["-subject"]).contains("CN = ecu-01"))
        let verified = try openssl(["verify", "-CAfile", layout.caCertificate, "-purpose", "sslclient", renewed.certificatePath])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        // Both are in the index, unrevoked: revoking the device revokes both.
        #expect(try authority.index().active(.device, commonName: "ecu-01").map(\.serial) == [first.record.serial, renewed.record.serial])
        let list = try authority.revokeDevice("ecu-01")
        #expect(Set(list.revokedSerials) == [first.record.serial, renewed.record.serial])
    }

    /// Renewed certificates share a key: revoking one (its key leaked) revokes them all, and a
    /// key revoked once is never signed again.
    @Test func revokingOneCertificateOfAKeyRevokesEveryOneAndItIsNeverRenewed() throws {
        let first = try authority.issueDeviceCertificate("ecu-01")
        let renewed = try authority.renewDeviceCertificate("ecu-01")
        let other = try authority.issueCollectorCertificate(commonName: "collector", validityDays: 30)
        let revoked = try authority.revoke(serial: first.record.serial)
        #expect(revoked.alsoRevoked.map(\.serial) == [renewed.record.serial])
        #expect(Set(revoked.list.revokedSerials) == [first.record.serial, renewed.record.serial])
        #expect(try authority.index().active(.collector).map(\.serial).contains(other.record.serial))
        let crl = try openssl(["crl", "-in", layout.revocationList, "-noout", "-text"]).stdout
        #expect(crl.contains(first.record.serial) && crl.contains(renewed.record.serial), "\(crl)")
        #expect { try authority.renewDeviceCertificate("ecu-01") } throws: { "\($0)".contains("a revoked key is never renewed") }
        // A new key for the device (pki device --force) can be renewed again.
        try authority.issueDeviceCertificate("ecu-01", replacingActive: true)
        #expect(try authority.renewDeviceCertificate("ecu-01").record.keyFingerprint != first.record.keyFingerprint)
    }

    @Test func aRevokedDeviceOrACertificateTheCADidNotIssueIsNotRenewed() throws {
        try authority.issueDeviceCertificate("ecu-01")
        try authority.revokeDevice("ecu-01")
        #expect { try authority.renewDeviceCertificate("ecu-01") } throws: { error in
            "\(error)".contains("device 'ecu-01' is revoked") && "\(error)".contains("pki device --dir")
        }
        #expect { try authority.renewDeviceCertificate("ecu-02") } throws: { "\($0)".contains("devices/ecu-02.crt") }
        // Another CA's certificate put in the device's place.
        let other = PKILayout(directory: layout.directory + "-other")
        let otherCA = try CertificateAuthority.create(other)
        try otherCA.issueDeviceCertificate("ecu-03")
        try FileManager.default.copyItem(atPath: other.deviceCertificate("ecu-03"), toPath: layout.deviceCertificate("ecu-03"))
        #expect { try authority.renewDeviceCertificate("ecu-03") } throws: { "\($0)".contains("is not a certificate this CA issued to 'ecu-03'") }
        #expect(try authority.index().certificates.filter { $0.commonName == "ecu-03" }.isEmpty)
    }

    @Test func theDeviceChecksARenewalWithItsOwnKey() throws {
        let issued = try authority.issueDeviceCertificate("ecu-01")
        let saved = layout.directory + "/ecu-01.key.saved"
        try FileManager.default.copyItem(atPath: issued.keyPath, toPath: saved)
        let renewed = try authority.renewDeviceCertificate("ecu-01")
        let pem = [UInt8](try Data(contentsOf: URL(fileURLWithPath: renewed.certificatePath)))
        let checked = try DeviceCredentialBundle.validateRenewal(pem, keyFile: saved, deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal")
        #expect(checked.serial == renewed.record.serial)
        #expect(checked.end == Int(renewed.record.notAfter.timeIntervalSince1970))
        #expect(checked.credentials.keyPEM == [UInt8](try Data(contentsOf: URL(fileURLWithPath: saved))))

        // Another device's key; this device's id on another device; a key inside; an expired one.
        try authority.issueDeviceCertificate("ecu-02")
        #expect { try DeviceCredentialBundle.validateRenewal(pem, keyFile: layout.deviceKey("ecu-02"), deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("the private key does not belong to the certificate") }
        #expect { try DeviceCredentialBundle.validateRenewal(pem, keyFile: saved, deviceID: "ecu-02", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("the certificate is for 'ecu-01', this device is 'ecu-02'") }
        let withKey = pem + [UInt8](try Data(contentsOf: URL(fileURLWithPath: saved)))
        #expect { try DeviceCredentialBundle.validateRenewal(withKey, keyFile: saved, deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("never a key") }
        let now = Int(Date().timeIntervalSince1970)
        let expired = try authority.renewDevice("ecu-01", validityDays: 1, period: (now - 20 * 86_400, now - 86_400))
        let expiredPEM = [UInt8](try Data(contentsOf: URL(fileURLWithPath: expired.certificatePath)))
        #expect { try DeviceCredentialBundle.validateRenewal(expiredPEM, keyFile: saved, deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("certificate has expired") }
        #expect { try DeviceCredentialBundle.validateRenewal([], keyFile: saved, deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("one PEM certificate") }
        // A CA certificate in a renewal (fetched unauthenticated: it must never bring trust).
        let withAuthority = pem + [UInt8](try Data(contentsOf: URL(fileURLWithPath: layout.caCertificate)))
        #expect { try DeviceCredentialBundle.validateRenewal(withAuthority, keyFile: saved, deviceID: "ecu-01", caFile: layout.caCertificate, file: "renewal") }
            throws: { "\($0)".contains("never carries CA certificates") }
        // A damaged block after a good one is named, not passed over.
        let damaged = [UInt8](try Data(contentsOf: URL(fileURLWithPath: saved))) + pem + Array("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)
        #expect { try DeviceCredentialBundle.validate(damaged, deviceID: "ecu-01", caFile: layout.caCertificate, file: "bundle") }
            throws: { "\($0)".contains("certificate 2 of 2 cannot be read") }
    }

    @Test func pkiRenewPublishesTheCertificateAndRefusesBadUsage() throws {
        let daqctl = PackagePaths.executable("daqctl").path
        try authority.issueDeviceCertificate("rig-01")
        let updates = layout.directory + "-updates"
        let run = try runProcess(daqctl, ["pki", "renew", "--dir", layout.directory, "rig-01", "--days", "90", "--publish", updates])
        #expect(run.status == 0, "\(run.stderr)")
        // Published under the SHA-256 of the public key (openssl, the oracle: the EC point is the
        // last 65 bytes of the SubjectPublicKeyInfo), not the guessable device id.
        let digest = try runProcess("/bin/sh", ["-c", "openssl x509 -in '\(layout.deviceCertificate("rig-01"))' -noout -pubkey"
                                                   + " | openssl pkey -pubin -outform DER | tail -c 65 | sha256sum"])
        let name = String(digest.stdout.prefix(64))
        #expect(name.count == 64 && name.allSatisfy(\.isHexDigit), "\(digest.stdout) \(digest.stderr)")
        #expect(run.stdout.contains("renewed device 'rig-01' serial ") && run.stdout.contains("is unchanged")
                && run.stdout.contains("published  \(updates)/renewals/\(name).crt (served as /renewal/\(name).crt"), "\(run.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: updates + "/renewals") == ["\(name).crt"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: updates + "/renewals/\(name).crt"))
                == Data(contentsOf: URL(fileURLWithPath: layout.deviceCertificate("rig-01"))))
        #expect(try fileMode(updates + "/renewals/\(name).crt") == 0o644)
        for arguments in [["rig/01"], ["rig-01", "--days", "0"]] {
            let bad = try runProcess(daqctl, ["pki", "renew", "--dir", layout.directory] + arguments)
            #expect(bad.status == 64, "\(arguments): \(bad.stderr)")
        }
        let unknown = try runProcess(daqctl, ["pki", "renew", "--dir", layout.directory, "rig-02"])
        #expect(unknown.status == 1 && unknown.stderr.contains("devices/rig-02.crt"), "\(unknown.stderr)")
    }

    /// After a key change (a bundle with a new key, committed), the old key's certificates are
    /// revoked in one command, and the current key's (a renewal of it too) stay.
    @Test func revokeSupersededLeavesOnlyTheCurrentKeysCertificates() throws {
        let daqctl = PackagePaths.executable("daqctl").path
        let first = try authority.issueDeviceCertificate("rig-01")
        let firstRenewal = try authority.renewDeviceCertificate("rig-01")
        let second = try authority.issueDeviceCertificate("rig-01", replacingActive: true)
        let secondRenewal = try authority.renewDeviceCertificate("rig-01")
        let run = try runProcess(daqctl, ["pki", "revoke", "--dir", layout.directory, "rig-01", "--superseded"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("revoked 2 superseded certificate(s) of 'rig-01'"), "\(run.stdout)")
        #expect(Set(try authority.index().active(.device, commonName: "rig-01").map(\.serial)) == [second.record.serial, secondRenewal.record.serial])
        let crl = try openssl(["crl", "-in", layout.revocationList, "-noout", "-text"]).stdout
        #expect(crl.contains(first.record.serial) && crl.contains(firstRenewal.record.serial) && !crl.contains(second.record.serial), "\(crl)")
        let again = try runProcess(daqctl, ["pki", "revoke", "--dir", layout.directory, "rig-01", "--superseded"])
        #expect(again.status == 0 && again.stdout.contains("nothing superseded"), "\(again.stdout)\(again.stderr)")
        let usage = try runProcess(daqctl, ["pki", "revoke", "--dir", layout.directory, "--serial", "AB", "--superseded"])
        #expect(usage.status == 64, "\(usage.stderr)")
    }
}
