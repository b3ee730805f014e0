// `daqctl ota`: the release side of over-the-air updates — release keys, signed manifests, the
// update directory nginx serves, and that nginx's mTLS configuration. Thin shells over OTA and PKI.
import ArgumentParser
import DAQCore
import Foundation
import OTA
import PKI

struct OTACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ota",
        abstract: "Over-the-air updates: release keys, signed manifests, the update directory and its nginx.",
        discussion: """
        Release flow:

          # release.key (0600) signs; release.pub goes onto the devices
          daqctl ota keygen --out keys
          # writes daqlink-7.bin.manifest and daqlink-7.bin.sig
          daqctl ota sign --key keys/release.key --kind firmware --version 7 \\
            --hardware rig-hw.2 --floor 5 --expires-in 30 daqlink-7.bin
          daqctl ota publish --dir updates --device rig-01 daqlink-7.bin
          # --renewal-port: certificate renewals (daqctl pki renew --publish updates)
          daqctl ota nginx-config --pki pki --updates updates --out nginx --port 8443 \\
            --renewal-port 8444

        A device fetches https://server/ota/<kind>.manifest, <kind>.sig and the artifact the manifest \
        names; nginx serves them from updates/devices/<certificate CN>/ (then its group's folder), so \
        a device can never read another device's files. See docs/ota.md.
        """,
        subcommands: [Keygen.self, Sign.self, Publish.self, NginxConfig.self, History.self]
    )
}

