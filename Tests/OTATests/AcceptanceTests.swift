// Every refusal reason of the acceptance rules, each from a manifest that passes all other checks.
import OTA
import Testing

@Suite struct AcceptanceTests {
    let device = DeviceUpdateState(hardwareID: "rig-hw.2", installedVersion: 6, floor: 4, lastAcceptedVersion: 6, now: 1_800_000_000)
    let signed = SignatureStatus.valid(keyID: "0123456789abcdef")

    @Test func acceptsANewerSignedManifestForThisHardware() {
        #expect(UpdateAcceptance.decide(sampleManifest, signature: signed, device: device, expectedKind: .firmware,
                                        observedLength: sampleManifest.length, requestedName: "daqlink-7.bin") == .accept)
    }

    @Test func refusesEachReason() {
        func decide(_ edit: (inout UpdateManifest) -> Void = { _ in }, signature: SignatureStatus? = nil, device: DeviceUpdateState? = nil,
                    kind: UpdateKind? = nil, observed: UInt64? = nil, name: String? = nil) -> String? {
            var manifest = sampleManifest
            edit(&manifest)
            guard case .refuse(let reason) = UpdateAcceptance.decide(manifest, signature: signature ?? signed, device: device ?? self.device,
                                                                     expectedKind: kind, observedLength: observed, requestedName: name)
            else { return nil }
            return reason.code
        }
        #expect(decide(signature: .missing) == "unsigned")
        #expect(decide(signature: .malformed) == "malformed-signature")
        #expect(decide(signature: .invalid(keyID: "0123456789abcdef")) == "bad-signature")
        #expect(decide(signature: .unknownKey(keyID: "fedcba9876543210")) == "unknown-key")
        #expect(decide { $0.artifactName = "../slots/a/daqlink" } == "unsafe-name")
        #expect(decide(name: "/etc/passwd") == "unsafe-name")
        #expect(decide(name: "..") == "unsafe-name")
        #expect(decide(kind: .experiment) == "wrong-kind")
        #expect(decide { $0.hardwareID = "rig-hw.3" } == "wrong-hardware")
        #expect(decide { $0.expires = 1_800_000_000 } == "expired")
        #expect(decide { $0.version = 3; $0.floor = 0 } == "below-floor")
        var raisedFloor = device
        raisedFloor.floor = 8
        #expect(decide(device: raisedFloor) == "below-floor")
        #expect(decide { $0.version = 6 } == "replayed")
        var failedBefore = device
        failedBefore.lastAcceptedVersion = 7 // v7 was accepted once and rolled back: offering it again is a replay
        #expect(decide(device: failedBefore) == "replayed")
        #expect(decide(observed: sampleManifest.length + 1) == "oversize")
    }

    @Test func unauthenticatedManifestsAreRefusedBeforeAnythingElseIsLookedAt() {
        var manifest = sampleManifest
        manifest.hardwareID = "other"
        manifest.expires = 0
        #expect(UpdateAcceptance.decide(manifest, signature: .missing, device: device) == .refuse(.unsigned))
    }
}
