// Ed25519 release keys through OpenSSL EVP (PKI's ReleaseKey): key files and modes, signatures
// that verify, and refusals for a tampered manifest, a tampered signature and an unknown key.
import DAQCore
import Foundation
import OTA
import PKI
import Testing
import TestSupport

@Suite struct SigningTests {
    @Test func signsVerifiesAndRefusesTamperingAndUnknownKeys() throws {
        let root = try PackagePaths.temporaryDirectory("ota-keys")
        defer { try? FileManager.default.removeItem(at: root) }
        let files = try ReleaseKeyFiles.generate(into: root.path + "/release")
        let mode = try FileManager.default.attributesOfItem(atPath: files.privateKey)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: DAQError.self) { try ReleaseKeyFiles.generate(into: root.path + "/release") }
        let other = try ReleaseKeyFiles.generate(into: root.path + "/other")

        let signer = try ReleaseSigningKey(path: files.privateKey)
        let trusted = try ReleaseVerificationKey(path: files.publicKey)
        #expect(signer.keyID == files.keyID && trusted.keyID == files.keyID && other.keyID != files.keyID)
        let manifest = try sampleManifest.encoded()
        let envelope = SignatureEnvelope(keyID: signer.keyID, signature: try signer.sign(manifest))
        func status(_ envelope: [UInt8]?, _ manifest: [UInt8]) -> SignatureStatus {
            SignatureStatus.check(envelope: envelope, manifest: manifest, trustedKeyIDs: [trusted.keyID]) { _, signature, message in
                trusted.verify(signature: signature, message: message)
            }
        }
        #expect(status(envelope.encoded(), manifest) == .valid(keyID: files.keyID))

        // A manifest edited after signing (version bumped by one digit), and a flipped signature bit.
        var tampered = manifest
        let digit = tampered.firstIndex(of: UInt8(ascii: "7"))!
        tampered[digit] = UInt8(ascii: "9")
        #expect(try UpdateManifest.parse(tampered, file: "m").version == 9)
        #expect(status(envelope.encoded(), tampered) == .invalid(keyID: files.keyID))
        var flipped = envelope
        flipped.signature[10] ^= 0x01
        #expect(status(flipped.encoded(), manifest) == .invalid(keyID: files.keyID))
        #expect(!trusted.verify(signature: Array(envelope.signature.prefix(63)), message: manifest))

        // Signed by a key the device does not trust, even if the signature itself is genuine.
        let rogue = try ReleaseSigningKey(path: other.privateKey)
        let rogueEnvelope = SignatureEnvelope(keyID: rogue.keyID, signature: try rogue.sign(manifest))
        #expect(status(rogueEnvelope.encoded(), manifest) == .unknownKey(keyID: other.keyID))
        // …and claiming the trusted key's id does not help it.
        let forged = SignatureEnvelope(keyID: trusted.keyID, signature: rogueEnvelope.signature)
        #expect(status(forged.encoded(), manifest) == .invalid(keyID: files.keyID))

        // Key rotation: a device trusting the old and the new key accepts both signatures.
        let store = try ReleaseTrustStore(publicKeyPaths: [files.publicKey, other.publicKey])
        for candidate in [envelope, rogueEnvelope] {
            #expect(SignatureStatus.check(envelope: candidate.encoded(), manifest: manifest, trustedKeyIDs: store.keyIDs, verify: store.verify)
                    == .valid(keyID: candidate.keyID))
        }
        #expect(throws: DAQError.self) { try ReleaseTrustStore(publicKeyPaths: [files.publicKey, files.publicKey]) }

        // Garbage and an EC P-256 key are not release keys.
        #expect(throws: DAQError.self) { try ReleaseVerificationKey(pem: Array("not a key".utf8), file: "x.pub") }
        _ = try runProcess(PackagePaths.executable("daqctl").path, ["pki", "init", "--dir", root.path + "/pki"])
        let ecKey = #expect(throws: DAQError.self) { try ReleaseSigningKey(path: root.path + "/pki/ca.key") }
        #expect(ecKey?.message.contains("Ed25519") == true)
    }
}
