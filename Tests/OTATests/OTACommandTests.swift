// `daqctl ota` refusals a release engineer meets: bad kind, floor above version, unsafe artifact
// names, a wrong key type, publishing without a target, and help that teaches the flow.
import Foundation
import Testing
import TestSupport

@Suite struct OTACommandTests {
    let daqctl = PackagePaths.executable("daqctl").path

    @Test func signAndPublishRefuseBadInput() throws {
        let root = try PackagePaths.temporaryDirectory("ota-cli")
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(try runProcess(daqctl, ["ota", "keygen", "--out", root.path + "/keys"]).status == 0)
        let again = try runProcess(daqctl, ["ota", "keygen", "--out", root.path + "/keys"])
        #expect(again.status != 0 && again.stderr.contains("already exists"))
        let key = root.path + "/keys/release.key"
        let artifact = root.appendingPathComponent("image.bin")
        try Data("image".utf8).write(to: artifact)
        let hidden = root.appendingPathComponent(".image")
        try Data("image".utf8).write(to: hidden)

        func sign(_ extra: [String], file: URL) throws -> ProcessResult {
            try runProcess(daqctl, ["ota", "sign", "--key", key, "--hardware", "hw1"] + extra + [file.path])
        }
        let kind = try sign(["--kind", "kernel", "--version", "2"], file: artifact)
        #expect(kind.status != 0 && kind.stderr.contains("--kind"))
        // Refused as the options they are, with the usage (exit 64): they were named as lines of
        // a manifest file that was never written (image.bin.manifest:7 [floor]), exit 1.
        let floor = try sign(["--kind", "firmware", "--version", "2", "--floor", "3"], file: artifact)
        #expect(floor.status == 64 && floor.stderr.contains("--floor 3 is above --version 2"), "\(floor.stderr)")
        let name = try sign(["--kind", "firmware", "--version", "2"], file: hidden)
        #expect(name.status == 64 && name.stderr.contains("the artifact's file name '.image' must match"), "\(name.stderr)")
        let hardware = try runProcess(daqctl, ["ota", "sign", "--key", key, "--hardware", "hw 1", "--kind", "firmware", "--version", "2", artifact.path])
        #expect(hardware.status == 64 && hardware.stderr.contains("--hardware 'hw 1' must match"), "\(hardware.stderr)")
        let wrongKey = try runProcess(daqctl, ["ota", "sign", "--key", root.path + "/keys/release.pub", "--kind", "firmware",
                                               "--version", "2", "--hardware", "hw1", artifact.path])
        #expect(wrongKey.status != 0)
        #expect(!FileManager.default.fileExists(atPath: artifact.path + ".manifest"), "nothing written on failure")

        #expect(try sign(["--kind", "firmware", "--version", "2"], file: artifact).status == 0)
        let noTarget = try runProcess(daqctl, ["ota", "publish", "--dir", root.path + "/updates", artifact.path])
        #expect(noTarget.status != 0 && noTarget.stderr.contains("--device"))
        let traversal = try runProcess(daqctl, ["ota", "publish", "--dir", root.path + "/updates", "--device", "../x", artifact.path])
        #expect(traversal.status != 0 && traversal.stderr.contains("not a safe name"))
    }

    @Test func aKeyFileOfTheWrongKindIsNamedAsSuch() throws {
        let root = try PackagePaths.temporaryDirectory("ota-cli-keys")
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(try runProcess(daqctl, ["ota", "keygen", "--out", root.path + "/keys"]).status == 0)
        let artifact = root.appendingPathComponent("image.bin")
        try Data("image".utf8).write(to: artifact)
        let notes = root.appendingPathComponent("notes.txt")
        try Data("release notes, not a key\n".utf8).write(to: notes)
        func sign(key: String) throws -> ProcessResult {
            try runProcess(daqctl, ["ota", "sign", "--key", key, "--kind", "firmware", "--version", "2", "--hardware", "hw1", artifact.path])
        }

        let publicKey = try sign(key: root.path + "/keys/release.pub")
        #expect(publicKey.status != 0)
        #expect(publicKey.stderr.contains("public key") && publicKey.stderr.contains("not a private key"), "\(publicKey.stderr)")
        #expect(publicKey.stderr.contains("--key wants the private key, e.g. release.key"), "\(publicKey.stderr)")
        #expect(publicKey.stderr.contains(root.path + "/keys/release.pub"), "names the file: \(publicKey.stderr)")
        #expect(!publicKey.stderr.contains("DECODER"), "no raw OpenSSL queue for a mix-up: \(publicKey.stderr)")

        let garbage = try sign(key: notes.path)
        #expect(garbage.status != 0)
        #expect(garbage.stderr.contains("not a PEM file") && garbage.stderr.contains(notes.path), "\(garbage.stderr)")
        #expect(!FileManager.default.fileExists(atPath: artifact.path + ".manifest"), "nothing written on failure")

        // The mirror image: the private key where the public one belongs.
        #expect(try sign(key: root.path + "/keys/release.key").status == 0)
        let privateKey = try runProcess(daqctl, ["ota", "publish", "--dir", root.path + "/updates", "--device", "rig-01",
                                                 "--public-key", root.path + "/keys/release.key", artifact.path])
        #expect(privateKey.status != 0)
        #expect(privateKey.stderr.contains("not a public key") && privateKey.stderr.contains("release.pub"), "\(privateKey.stderr)")
    }

