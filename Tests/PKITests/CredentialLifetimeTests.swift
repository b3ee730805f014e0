// When a certificate or the CRL runs out, said ahead of time: the pure wording, the ends read from
// real files, and the collector and daqlink saying it at start.
import Foundation
import PKI
import Testing
import TestSupport

@Suite struct CredentialLifetimeTests {
    let daqctl = PackagePaths.executable("daqctl").path
    static let day = 86_400

    @Test func aCredentialIsNamedWithinItsWindowAndAlarmsOnceEnded() throws {
        let now = 1_800_000_000
        let far = CredentialLifetime.notice("the CRL x", end: now + 8 * Self.day, now: now, warnDays: 7, consequence: "c", remedy: "r")
        #expect(far == nil)
        let near = try #require(CredentialLifetime.notice("the CRL x", end: now + 3 * Self.day, now: now, warnDays: 7,
                                                           consequence: "the broker refuses every client", remedy: "publish it again"))
        #expect(!near.expired)
        #expect(near.text == "the CRL x expires on 2027-01-18T08:00:00Z, in 3 days: then the broker refuses every client; publish it again")
        let ended = try #require(CredentialLifetime.notice("the CRL x", end: now - 5 * 3600, now: now, warnDays: 7, consequence: "c", remedy: "r"))
        #expect(ended.expired && ended.text.hasPrefix("the CRL x expired on 2027-01-15T03:00:00Z (5 hours ago): c; r"), "\(ended.text)")
    }

    @Test(arguments: [(59, "1 minute"), (3000, "50 minutes"), (7000, "2 hours"), (30 * 3600, "30 hours"), (2 * 86_400 - 60, "2 days"), (10 * 86_400, "10 days")])
    func spansReadToTheNearestUnit(seconds: Int, text: String) {
        #expect(CredentialLifetime.span(seconds) == text)
    }

    /// The collector, started on a PKI whose CRL ends in 3 days, says so with the command that
    /// mends it (an expired CRL makes the broker refuse every client: the whole fleet at once).
    @Test func theCollectorNamesACRLNearItsEnd() throws {
        let work = try PackagePaths.temporaryDirectory("lifetime-collector")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", pki, "--crl-days", "3", "--collector-days", "20"]).status == 0)
        #expect(try runProcess(daqctl, ["pki", "device", "--dir", pki, "rig-1", "--days", "10"]).status == 0)
        #expect(try runProcess(daqctl, ["pki", "device", "--dir", pki, "rig-2"]).status == 0)
        let port = try MosquittoBroker.freeLoopbackPort()
        let run = try runProcess(daqctl, ["collect", "--broker", "127.0.0.1:\(port)", "--pki", pki, "--out", work.appendingPathComponent("out").path,
                                          "--duration", "1"])
        #expect(run.stderr.contains("daqctl collect: WARNING: the broker's CRL \(pki)/ca.crl expires on ")
                && run.stderr.contains(", in 3 days: then the broker refuses every client (OpenSSL counts an expired CRL as a failed check); "
                                       + "publish it again (daqctl pki crl --dir \(pki)), reload the broker (kill -HUP) and nginx if it serves OTA"),
                "\(run.stderr)")
        #expect(run.stderr.contains("WARNING: the collector's certificate \(pki)/collector.crt expires on ")
                && run.stderr.contains("in 20 days: then the broker refuses the collector"), "\(run.stderr)")
        // A device sees only its own certificate, and once it has expired it can fetch only a renewal.
        #expect(run.stderr.contains("WARNING: device rig-1's certificate (serial ") && run.stderr.contains("in 10 days: then the broker refuses the device")
                && run.stderr.contains("daqctl pki renew --dir \(pki) rig-1 --publish UPDATES"), "\(run.stderr)")
        #expect(!run.stderr.contains("rig-2"), "\(run.stderr)")
        // What is far from its end says nothing.
        #expect(!run.stderr.contains("the CA certificate") && !run.stderr.contains("the broker's certificate"), "\(run.stderr)")
        // Mended with the commands it names: nothing to say any more.
        #expect(try runProcess(daqctl, ["pki", "crl", "--dir", pki]).status == 0)
        #expect(try runProcess(daqctl, ["pki", "collector", "--dir", pki]).status == 0)
        #expect(try runProcess(daqctl, ["pki", "renew", "--dir", pki, "rig-1"]).status == 0)
        let again = try runProcess(daqctl, ["collect", "--broker", "127.0.0.1:\(port)", "--pki", pki, "--out", work.appendingPathComponent("out").path,
                                            "--duration", "0.5"])
        #expect(!again.stderr.contains("WARNING"), "\(again.stderr)")
        #expect(try CredentialLifetime.certificateEnd(path: "\(pki)/collector.crt") > CredentialLifetime.now() + 800 * Self.day)
        #expect(try CredentialLifetime.revocationListEnd(path: "\(pki)/ca.crl") > CredentialLifetime.now() + 29 * Self.day)
    }

    /// `pki server` issues the broker's certificate again from the same CA, with the names given.
    @Test func theBrokersCertificateIsIssuedAgainFromTheSameCA() throws {
        let work = try PackagePaths.temporaryDirectory("lifetime-server")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(daqctl, ["pki", "init", "--dir", pki, "--server-days", "10"]).status == 0)
        let renewed = try runProcess(daqctl, ["pki", "server", "--dir", pki, "--server-name", "broker.lab", "--server-ip", "10.0.0.5"])
        #expect(renewed.status == 0 && renewed.stdout.contains("issued the broker certificate 'broker.lab'"), "\(renewed.stderr)")
        #expect(try CredentialLifetime.certificateEnd(path: "\(pki)/server.crt") > CredentialLifetime.now() + 800 * Self.day)
        let verify = try runProcess("openssl", ["verify", "-CAfile", "\(pki)/ca.crt", "\(pki)/server.crt"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let san = try runProcess("openssl", ["x509", "-in", "\(pki)/server.crt", "-noout", "-ext", "subjectAltName"]).stdout
        #expect(san.contains("DNS:broker.lab, IP Address:10.0.0.5"), "\(san)")
    }
}
