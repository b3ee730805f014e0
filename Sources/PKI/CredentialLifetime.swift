// When a certificate or a CRL in use runs out, said ahead of time. An expired device certificate
// is a device that can no longer send; an expired CRL is a broker that refuses every client (OpenSSL
// treats a CRL past its nextUpdate as expired) — the whole fleet at once, on a date set when the
// CRL was published and easily forgotten.
internal import COpenSSL
import DAQCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum CredentialLifetime {
    /// What to say about one credential: a warning while it still works, an alarm once it ended.
    public struct Notice: Equatable, Sendable {
        public var expired: Bool
        public var text: String

        public init(expired: Bool, text: String) {
            self.expired = expired
            self.text = text
        }
    }

    /// notBefore and notAfter of the first certificate in the PEM file at `path`, in seconds since
    /// the epoch.
    public static func certificateValidity(path: String) throws -> (start: Int, end: Int) {
        let certificate = try OwnedCertificate.load(pem: try AtomicFile.read(path), file: path)
        return (try certificate.notBefore(file: path), try certificate.notAfter(file: path))
    }

    /// notAfter of the first certificate in the PEM file at `path`, in seconds since the epoch.
    public static func certificateEnd(path: String) throws -> Int { try certificateValidity(path: path).end }

    /// The line to log when the system clock stands before `start`, the start of `what`: a board
    /// without a real-time clock boots at 1970 (or at its last shutdown) until NTP sets it, and
    /// until then no certificate verifies, on either side of a TLS handshake.
    public static func clockBehind(_ what: String, start: Int, now: Int) -> String? {
        guard now < start else { return nil }
        return "the system clock reads \(Validity.stamp(now)), before the start of \(what) (\(Validity.stamp(start))): "
            + "no TLS connection can verify until the clock is set (NTP, an RTC); acquisition goes on into the journal"
    }

    /// nextUpdate of the CRL in the PEM file at `path`, in seconds since the epoch.
    public static func revocationListEnd(path: String) throws -> Int {
        let pem = try AtomicFile.read(path)
        let crl = try PEM.withReadBIO(pem, file: path) { PEM_read_bio_X509_CRL($0, nil, nil, nil) }
        guard let crl else { throw OpenSSLFailure.error("reading a PEM CRL", file: path) }
        defer { X509_CRL_free(crl) }
        var fields = tm()
        guard let time = X509_CRL_get0_nextUpdate(crl), ASN1_TIME_to_tm(time, &fields) == 1 else {
            throw DAQError(.malformedInput, "the CRL has no nextUpdate", at: InputLocation(file: path, field: "nextUpdate"))
        }
        return Int(timegm(&fields))
    }

    /// The line to log about `what` (e.g. "the device certificate pki/ecu-01.crt"), which ends at
    /// `end`, at `now` (seconds since the epoch): nil while more than `warnDays` are left.
    /// `consequence` says what its end does, `remedy` what to do.
    public static func notice(_ what: String, end: Int, now: Int, warnDays: Int, consequence: String, remedy: String) -> Notice? {
        let left = end - now
        guard left <= warnDays * Validity.day else { return nil }
        let date = Validity.stamp(end)
        if left <= 0 {
            return Notice(expired: true, text: "\(what) expired on \(date) (\(span(-left)) ago): \(consequence); \(remedy)")
        }
        return Notice(expired: false, text: "\(what) expires on \(date), in \(span(left)): then \(consequence); \(remedy)")
    }

    /// Days; hours under two days; minutes under two hours (each to the nearest: a CRL published
    /// for 3 days reads "in 3 days" a second later).
    public static func span(_ seconds: Int) -> String {
        if seconds >= 2 * Validity.day - Validity.day / 2 { return "\((seconds + Validity.day / 2) / Validity.day) days" }
        if seconds >= 7200 - 1800 { return "\((seconds + 1800) / 3600) hours" }
        let minutes = (seconds + 30) / 60
        return minutes == 1 ? "1 minute" : "\(minutes) minutes"
    }

    /// A certificate or CRL file to watch, what its end does and what to do about it.
    public struct Watched: Sendable {
        public var what: String
        public var path: String
        public var isRevocationList: Bool
        public var warnDays: Int
        public var consequence: String
        public var remedy: String

        public init(what: String, path: String, isRevocationList: Bool = false, warnDays: Int, consequence: String, remedy: String) {
            (self.what, self.path, self.isRevocationList, self.warnDays) = (what, path, isRevocationList, warnDays)
            (self.consequence, self.remedy) = (consequence, remedy)
        }

        /// Reads the file and says what is due at `now`; a file that cannot be read says so.
        public func check(now: Int) -> Notice? {
            do {
                let end = isRevocationList ? try revocationListEnd(path: path) : try certificateEnd(path: path)
                return notice("\(what) \(path)", end: end, now: now, warnDays: warnDays, consequence: consequence, remedy: remedy)
            } catch {
                return Notice(expired: false, text: "\(what) \(path) cannot be read to check when it ends: \(error)")
            }
        }
    }

    /// The devices of a PKI (its `index.json` at `path`) whose newest certificate in good standing
    /// ends within `warnDays` of `now`, or has ended: one notice each, by device id. (A device
    /// sees only its own certificate; once it has expired, it can fetch a new one only from the
    /// renewal listener, which serves what `pki renew --publish` wrote. So the fleet side says it,
    /// ahead of time.)
    public static func deviceNotices(index path: String, now: Int, warnDays: Int, pki: String) throws -> [Notice] {
        let index = try CertificateIndex.decode(try AtomicFile.read(path), file: path)
        let newest = Dictionary(grouping: index.active(.device), by: \.commonName).compactMapValues { records in
            records.max { $0.notAfter < $1.notAfter }
        }
        return newest.keys.sorted().compactMap { device in
            let record = newest[device]!
            return notice("device \(device)'s certificate (serial \(record.serial))", end: Int(record.notAfter.timeIntervalSince1970),
                          now: now, warnDays: warnDays,
                          consequence: "the broker refuses the device, and so does the mTLS update server",
                          remedy: "renew it (daqctl pki renew --dir \(pki) \(device) --publish UPDATES); a device run with --ota-renewal-url fetches it, even once expired")
        }
    }

    /// `seconds` since the epoch as an ISO 8601 UTC timestamp.
    public static func stamp(_ seconds: Int) -> String { Validity.stamp(seconds) }

    /// The current time in seconds since the epoch.
    public static func now() -> Int { Validity.now() }
}