    @Test func theReleaseVersionOptionIsNotShadowedByTheToolVersion() throws {
        let help = try runProcess(daqctl, ["ota", "sign", "--help"]).stdout
        #expect(help.components(separatedBy: "--version <version>").count == 3, "usage line and option list only: \(help)")
        #expect(!help.contains("Show the version"), "\(help)")

        // Missing options are reported, not answered with the tool version and rc 0.
        let alone = try runProcess(daqctl, ["ota", "sign", "--version", "3"])
        #expect(alone.status != 0)
        #expect(alone.stderr.contains("--key"), "\(alone.stderr)")
        #expect(!alone.stdout.contains("libmosquitto"), "\(alone.stdout)")

        // The tool's own version stays where users ask for it.
        let tool = try runProcess(daqctl, ["--version"])
        #expect(tool.status == 0 && tool.stdout.contains("libmosquitto"), "\(tool.stdout)\(tool.stderr)")
        #expect(try runProcess(daqctl, ["--help"]).stdout.contains("daqctl --version"))
    }

    /// `ota history` tells a missing path, a file and a directory without histories apart (each
    /// said "no update history under X"), and refuses a damaged line naming file and line, with
    /// --json too (it printed the line on, exit 0).
    @Test func historySaysWhatIsWrongWithItsInput() throws {
        let root = try PackagePaths.temporaryDirectory("ota-history")
        defer { try? FileManager.default.removeItem(at: root) }
        func history(_ arguments: [String]) throws -> ProcessResult { try runProcess(daqctl, ["ota", "history"] + arguments) }
        let missing = try history(["--collected", root.path + "/none"])
        #expect(missing.status == 1 && missing.stderr.contains("\(root.path)/none: no such directory"), "\(missing.stderr)")
        let file = root.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let notDirectory = try history(["--collected", file.path])
        #expect(notDirectory.status == 1 && notDirectory.stderr.contains("\(file.path): not a directory"), "\(notDirectory.stderr)")
        let empty = try history(["--collected", root.path])
        #expect(empty.status == 1 && empty.stderr.contains("no device under \(root.path) has an update history"), "\(empty.stderr)")

        let device = root.appendingPathComponent("rig-01")
        try FileManager.default.createDirectory(at: device, withIntermediateDirectories: true)
        let good = #"{"seq": 1, "time": 1765000000, "kind": "firmware", "status": "installed", "version": 2, "slot": "b"}"#
        try Data((good + "\n").utf8).write(to: device.appendingPathComponent("ota-history.jsonl"))
        let table = try history(["--collected", root.path])
        #expect(table.status == 0 && table.stdout == "rig-01:\n  seq\ttime (UTC)\tkind\tstatus\tversion\tslot\treason\n"
                + "  1\t2025-12-06T05:46:40Z\tfirmware\tinstalled\t2\tb\t\n", "\(table.stdout)\(table.stderr)")
        try Data((good + "\nnot json\n").utf8).write(to: device.appendingPathComponent("ota-history.jsonl"))
        // Another device's good history, listed first: nothing is printed before the damage is found.
        let other = root.appendingPathComponent("rig-00")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data((good + "\n").utf8).write(to: other.appendingPathComponent("ota-history.jsonl"))
        for extra in [[], ["--json"]] {
            let damaged = try history(["--collected", root.path] + extra)
            #expect(damaged.status == 1 && damaged.stdout.isEmpty, "\(extra) \(damaged.stdout)")
            #expect(damaged.stderr == "daqctl ota history: \(device.path)/ota-history.jsonl:2: not a JSON object: 'not json'\n", "\(damaged.stderr)")
        }
    }

    @Test func helpTeachesTheFlow() throws {
        let help = try runProcess(daqctl, ["ota", "--help"]).stdout
        for needle in ["ota keygen", "ota sign", "ota publish", "ota nginx-config", "docs/ota.md"] {
            #expect(help.contains(needle), "\(needle)")
        }
    }
}
