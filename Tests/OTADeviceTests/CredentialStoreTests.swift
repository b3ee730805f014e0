// The pending certificate bundle is the accepted release's own: a bundle of an older release,
// superseded by one accepted since, is neither tried nor reported as installed.
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport

@Suite struct CredentialStoreTests {
    @Test func aPendingBundleOfASupersededReleaseIsNotPending() throws {
        let root = try PackagePaths.temporaryDirectory("credential-store")
        defer { try? FileManager.default.removeItem(at: root) }
        let slots = SlotDirectory(root: root.path)
        try slots.prepare()
        let base = root.appendingPathComponent("certificates")
        try FileManager.default.createDirectory(at: base.appendingPathComponent("bundle-1"), withIntermediateDirectories: true)
        for name in ["device.crt", "device.key"] { try Data("x".utf8).write(to: base.appendingPathComponent("bundle-1/\(name)")) }
        try FileManager.default.createSymbolicLink(atPath: base.appendingPathComponent("pending").path, withDestinationPath: "bundle-1")
        let store = CredentialStore(directory: slots, provisioned: CredentialFiles(certificateFile: "/p.crt", keyFile: "/p.key"))

        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 1), of: .certificates)
        #expect(store.pending?.version == 1)
        // Release 2 accepted while bundle 1 waited for its first connection.
        try slots.persist(ArtifactVersions(installed: 0, floor: 0, accepted: 2), of: .certificates)
        #expect(store.pending == nil, "bundle 1 was taken for release 2")
        #expect(ProvenReport(kind: .certificates, versions: ArtifactVersions(installed: 0, floor: 0, accepted: 2), failed: nil,
                             pendingInstalled: store.pending != nil)?.statuses == ["downloading"])
    }
}
