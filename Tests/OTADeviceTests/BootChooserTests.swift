// `daqlink boot`'s bootchooser on a real slot directory: a committed slot whose image no longer
// verifies, and an install that fails at boot. Both left the device exiting 70 at every start
// (a restart loop under systemd) though a good image was on disk.
import DAQCore
import Foundation
import OTA
import OTADevice
import Testing
import TestSupport
import Uplink

@Suite struct BootChooserTests {
    /// A slot directory: slot a the factory image, slot b release 7 (with its manifest), b committed.
    static func directory() throws -> SlotDirectory {
        let root = try PackagePaths.temporaryDirectory("boot").path
        let directory = SlotDirectory(root: root)
        try directory.prepare()
        for slot in [Slot.a, .b] {
            try FileManager.default.createDirectory(atPath: directory.slotPath(slot), withIntermediateDirectories: true)
            try Data("#!/bin/sh\necho \(slot.rawValue)\n".utf8).write(to: URL(fileURLWithPath: directory.binaryPath(slot)))
            chmod(directory.binaryPath(slot), 0o755)
        }
        let digest = try #require(SHA256Digest.file(directory.binaryPath(.b)))
        let manifest = UpdateManifest(kind: .firmware, version: 7, sha256: digest.sha256, length: digest.length, hardwareID: "daqlink-sbc",
                                      floor: 3, expires: 4_000_000_000, artifactName: "daqlink-7.bin")
        try Data(try manifest.encoded()).write(to: URL(fileURLWithPath: directory.releaseManifestPath(.b)))
        try directory.persist(BootState(generation: 4, active: .b, committedVersion: 7, floor: 3, lastAcceptedVersion: 7))
        return directory
    }

    static func reports(_ directory: SlotDirectory) -> String {
        (try? String(contentsOfFile: directory.statusPath + "/outbox", encoding: .utf8)) ?? ""
    }

    /// A "reboot" runs the committed slot's `daqlink boot`, unless that image no longer
    /// verifies and the other one does: the damaged binary ran first, before any check.
    @Test func aRebootRunsTheBootchooserOfASlotThatVerifies() throws {
        let directory = try Self.directory()
        #expect(directory.rebootSlot() == .b)
        try Data("#!/bin/sh\necho rotten\n".utf8).write(to: URL(fileURLWithPath: directory.binaryPath(.b)))
        #expect(directory.rebootSlot() == .a)
        // Slot a holding a release newer than the committed one (a trial rolled back): not it.
        let digest = try #require(SHA256Digest.file(directory.binaryPath(.a)))
        let newer = UpdateManifest(kind: .firmware, version: 8, sha256: digest.sha256, length: digest.length, hardwareID: "daqlink-sbc",
                                   floor: 3, expires: 4_000_000_000, artifactName: "daqlink-8.bin")
        try Data(try newer.encoded()).write(to: URL(fileURLWithPath: directory.releaseManifestPath(.a)))
        #expect(directory.rebootSlot() == .b)
        // The same release armed there as a trial (an install's reboot): it.
        try directory.persist(BootState(generation: 5, active: .b, committedVersion: 7, floor: 3, lastAcceptedVersion: 8,
                                        inactive: .trial(version: 8, floor: 3, attemptsLeft: 3)))
        #expect(directory.rebootSlot() == .a)
        try directory.persist(BootState(generation: 6, active: .b, committedVersion: 7, floor: 3, lastAcceptedVersion: 8))
        try FileManager.default.removeItem(atPath: directory.releaseManifestPath(.a))
        // Neither verifies: the committed one, as before (its own check then says why).
        unlink(directory.binaryPath(.a))
        #expect(directory.rebootSlot() == .b)
    }

    @Test func aDamagedCommittedSlotFallsBackToTheOtherImage() throws {
        let directory = try Self.directory()
        let chooser = BootChooser(directory: directory, trialAttempts: 3)
        #expect(try chooser.choose(factoryVersion: 3, time: 0) == .b)
        // Bit rot on the card: b's binary no longer matches its manifest.
        try Data("#!/bin/sh\necho rotten\n".utf8).write(to: URL(fileURLWithPath: directory.binaryPath(.b)))
        #expect(try chooser.choose(factoryVersion: 3, time: 0) == .a)
        let state = try #require(try directory.loadBootState())
        #expect(state.active == .a && state.committedVersion == 3 && state.inactive == .unbootable)
        #expect(Self.reports(directory).contains("\"status\":\"fallen-back\""), "\(Self.reports(directory))")
        // The next boot starts a without another word.
        #expect(try chooser.choose(factoryVersion: 3, time: 0) == .a)
    }

    @Test func noFallbackBelowTheFloorOrToNothing() throws {
        for factoryVersion: UInt64 in [2, 3] {
            let directory = try Self.directory()
            try Data("#!/bin/sh\necho rotten\n".utf8).write(to: URL(fileURLWithPath: directory.binaryPath(.b)))
            if factoryVersion == 3 { unlink(directory.binaryPath(.a)) }  // nothing to fall back to
            let chooser = BootChooser(directory: directory, trialAttempts: 3)
            let error = #expect(throws: DAQError.self) { try chooser.choose(factoryVersion: factoryVersion, time: 0) }
            let text = error.map { "\($0)" } ?? ""
            #expect(text.contains("the committed slot b does not verify") && text.contains("no slot can take over")
                    && text.contains(factoryVersion == 2 ? "below the floor 3" : "no image that verifies"), "\(text)")
            #expect(try directory.loadBootState()?.active == .b, "nothing changed")
        }
    }

    @Test func anInstallThatFailsAtBootStartsTheCommittedSlot() throws {
        let directory = try Self.directory()
        // A verified download whose install a power cut interrupted, and whose staged files are
        // gone (a full card, a failing one).
        try directory.persist(BootState(generation: 5, active: .b, committedVersion: 7, floor: 3, lastAcceptedVersion: 8,
                                        inactive: .verified(version: 8, floor: 3)))
        let chooser = BootChooser(directory: directory, trialAttempts: 3)
        #expect(try chooser.choose(factoryVersion: 3, time: 0) == .b)
        #expect(try directory.loadBootState()?.inactive == .unbootable)
        #expect(Self.reports(directory).contains("\"status\":\"download-failed\""), "\(Self.reports(directory))")
        #expect(try chooser.choose(factoryVersion: 3, time: 0) == .b)
    }
}
