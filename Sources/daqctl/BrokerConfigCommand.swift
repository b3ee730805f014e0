// `daqctl broker-config`: writes mosquitto.conf + acl for a PKI made by `daqctl pki init`.
import ArgumentParser
import DAQCore
import Foundation
import PKI

struct BrokerConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker-config",
        abstract: "Write a mosquitto.conf and ACL for the PKI (mTLS 1.3, CN = username, per-device topics).",
        discussion: """
        Writes OUT/mosquitto.conf and OUT/acl and creates the persistence directory; run the broker \
        with `mosquitto -c OUT/mosquitto.conf`. Paths in the config are absolute. Devices may write \
        only devices/<their CN>/# and read devices/<CN>/ack, /cmd and /ota/#; the collector reads \
        devices/# and writes acks, commands and OTA notices. Queues are unlimited (mosquitto's default \
        limit drops messages silently). Started as root, mosquitto drops to user 'mosquitto' before \
        it reads its files, and the PKI directory is 0700 (its keys 0600): mosquitto then cannot \
        read even ca.crt. Use --user root for test/demo brokers, or run the broker as the PKI's \
        owner, or point it at copies of ca.crt, ca.crl, server.crt and server.key the mosquitto \
        user can read (and copy ca.crl again after every `pki revoke` or `pki crl`).
        """
    )

    @Option(help: ArgumentHelp("The PKI directory (from `daqctl pki init`).", valueName: "DIR")) var pki: String
    @Option(help: ArgumentHelp("Where to write mosquitto.conf and acl.", valueName: "DIR")) var out: String
    @Option(help: "TLS listener port.") var port = 8883
    @Option(help: "Address the listener binds to.") var bind = "127.0.0.1"
    @Option(help: ArgumentHelp("Persistence directory (default OUT/data).", valueName: "DIR")) var dataDir: String?
    @Option(help: "Run the broker as this user (`root` for test/demo brokers started as root).") var user: String?
    @Option(help: "Per-client queue limit in messages, for fault-injection brokers only (overflow is dropped silently).")
    var queueLimit: Int?
    @Option(help: "How long an offline durable session is kept: a number and h, d, w, m (30 days) or y (365 days), e.g. 12h, 14d, 1w.")
    var clientExpiration = "14d"
    @Flag(help: "Keep the client's own client id instead of forcing it to the certificate CN (allows session takeover).")
    var keepClientId = false
    @Option(help: ArgumentHelp("Also accept clients of this PKI's CA (repeatable): during a change of CA, the NEW one, while --pki is still the old (docs/pki.md).", valueName: "DIR"))
    var alsoTrust: [String] = []

    func run() throws {
        let pkiDirectory = Self.absolute(pki)
        let outDirectory = Self.absolute(out)
        let layout = PKILayout(directory: pkiDirectory)
        let index = try CertificateAuthority(opening: layout).index()
        guard let collector = index.collectorName else {
            throw DAQError(.unsupported, "the PKI has no collector certificate", at: InputLocation(file: layout.index))
        }
        var configuration = BrokerConfiguration(pki: layout, outputDirectory: outDirectory, collectorName: collector,
                                                persistenceDirectory: dataDir.map(Self.absolute))
        configuration.port = port
        configuration.bindAddress = bind
        configuration.runAsUser = user
        configuration.queueLimit = queueLimit
        configuration.persistentClientExpiration = clientExpiration
        configuration.clientIDFromCertificate = !keepClientId
        (configuration.caFile, configuration.revocationListFile) = try CombinedTrust.files(pki: layout, also: alsoTrust, outDirectory: outDirectory)
        let path = try configuration.write(into: outDirectory)
        print("wrote \(path) and \(configuration.aclFile)")
        if let note = CombinedTrust.note(alsoTrust, outDirectory: outDirectory) { print(note) }
        if let user, getpwnam(user) == nil {
            // Only a note: the broker may run on another machine, where the account exists.
            FileHandle.standardError.write(Data("note: there is no user '\(user)' on this machine; mosquitto started here would refuse to run as it\n".utf8))
        }
        print("run: mosquitto -c \(path)")
    }

    // mosquitto resolves relative paths against its own working directory, so write absolute ones.
    static func absolute(_ path: String) -> String {
        var result = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
        return URL(fileURLWithPath: result).standardizedFileURL.path
    }
}
