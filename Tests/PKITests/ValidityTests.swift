// Lifetimes the CA refuses: under a day (expired on arrival), past 9999-12-31 (X.509 cannot encode
// it; openssl shows "Bad time value") and, for everything the CA signs, past the CA's own notAfter.
import DAQCore
import Foundation
import PKI
import Testing
import TestSupport

@Suite struct ValidityTests {
    func freshLayout() throws -> PKILayout {
        PKILayout(directory: try PackagePaths.temporaryDirectory("pki-validity").appendingPathComponent("pki").path)
    }

    /// A CA living `days` days whose broker and collector certificates fit inside it.
    func shortLivedAuthority(days: Int) throws -> CertificateAuthority {
        var settings = AuthoritySettings()
        settings.authorityValidityDays = days
        settings.server.validityDays = days / 2
        settings.collectorValidityDays = days / 2
        return try CertificateAuthority.create(try freshLayout(), settings: settings)
    }

    @Test(arguments: [0, -1, 99_999_999, Int.max])
    func caValidityOutsideOneDayToYear9999IsRefusedBeforeAnythingIsWritten(_ days: Int) throws {
        let layout = try freshLayout()
        var settings = AuthoritySettings()
        settings.authorityValidityDays = days
        let error = #expect(throws: DAQError.self) { try CertificateAuthority.create(layout, settings: settings) }
        #expect(error?.message.contains("CA validity") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: layout.caCertificate))
        #expect(!FileManager.default.fileExists(atPath: layout.caKey))
    }

    @Test func initRefusesBrokerCollectorOrCRLLifetimesPastTheCAWithoutWritingAnything() throws {
        for field in ["broker certificate", "collector certificate", "CRL"] {
            let layout = try freshLayout()
            var settings = AuthoritySettings()
            settings.authorityValidityDays = 30
            settings.server.validityDays = field == "broker certificate" ? 31 : 30
            settings.collectorValidityDays = field == "collector certificate" ? 31 : 30
            settings.revocationListValidityDays = field == "CRL" ? 31 : 30
            let error = #expect(throws: DAQError.self) { try CertificateAuthority.create(layout, settings: settings) }
            #expect(error?.message.contains("\(field) validity of 31 days") == true, "\(String(describing: error))")
            #expect(error?.message.contains("past the CA's notAfter") == true)
            #expect(!FileManager.default.fileExists(atPath: layout.caCertificate), "\(field): no half-made PKI")
        }
    }

    @Test func aDeviceCertificateCannotOutliveItsCA() throws {
        let authority = try shortLivedAuthority(days: 100)
        let layout = authority.layout
        let caNotAfter = try #require(try authority.index().certificates.first { $0.role == .authority }?.notAfter)
        let stamp = ISO8601DateFormatter().string(from: caNotAfter)

        for days in [101, 99_999_999, Int.max] {
            let error = #expect(throws: DAQError.self) { try authority.issueDeviceCertificate("ecu-\(days % 1000)", validityDays: days) }
            #expect(error?.message.contains("device certificate validity of \(days) days") == true, "\(String(describing: error))")
            #expect(error?.message.contains("past the CA's notAfter \(stamp)") == true, "\(String(describing: error))")
            #expect(error?.message.contains("the CA has 99 day(s) left") == true || error?.message.contains("has 100 day(s) left") == true)
            #expect(error?.location?.file == layout.caCertificate)
        }
        let past9999 = #expect(throws: DAQError.self) { try authority.issueDeviceCertificate("ecu-04", validityDays: 99_999_999) }
        #expect(past9999?.message.contains("after 9999-12-31") == true)
        #expect(!FileManager.default.fileExists(atPath: layout.deviceCertificate("ecu-04")))
        #expect(throws: DAQError.self) { try authority.issueDeviceCertificate("ecu-05", validityDays: 0) }

        // What still fits inside the CA is issued, and the oracle reads a sane notAfter.
        try authority.issueDeviceCertificate("ecu-04", validityDays: 99)
        let dates = try openssl(["x509", "-in", layout.deviceCertificate("ecu-04"), "-noout", "-enddate"]).stdout
        #expect(!dates.contains("Bad time value") && dates.hasPrefix("notAfter="), "\(dates)")
        #expect(try openssl(["verify", "-CAfile", layout.caCertificate, layout.deviceCertificate("ecu-04")]).status == 0)
    }

    @Test func brokerCollectorAndCRLRenewalsCannotOutliveTheCA() throws {
        let authority = try shortLivedAuthority(days: 40)
        #expect(throws: DAQError.self) { try authority.issueServerCertificate(ServerCertificateRequest(validityDays: 41)) }
        #expect(throws: DAQError.self) { try authority.issueCollectorCertificate(validityDays: 41) }
        #expect(throws: DAQError.self) { try authority.publishRevocationList(validityDays: 41) }
        #expect(throws: DAQError.self) { try authority.publishRevocationList(validityDays: 0) }

        // A revocation whose CRL would be refused is not recorded either: the index and the CRL agree.
        try authority.issueDeviceCertificate("ecu-01", validityDays: 10)
        let error = #expect(throws: DAQError.self) { try authority.revokeDevice("ecu-01", revocationListValidityDays: 41) }
        #expect(error?.message.contains("CRL validity of 41 days") == true)
        #expect(try authority.index().revoked.isEmpty)
        try authority.revokeDevice("ecu-01", revocationListValidityDays: 30)
        #expect(try authority.index().revoked.count == 1)
    }
}
