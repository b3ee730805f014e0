// The manifest and signature-file encodings: round trips, exact bytes, located errors, and
// fuzzing (random bytes, every truncation, every single-bit flip) that must never crash.
import DAQCore
import Foundation
import OTA
import Testing
import TestSupport

/// A small deterministic generator so fuzz failures reproduce from their seed.

let sampleManifest = UpdateManifest(kind: .firmware, version: 7, sha256: String(repeating: "ab", count: 32), length: 123_456,
                                    hardwareID: "rig-hw.2", floor: 5, expires: 1_900_000_000, artifactName: "daqlink-7.bin")

@Suite struct ManifestTests {
    @Test func encodesCanonicallyAndRoundTrips() throws {
        let bytes = try sampleManifest.encoded()
        #expect(String(decoding: bytes, as: UTF8.self) == """
            daqlink-ota-manifest 1
            kind firmware
            version 7
            sha256 \(String(repeating: "ab", count: 32))
            length 123456
            hardware rig-hw.2
            floor 5
            expires 1900000000
            artifact daqlink-7.bin

            """)
        let parsed = try UpdateManifest.parse(bytes, file: "m")
        #expect(parsed == sampleManifest)
        #expect(try parsed.encoded() == bytes)
        for kind in UpdateKind.allCases {
            var manifest = sampleManifest
            manifest.kind = kind
            #expect(try UpdateManifest.parse(manifest.encoded(), file: "m") == manifest)
        }
    }

    @Test(arguments: [
        ("version 7", "version 07", "version"),
        ("version 7", "version +7", "version"),
        ("version 7", "version 18446744073709551616", "version"),
        ("kind firmware", "kind kernel", "kind"),
        ("sha256 ab", "sha256 AB", "sha256"),
        ("hardware rig-hw.2", "hardware ../hw", "hardware"),
        ("floor 5", "floor 8", "floor"),
        ("artifact daqlink-7.bin", "artifact ../../etc/passwd", "artifact"),
        ("artifact daqlink-7.bin", "artifact .hidden", "artifact"),
        ("artifact daqlink-7.bin", "artifact firmware.manifest", "artifact"),
        ("length 123456", "length  123456", "length"),
        ("expires 1900000000", "expires 9223372036854775808", "expires"),
        ("daqlink-ota-manifest 1", "daqlink-ota-manifest 2", "header"),
        ("kind firmware\nversion 7", "version 7\nkind firmware", "kind"),
    ])
    func refusesNamingTheField(original: String, replacement: String, field: String) throws {
        let text = String(decoding: try sampleManifest.encoded(), as: UTF8.self)
        let edited = text.replacingFirst(original, with: replacement)
        #expect(edited != text, "fixture edit applied")
        let error = #expect(throws: DAQError.self) { try UpdateManifest.parse(Array(edited.utf8), file: "updates/firmware.manifest") }
        #expect(error?.location?.field == field, "\(String(describing: error))")
        #expect(error?.location?.file == "updates/firmware.manifest")
    }

    @Test func refusesExtraLinesMissingNewlineAndOversize() throws {
        let bytes = try sampleManifest.encoded()
        #expect(throws: DAQError.self) { try UpdateManifest.parse(bytes + Array("extra 1\n".utf8), file: "m") }
        #expect(throws: DAQError.self) { try UpdateManifest.parse(Array(bytes.dropLast()), file: "m") }
        #expect(throws: DAQError.self) { try UpdateManifest.parse(bytes + [UInt8](repeating: 0x0A, count: 2000), file: "m") }
        #expect(throws: DAQError.self) { try UpdateManifest.parse([], file: "m") }
    }

    @Test(arguments: [1, 2, 3, 4])
    func fuzzedInputNeverCrashes(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let valid = try sampleManifest.encoded()
        // Every truncation and every single-bit flip of a valid manifest: parse or a DAQError.
        for length in 0..<valid.count { _ = try? UpdateManifest.parse(Array(valid.prefix(length)), file: "m") }
        for bit in 0..<(valid.count * 8) {
            var flipped = valid
            flipped[bit / 8] ^= 1 << (bit % 8)
            if let parsed = try? UpdateManifest.parse(flipped, file: "m") {
                #expect(try parsed.encoded() == flipped, "anything accepted is canonical")
            }
        }
        // Random bytes, and valid manifests with random splices.
        for _ in 0..<2000 {
            let count = Int.random(in: 0...1100, using: &random)
            let noise = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(throws: DAQError.self) { try UpdateManifest.parse(noise, file: "m") }
            var spliced = valid
            let at = Int.random(in: 0..<spliced.count, using: &random)
            spliced.insert(contentsOf: noise.prefix(8), at: at)
            _ = try? UpdateManifest.parse(spliced, file: "m")
            _ = try? SignatureEnvelope.parse(noise, file: "s")
            _ = try? BootState.parse(noise, file: "b")
        }
    }

    @Test func signatureEnvelopeRoundTripsAndChecks() throws {
        let envelope = SignatureEnvelope(keyID: "0123456789abcdef", signature: (0..<64).map { UInt8($0) })
        #expect(try SignatureEnvelope.parse(envelope.encoded(), file: "s") == envelope)
        let manifest = try sampleManifest.encoded()
        let accepting: (String, [UInt8], [UInt8]) -> Bool = { _, _, _ in true }
        #expect(SignatureStatus.check(envelope: nil, manifest: manifest, trustedKeyIDs: ["0123456789abcdef"], verify: accepting) == .missing)
        #expect(SignatureStatus.check(envelope: Array("junk\n".utf8), manifest: manifest, trustedKeyIDs: [], verify: accepting) == .malformed)
        #expect(SignatureStatus.check(envelope: envelope.encoded(), manifest: manifest, trustedKeyIDs: ["fedcba9876543210"], verify: accepting)
                == .unknownKey(keyID: "0123456789abcdef"))
        #expect(SignatureStatus.check(envelope: envelope.encoded(), manifest: manifest, trustedKeyIDs: ["0123456789abcdef"], verify: { _, _, _ in false })
                == .invalid(keyID: "0123456789abcdef"))
        #expect(SignatureStatus.check(envelope: envelope.encoded(), manifest: manifest, trustedKeyIDs: ["0123456789abcdef"], verify: accepting)
                == .valid(keyID: "0123456789abcdef"))
    }

    @Test func bootStateRoundTrips() throws {
        let states: [BootState] = [
            .factory(version: 1),
            BootState(generation: 9, active: .b, committedVersion: 4, floor: 3, lastAcceptedVersion: 6, inactive: .downloading(version: 6, floor: 4)),
            BootState(generation: 10, active: .b, committedVersion: 4, floor: 3, lastAcceptedVersion: 6, inactive: .verified(version: 6, floor: 4)),
            BootState(generation: 11, active: .a, committedVersion: 4, floor: 4, lastAcceptedVersion: 6, inactive: .trial(version: 6, floor: 4, attemptsLeft: 2)),
        ]
        for state in states { #expect(try BootState.parse(state.encoded(), file: "boot") == state) }
        let bad = String(decoding: states[3].encoded(), as: UTF8.self).replacingFirst("trial:6:4:2", with: "trial:6:4:300")
        let error = #expect(throws: DAQError.self) { try BootState.parse(Array(bad.utf8), file: "boot") }
        #expect(error?.location?.field == "inactive")
        let stale = String(decoding: states[3].encoded(), as: UTF8.self).replacingFirst("trial:6:4:2", with: "trial:3:1:2")
        let staleError = #expect(throws: DAQError.self) { try BootState.parse(Array(stale.utf8), file: "boot") }
        #expect(staleError?.location?.field == "inactive", "a trial older than the committed version is refused")
    }
}

extension String {
    /// `self` with the first occurrence of `target` replaced.
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}
