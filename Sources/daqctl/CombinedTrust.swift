// `--also-trust` of broker-config and nginx-config: during a change of CA, the broker and the
// update server accept client certificates from the new CA and the old one. Both read one CA
// file and one CRL file, so the PKIs' ca.crt and ca.crl are joined into OUT/trust.pem and
// OUT/crl.pem (OpenSSL needs the CRL of every CA it checks a client of).
import DAQCore
import Foundation
import PKI

enum CombinedTrust {
    /// The CA and CRL files a server of `pki` uses: the PKI's own when `also` is empty, else the
    /// joined files written into `outDirectory`.
    static func files(pki: PKILayout, also: [String], outDirectory: String) throws -> (caFile: String, revocationListFile: String) {
        guard !also.isEmpty else { return (pki.caCertificate, pki.revocationList) }
        let layouts = [pki] + also.map { PKILayout(directory: BrokerConfigCommand.absolute($0)) }
        var authorities: [UInt8] = [], lists: [UInt8] = []
        for (position, layout) in layouts.enumerated() {
            for path in [layout.caCertificate, layout.revocationList] where !FileManager.default.fileExists(atPath: path) {
                let what = position == 0 ? "--pki" : "--also-trust"
                throw DAQError(.io, "missing: \(what) wants a PKI directory (from `daqctl pki init`)", at: InputLocation(file: path))
            }
            authorities += try ArtifactFile.read(layout.caCertificate) + [UInt8(ascii: "\n")]
            lists += try ArtifactFile.read(layout.revocationList) + [UInt8(ascii: "\n")]
        }
        try FileManager.default.createDirectory(atPath: outDirectory, withIntermediateDirectories: true)
        let caFile = outDirectory + "/trust.pem", revocationListFile = outDirectory + "/crl.pem"
        try ArtifactFile.write(authorities, to: caFile)
        try ArtifactFile.write(lists, to: revocationListFile)
        return (caFile, revocationListFile)
    }

    /// What the command prints about the joined files.
    static func note(_ also: [String], outDirectory: String) -> String? {
        guard !also.isEmpty else { return nil }
        return "trusting the client certificates of \(also.count + 1) CAs: \(outDirectory)/trust.pem and \(outDirectory)/crl.pem "
            + "(copies: run this again after every `pki revoke` or `pki crl` of any of them, then reload)"
    }
}
