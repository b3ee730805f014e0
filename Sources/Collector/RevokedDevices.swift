// Devices whose certificates the PKI has all revoked (`daqctl pki revoke`). mosquitto checks the
// CRL only when a client connects, so a device connected before the revocation (and a reload)
// keeps its session and publishes on: its batches would be stored and acknowledged as if nothing
// had happened. The collector reads the PKI's index (`--pki`) again when it changes, refuses those
// batches (not stored, not acknowledged: the device keeps them, for a certificate issued again)
// and raises one alarm per device, naming the cure: a broker restart cuts the connection.
import DAQCore
import PKI
#if canImport(Glibc)
import Glibc
#endif

final class RevokedDevices {
    let indexPath: String
    private var revoked: Set<String> = []
    private var modified = timespec()
    private var checkedAt: Int64?
    private var alarmed: Set<String> = []
    /// The index could not be read: said once, until it is readable again.
    private var unreadableSaid = false

    init(indexPath: String) { self.indexPath = indexPath }

    /// The devices with a certificate and none in good standing.
    static func revoked(in index: CertificateIndex) -> Set<String> {
        let issued = Set(index.certificates.filter { $0.role == .device }.map(\.commonName))
        return issued.subtracting(index.active(.device).map(\.commonName))
    }

    /// Whether `device` is revoked now. The index is read again when its modification time
    /// changed, at most once a second (`now`: the loop's clock). `say` gets the lines to log.
    func isRevoked(_ device: String, now: Int64, say: (String) -> Void) -> Bool {
        if checkedAt.map({ now - $0 >= 1_000_000_000 }) ?? true {
            checkedAt = now
            reload(say: say)
        }
        guard revoked.contains(device) else { return false }
        if alarmed.insert(device).inserted {
            say("ALARM: \(device): its certificate was revoked (daqctl pki revoke), yet it is still connected and publishing: "
                + "mosquitto checks the CRL only when a client connects; restart the broker to cut it. "
                + "Its batches are refused (not stored, not acknowledged: the device keeps them)")
        }
        return true
    }

    private func reload(say: (String) -> Void) {
        var info = stat()
        guard stat(indexPath, &info) == 0 else { return unreadable("\(String(cString: strerror(errno)))", say: say) }
        guard info.st_mtim.tv_sec != modified.tv_sec || info.st_mtim.tv_nsec != modified.tv_nsec else { return }
        do {
            let index = try CertificateIndex.decode(try AtomicFile.read(indexPath), file: indexPath)
            revoked = Self.revoked(in: index)
            modified = info.st_mtim
            unreadableSaid = false
            // A device issued a certificate again is heard again, and alarmed again if revoked again.
            alarmed.formIntersection(revoked)
        } catch {
            unreadable("\(error)", say: say)
        }
    }

    private func unreadable(_ reason: String, say: (String) -> Void) {
        guard !unreadableSaid else { return }
        unreadableSaid = true
        say("WARNING: \(indexPath) cannot be read to know the revoked devices (\(reason)); the last list read stands")
    }
}
