// The release flow as a user runs it (daqctl pki, ota keygen/sign/publish/nginx-config) served by a
// REAL nginx with mTLS on a free loopback port, fetched with curl as devices would: each device
// gets its own (and its group's) files, never another device's; no certificate or a revoked one
// gets nothing. The manifest fetched over HTTPS then passes the device's acceptance rules.
import DAQCore
import Foundation
import OTA
import PKI
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct UpdateServerTests {
    let daqctl = PackagePaths.executable("daqctl").path

    func run(_ arguments: [String]) throws -> ProcessResult {
        let result = try runProcess(daqctl, arguments)
        #expect(result.status == 0, "daqctl \(arguments.joined(separator: " ")): \(result.stderr)")
        return result
    }

    /// GET https://localhost:port/path as `device` (nil: no client certificate): (HTTP code, body).
    func fetch(_ path: String, as device: String?, port: Int, pki: URL, pathAsIs: Bool = false,
               extra: [String] = []) throws -> (Int, Data) {
        var arguments = ["-s", "--max-time", "5", "--cacert", pki.appendingPathComponent("ca.crt").path, "-w", "\n%{http_code}"]
        if let device {
            arguments += ["--cert", pki.appendingPathComponent("devices/\(device).crt").path,
                          "--key", pki.appendingPathComponent("devices/\(device).key").path]
        }
        if pathAsIs { arguments.append("--path-as-is") }
        arguments += extra
        let result = try runProcess("curl", arguments + ["https://localhost:\(port)\(path)"])
        var body = result.stdoutData
        guard let newline = body.lastIndex(of: 0x0A) else { return (0, Data()) }
        let code = Int(String(decoding: body[(newline + 1)...], as: UTF8.self)) ?? 0
        body = body[..<newline]
        return (code, Data(body))
    }

    @Test func nginxServesEachDeviceOnlyItsOwnSignedUpdates() throws {
        let root = try PackagePaths.temporaryDirectory("ota-nginx")
        defer { try? FileManager.default.removeItem(at: root) }
        let pki = root.appendingPathComponent("pki"), updates = root.appendingPathComponent("updates")
        let release = root.appendingPathComponent("release"), server = root.appendingPathComponent("nginx")
        _ = try run(["pki", "init", "--dir", pki.path])
        for device in ["rig-a", "rig-b", "rig-c"] { _ = try run(["pki", "device", "--dir", pki.path, device]) }
        _ = try run(["pki", "revoke", "--dir", pki.path, "rig-c"])
        _ = try run(["ota", "keygen", "--out", release.path])

        // Two artifacts: rig-a's own firmware, and an experiment for the group "fleet" (rig-b only).
        let firmware = root.appendingPathComponent("daqlink-7.bin"), experiment = root.appendingPathComponent("lab.toml")
        let firmwareBytes = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try firmwareBytes.write(to: firmware)
        try Data("[experiment]\nname = \"lab\"\n".utf8).write(to: experiment)
        _ = try run(["ota", "sign", "--key", release.appendingPathComponent("release.key").path, "--kind", "firmware",
                     "--version", "7", "--hardware", "rig-hw.2", "--floor", "5", "--expires-in", "30", firmware.path])
        _ = try run(["ota", "sign", "--key", release.appendingPathComponent("release.key").path, "--kind", "experiment",
                     "--version", "3", "--hardware", "rig-hw.2", "--expires-in", "7", experiment.path])
        let publicKey = release.appendingPathComponent("release.pub").path
        _ = try run(["ota", "publish", "--dir", updates.path, "--device", "rig-a", "--public-key", publicKey, firmware.path])
        _ = try run(["ota", "publish", "--dir", updates.path, "--group", "fleet", "--public-key", publicKey, experiment.path])
        // rig-c has files too: revocation, not an empty folder, is what must stop it.
        _ = try run(["ota", "publish", "--dir", updates.path, "--device", "rig-c", firmware.path])

        // publish refuses an artifact changed after signing.
        try Data("changed".utf8).write(to: experiment)
        let changed = try runProcess(daqctl, ["ota", "publish", "--dir", updates.path, "--device", "rig-b", experiment.path])
        #expect(changed.status != 0 && changed.stderr.contains("does not match"), "\(changed.stderr)")

        var port = try MosquittoBroker.freeLoopbackPort()
        var nginx: NginxServer?
        defer { nginx?.stop() }
        for _ in 0..<3 where nginx == nil { // the probed port may be taken before nginx binds it
            _ = try run(["ota", "nginx-config", "--pki", pki.path, "--updates", updates.path, "--out", server.path,
                         "--port", String(port), "--member", "rig-b=fleet", "--user", "root"])
            let candidate = try NginxServer(configuration: server.appendingPathComponent("nginx.conf"), state: server)
            var up = false
            for _ in 0..<100 where candidate.isRunning {
                if try fetch("/", as: "rig-a", port: port, pki: pki).0 != 0 { up = true; break }
                usleep(50_000)
            }
            if up { nginx = candidate } else { candidate.stop(); port = try MosquittoBroker.freeLoopbackPort() }
        }
        #expect(nginx != nil, "nginx did not start")
        guard nginx != nil else { return }

        // rig-a: its manifest, signature and artifact.
        let (manifestCode, manifestBody) = try fetch("/ota/firmware.manifest", as: "rig-a", port: port, pki: pki)
        let (signatureCode, signatureBody) = try fetch("/ota/firmware.sig", as: "rig-a", port: port, pki: pki)
        #expect(manifestCode == 200 && signatureCode == 200)
        let manifest = try UpdateManifest.parse([UInt8](manifestBody), file: "https://…/ota/firmware.manifest")
        #expect(manifest.version == 7 && manifest.artifactName == "daqlink-7.bin")
        let trusted = try ReleaseVerificationKey(path: publicKey)
        let signature = SignatureStatus.check(envelope: [UInt8](signatureBody), manifest: [UInt8](manifestBody), trustedKeyIDs: [trusted.keyID]) {
            trusted.verify(signature: $1, message: $2)
        }
        let device = DeviceUpdateState(hardwareID: "rig-hw.2", installedVersion: 6, floor: 4, lastAcceptedVersion: 6,
                                       now: Int64(Date().timeIntervalSince1970))
        #expect(UpdateAcceptance.decide(manifest, signature: signature, device: device, expectedKind: .firmware) == .accept)
        let (artifactCode, artifact) = try fetch("/ota/daqlink-7.bin", as: "rig-a", port: port, pki: pki)
        #expect(artifactCode == 200 && artifact == firmwareBytes)
        // Range requests work (the device resumes interrupted downloads with them).
        let (rangeCode, tail) = try fetch("/ota/daqlink-7.bin", as: "rig-a", port: port, pki: pki, extra: ["-r", "65536-"])
        #expect(rangeCode == 206 && tail == firmwareBytes.suffix(from: 65536))
        // TLS 1.2 and below are refused.
        #expect(try fetch("/ota/firmware.manifest", as: "rig-a", port: port, pki: pki, extra: ["--tls-max", "1.2"]).0 == 0)

        // rig-b: the group's experiment, none of rig-a's files, even by path tricks.
        #expect(try fetch("/ota/experiment.manifest", as: "rig-b", port: port, pki: pki).0 == 200)
        #expect(try fetch("/ota/experiment.manifest", as: "rig-a", port: port, pki: pki).0 == 404, "rig-a is not in the group")
        for path in ["/ota/firmware.manifest", "/ota/daqlink-7.bin", "/devices/rig-a/daqlink-7.bin", "/ota/..%2Fdevices%2Frig-a%2Fdaqlink-7.bin",
                     "/ota/../devices/rig-a/daqlink-7.bin", "/ota/", "/"] {
            let (code, body) = try fetch(path, as: "rig-b", port: port, pki: pki, pathAsIs: true)
            #expect(code == 404 || code == 400, "\(path) → \(code)")
            #expect(body != firmwareBytes && !String(decoding: body, as: UTF8.self).contains("daqlink-ota-manifest"), "\(path)")
        }

        // No certificate, and a revoked certificate: no file, whatever the path.
        for identity in [nil, "rig-c"] as [String?] {
            let (code, body) = try fetch("/ota/firmware.manifest", as: identity, port: port, pki: pki)
            #expect(code == 400 || code == 0, "\(identity ?? "no certificate") → \(code)")
            #expect(!String(decoding: body, as: UTF8.self).contains("daqlink-ota-manifest"))
        }
        #expect(nginx?.log.contains("certificate revoked") == true, "nginx names the revocation: \(nginx?.log ?? "")")
    }

    /// The renewal listener (`nginx-config --renewal-port`): no client certificate asked for, and
    /// only `/renewal/<key-sha256>.crt` served from UPDATES/renewals/, nothing else of the
    /// directory (not even a certificate put there under a device id).
    @Test func theRenewalListenerServesOnlyRenewedCertificatesWithoutAClientCertificate() throws {
        let root = try PackagePaths.temporaryDirectory("ota-renewal")
        defer { try? FileManager.default.removeItem(at: root) }
        let pki = root.appendingPathComponent("pki"), updates = root.appendingPathComponent("updates")
        let server = root.appendingPathComponent("nginx")
        _ = try run(["pki", "init", "--dir", pki.path])
        _ = try run(["pki", "device", "--dir", pki.path, "rig-a"])
        _ = try run(["pki", "renew", "--dir", pki.path, "rig-a", "--publish", updates.path])
        let names = try FileManager.default.contentsOfDirectory(atPath: updates.appendingPathComponent("renewals").path)
        #expect(names.count == 1 && UpdateDirectoryLayout.isRenewalName(String(names[0].dropLast(".crt".count))), "\(names)")
        let name = String(names[0].dropLast(".crt".count))
        let renewed = try Data(contentsOf: updates.appendingPathComponent("renewals/\(name).crt"))
        try renewed.write(to: updates.appendingPathComponent("renewals/rig-a.crt"))  // named by the guessable id
        // Other files in the update directory, which this listener must never serve.
        try FileManager.default.createDirectory(at: updates.appendingPathComponent("devices/rig-a"), withIntermediateDirectories: true)
        try Data("daqlink-ota-manifest 1\n".utf8).write(to: updates.appendingPathComponent("devices/rig-a/firmware.manifest"))
        try Data("secret".utf8).write(to: updates.appendingPathComponent("renewals/rig-a.key"))

        let same = try runProcess(daqctl, ["ota", "nginx-config", "--pki", pki.path, "--updates", updates.path, "--out", server.path,
                                           "--port", "8443", "--renewal-port", "8443"])
        #expect(same.status == 64 && same.stderr.contains("--renewal-port must differ from --port 8443"), "\(same.stderr)")
        // A symlink in renewals/ leads nowhere.
        try FileManager.default.createSymbolicLink(atPath: updates.appendingPathComponent("renewals/\(String(repeating: "f", count: 64)).crt").path,
                                                   withDestinationPath: pki.appendingPathComponent("devices/rig-a.key").path)

        var ports = (0, 0)
        var nginx: NginxServer?
        defer { nginx?.stop() }
        for _ in 0..<3 where nginx == nil {  // a probed port may be taken before nginx binds it
            ports = (try MosquittoBroker.freeLoopbackPort(), try MosquittoBroker.freeLoopbackPort())
            guard ports.0 != ports.1 else { continue }
            _ = try run(["ota", "nginx-config", "--pki", pki.path, "--updates", updates.path, "--out", server.path,
                         "--port", String(ports.0), "--renewal-port", String(ports.1), "--user", "root"])
            let candidate = try NginxServer(configuration: server.appendingPathComponent("nginx.conf"), state: server)
            var up = false
            for _ in 0..<100 where candidate.isRunning {
                if try fetch("/", as: nil, port: ports.1, pki: pki).0 != 0 { up = true; break }
                usleep(50_000)
            }
            if up { nginx = candidate } else { candidate.stop() }
        }
        #expect(nginx != nil, "nginx did not start")
        guard nginx != nil else { return }

        // Without a client certificate, and with one: the renewal, as published.
        for identity in [nil, "rig-a"] as [String?] {
            let (code, body) = try fetch("/renewal/\(name).crt", as: identity, port: ports.1, pki: pki)
            #expect(code == 200 && body == renewed, "\(identity ?? "no certificate") → \(code)")
        }
        #expect(try fetch("/renewal/\(String(repeating: "0", count: 64)).crt", as: nil, port: ports.1, pki: pki).0 == 404)
        for path in ["/renewal/rig-a.crt", "/renewal/\(String(repeating: "f", count: 64)).crt", "/renewal/\(name.uppercased()).crt", "/renewal/rig-a.key", "/renewals/rig-a.crt", "/ota/firmware.manifest", "/devices/rig-a/firmware.manifest",
                     "/renewal/../devices/rig-a/firmware.manifest", "/renewal/..%2Fdevices%2Frig-a%2Ffirmware.manifest", "/renewal/", "/"] {
            let (code, body) = try fetch(path, as: nil, port: ports.1, pki: pki, pathAsIs: true)
            #expect([400, 403, 404].contains(code), "\(path) → \(code)")
            let text = String(decoding: body, as: UTF8.self)
            #expect(!text.contains("secret") && !text.contains("daqlink-ota-manifest") && !text.contains("PRIVATE KEY"), "\(path)")
        }
        // TLS 1.3 only here too; and the mTLS listener still wants a certificate.
        #expect(try fetch("/renewal/\(name).crt", as: nil, port: ports.1, pki: pki, extra: ["--tls-max", "1.2"]).0 == 0)
        #expect(try fetch("/ota/firmware.manifest", as: nil, port: ports.0, pki: pki).0 == 400)
        #expect(try fetch("/ota/firmware.manifest", as: "rig-a", port: ports.0, pki: pki).0 == 200)
    }
}
