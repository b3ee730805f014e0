// Lifetimes of certificates and CRLs in whole seconds since the epoch, and the checks that keep
// each one at least a day long, encodable in X.509, and inside the lifetime of the CA that signs it.
import DAQCore
import Foundation

/// Validity arithmetic in whole seconds since the epoch.
enum Validity {
    static let day = 86_400
    /// notBefore is backdated so a peer whose clock is a few minutes behind still accepts a new certificate.
    static let skew = 300
    /// 9999-12-31T23:59:59Z, the last instant an X.509 time can hold (RFC 5280 §4.1.2.5); later ones
    /// encode as a five-digit year that `openssl x509` shows as "Bad time value".
    static let latest = 253_402_300_799

    static func now() -> Int { Int(Date().timeIntervalSince1970) }
    static func date(_ seconds: Int) -> Date { Date(timeIntervalSince1970: TimeInterval(seconds)) }

    /// `now` plus `days` days. Refuses less than one day (a certificate expired on arrival), an end
    /// past 9999-12-31 and, with `issuer`, an end past the CA's notAfter: nothing the CA signs can
    /// verify once the CA itself has expired. `what` names the setting, e.g. "device certificate validity".
    static func end(days: Int, from now: Int, what: String, issuer: AuthorityLifetime? = nil) throws -> Int {
        guard days >= 1 else { throw DAQError(.malformedInput, "\(what) must be at least 1 day, got \(days)") }
        let limit = min(latest, issuer?.notAfter ?? latest)
        // Compared in whole days first: `days * day` overflows Int for absurd inputs.
        if limit >= now && days <= (limit - now) / day { return now + days * day }
        let requested = days > (latest - now) / day
            ? "after 9999-12-31 (the last date X.509 can hold)" : stamp(now + days * day)
        guard let issuer else {
            throw DAQError(.malformedInput, "\(what) of \(days) days would end \(requested); give at most \((latest - now) / day)")
        }
        let left = max(0, (issuer.notAfter - now) / day)
        let advice = left > 0 ? "give at most \(left), or replace the CA" : "replace the CA (pki init --force) first"
        throw DAQError(.malformedInput,
                       "\(what) of \(days) days would end \(requested), past the CA's notAfter \(stamp(issuer.notAfter)); the CA has \(left) day(s) left: \(advice)",
                       at: InputLocation(file: issuer.file, field: "notAfter"))
    }

    /// `seconds` as an ISO 8601 UTC timestamp.
    static func stamp(_ seconds: Int) -> String {
        ISO8601DateFormatter().string(from: date(seconds))
    }
}

/// The end of a CA's lifetime, and the file it was read from (for errors).
struct AuthorityLifetime {
    var notAfter: Int
    var file: String
}