extension OTACommand {
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate an Ed25519 release key pair (release.key 0600, release.pub).",
            discussion: "Refuses to replace an existing key. Keep release.key off the update server; give devices release.pub."
        )
        @Option(help: ArgumentHelp("Directory for release.key and release.pub.", valueName: "DIR")) var out: String

        func run() throws {
            let files = try ReleaseKeyFiles.generate(into: out)
            print("release key \(files.keyID)")
            print("  private \(files.privateKey) (0600)")
            print("  public  \(files.publicKey)")
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write FILE.manifest and FILE.sig for an artifact.",
            discussion: "The manifest binds kind, version, SHA-256, length, hardware id, floor, expiry and the file name; the signature is Ed25519 over its exact bytes."
        )
        @Option(help: ArgumentHelp("The release private key.", valueName: "KEY")) var key: String
        @Option(help: "firmware, experiment or certificates.") var kind: String
        @Option(help: "Release version (must increase with every release of this kind).") var version: UInt64
        @Option(help: "Hardware id the artifact is built for.") var hardware: String
        @Option(help: "Anti-rollback floor devices adopt when this release commits (≤ version).") var floor: UInt64 = 0
        @Option(help: "Days until the manifest expires.") var expiresIn: Int = 30
        @Argument(help: "The artifact file.") var file: String

        func validate() throws {
            guard UpdateKind(rawValue: kind) != nil else {
                throw ValidationError("--kind must be firmware, experiment or certificates, not \(kind)")
            }
            guard (1...3650).contains(expiresIn) else { throw ValidationError("--expires-in must be 1…3650 days, not \(expiresIn)") }
            // The manifest's own checks named a manifest file never written, and exited 1.
            guard SafeName.isSafe(hardware) else {
                throw ValidationError("--hardware '\(hardware)' must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
            }
            guard floor <= version else { throw ValidationError("--floor \(floor) is above --version \(version)") }
            let name = URL(fileURLWithPath: file).lastPathComponent
            guard SafeName.isSafeArtifactName(name) else {
                throw ValidationError("the artifact's file name '\(name)' must match [A-Za-z0-9_][A-Za-z0-9._-]{0,63} and not end in .manifest or .sig (it is the name devices fetch)")
            }
        }

        func run() throws {
            let updateKind = UpdateKind(rawValue: kind)!
            let (digest, length) = try ArtifactFile.digest(file)
            let manifest = UpdateManifest(kind: updateKind, version: version, sha256: digest, length: length, hardwareID: hardware,
                                          floor: floor, expires: Int64(Date().timeIntervalSince1970) + Int64(expiresIn) * 86_400,
                                          artifactName: URL(fileURLWithPath: file).lastPathComponent)
            let bytes = try manifest.encoded(file: file + ".manifest")
            let signer = try ReleaseSigningKey(path: key)
            let envelope = SignatureEnvelope(keyID: signer.keyID, signature: try signer.sign(bytes))
            // Check our own work before anything is written: a wrong key file never yields a published signature.
            let check = try ReleaseVerificationKey(pem: signer.publicKeyPEM(), file: key)
            guard check.verify(signature: envelope.signature, message: bytes) else {
                throw DAQError(.system, "the new signature does not verify", at: InputLocation(file: key))
            }
            try ArtifactFile.write(bytes, to: file + ".manifest")
            try ArtifactFile.write(envelope.encoded(), to: file + ".sig")
            print("signed \(updateKind.rawValue) \(manifest.artifactName) v\(version) (\(length) bytes, sha256 \(digest)) with key \(signer.keyID)")
            print("  \(file).manifest\n  \(file).sig")
        }
    }

    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy signed artifacts into the update directory for a device or a group.",
            discussion: """
            Each FILE needs FILE.manifest and FILE.sig beside it (from `daqctl ota sign`). The artifact \
            is checked against its manifest (name, length, SHA-256) and, with --public-key, the signature \
            is verified; then DIR/devices/<ID>/ (or DIR/groups/<NAME>/) receives the artifact, then \
            <kind>.sig and <kind>.manifest, each replaced atomically.
            """
        )
        @Option(help: ArgumentHelp("The update directory nginx serves.", valueName: "UPDATES")) var dir: String
        @Option(help: "Publish for this device id (certificate CN).") var device: String?
        @Option(help: "Publish for this group.") var group: String?
        @Option(help: ArgumentHelp("Verify each signature with this release public key first.", valueName: "PUB")) var publicKey: String?
        @Argument(help: "Artifact files.") var files: [String]

        func validate() throws {
            guard (device == nil) != (group == nil) else { throw ValidationError("give exactly one of --device and --group") }
            guard !files.isEmpty else { throw ValidationError("give at least one artifact file") }
        }

        func run() throws {
            let audience: UpdateAudience = device.map { .device($0) } ?? .group(group ?? "")
            let folder = try UpdateDirectoryLayout(directory: dir).folder(for: audience)
            let trusted = try publicKey.map { try ReleaseVerificationKey(path: $0) }
            for file in files {
                let manifestBytes = try ArtifactFile.read(file + ".manifest")
                let signatureBytes = try ArtifactFile.read(file + ".sig")
                let manifest = try UpdateManifest.parse(manifestBytes, file: file + ".manifest")
                _ = try SignatureEnvelope.parse(signatureBytes, file: file + ".sig")
                guard manifest.artifactName == URL(fileURLWithPath: file).lastPathComponent else {
                    throw DAQError(.malformedInput, "manifest names '\(manifest.artifactName)', not this file", at: InputLocation(file: file + ".manifest", field: "artifact"))
                }
                let (digest, length) = try ArtifactFile.digest(file)
                guard digest == manifest.sha256, length == manifest.length else {
                    throw DAQError(.malformedInput, "the artifact does not match its manifest (changed after signing?)", at: InputLocation(file: file, field: "sha256"))
                }
                if let trusted {
                    let status = SignatureStatus.check(envelope: signatureBytes, manifest: manifestBytes, trustedKeyIDs: [trusted.keyID]) {
                        trusted.verify(signature: $1, message: $2)
                    }
                    guard status == .valid(keyID: trusted.keyID) else {
                        throw DAQError(.malformedInput, "signature check failed: \(status)", at: InputLocation(file: file + ".sig"))
                    }
                }
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
                // Artifact first, manifest last: a device never sees a manifest whose artifact is missing.
                try ArtifactFile.write(ArtifactFile.read(file), to: folder + "/" + manifest.artifactName)
                try ArtifactFile.write(signatureBytes, to: folder + "/" + UpdateDirectoryLayout.signatureName(manifest.kind))
                try ArtifactFile.write(manifestBytes, to: folder + "/" + UpdateDirectoryLayout.manifestName(manifest.kind))
                print("published \(manifest.kind.rawValue) v\(manifest.version) \(manifest.artifactName) → \(folder)")
            }
        }
    }

    struct NginxConfig: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "nginx-config",
            abstract: "Write an nginx.conf serving the update directory over mTLS (TLS 1.3, CA + CRL, CN → directory).",
            discussion: """
            Writes OUT/nginx.conf and OUT/tmp/. Run: nginx -c OUT/nginx.conf -g 'pid OUT/nginx.pid; \
            error_log OUT/error.log;'. Clients need a certificate from the PKI's CA that is not in ca.crl; \
            nginx reads the CRL at start and on reload (nginx -s reload), and refuses EVERY client once \
            the CRL's nextUpdate passes (run `daqctl pki crl`). Devices read /ota/<file> from \
            UPDATES/devices/<CN>/, then UPDATES/groups/<group>/ for --member CN=GROUP.

            With --renewal-port, a second listener asks for no client certificate and serves only \
            /renewal/<KEY>.crt from UPDATES/renewals/ (written by `daqctl pki renew --publish`; KEY: \
            the SHA-256 of the device's public key, so ids cannot be listed by guessing): a \
            device whose certificate has expired can present none nginx accepts, and a certificate \
            is useless without the key the device holds. Give devices --ota-renewal-url \
            https://SERVER:PORT/renewal/.
            """
        )
        @Option(help: ArgumentHelp("The PKI directory (from `daqctl pki init`).", valueName: "DIR")) var pki: String
        @Option(help: ArgumentHelp("The update directory.", valueName: "DIR")) var updates: String
        @Option(help: ArgumentHelp("Where to write nginx.conf.", valueName: "DIR")) var out: String
        @Option(help: "HTTPS port.") var port = 8443
        @Option(help: ArgumentHelp("Also serve certificate renewals on this port, without a client certificate (see `daqctl pki renew`).", valueName: "PORT"))
        var renewalPort: Int?
        @Option(help: "Address the listener binds to.") var bind = "127.0.0.1"
        @Option(help: ArgumentHelp("Also accept devices of this PKI's CA (repeatable): during a change of CA, the NEW one, while --pki is still the old (docs/pki.md).", valueName: "DIR"))
        var alsoTrust: [String] = []
        @Option(help: ArgumentHelp("Device group membership (repeatable).", valueName: "DEVICE=GROUP")) var member: [String] = []
        @Option(help: "Run nginx workers as this user (`root` for test servers started as root).") var user: String?

        func validate() throws {
            for entry in member where entry.split(separator: "=", maxSplits: 1).count != 2 {
                throw ValidationError("--member wants DEVICE=GROUP, got '\(entry)'")
            }
            for (value, option) in [(port, "--port"), (renewalPort ?? port, "--renewal-port")] where !(1...65535).contains(value) {
                throw ValidationError("\(option) must be 1–65535, not \(value)")
            }
            if renewalPort == port { throw ValidationError("--renewal-port must differ from --port \(port)") }
        }

        func run() throws {
            let layout = PKILayout(directory: BrokerConfigCommand.absolute(pki))
            let outDirectory = BrokerConfigCommand.absolute(out)
            var configuration = UpdateServerConfiguration(
                caFile: layout.caCertificate, revocationListFile: layout.revocationList,
                certificateFile: layout.serverCertificate, keyFile: layout.serverKey,
                updatesDirectory: BrokerConfigCommand.absolute(updates), stateDirectory: outDirectory)
            configuration.port = port
            configuration.renewalPort = renewalPort
            configuration.bindAddress = bind
            configuration.runAsUser = user
            for entry in member {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                configuration.groups[parts[0]] = parts[1]
            }
            for path in [layout.caCertificate, layout.revocationList, layout.serverCertificate, layout.serverKey]
            where !FileManager.default.fileExists(atPath: path) {
                throw DAQError(.io, "missing; run `daqctl pki init` first", at: InputLocation(file: path))
            }
            (configuration.caFile, configuration.revocationListFile) = try CombinedTrust.files(pki: layout, also: alsoTrust, outDirectory: outDirectory)
            let text = try configuration.nginxConfiguration()
            try FileManager.default.createDirectory(atPath: outDirectory + "/tmp", withIntermediateDirectories: true)
            try ArtifactFile.write(Array(text.utf8), to: outDirectory + "/nginx.conf")
            print("wrote \(outDirectory)/nginx.conf")
            if let note = CombinedTrust.note(alsoTrust, outDirectory: outDirectory) { print(note) }
            print("run: nginx -c \(outDirectory)/nginx.conf -g 'pid \(outDirectory)/nginx.pid; error_log \(outDirectory)/error.log;'")
        }
    }
}
