// The real peers the download adapter is tested against: a PKI made by `daqctl pki`, nginx with
// the configuration `daqctl ota nginx-config` writes, and the faulty HTTPS server script; plus
// running an EventLoop until a fetch's completion arrives.
import DAQCore
import FaultInjection
import Foundation
import HTTPFetch
import Runtime
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory with a PKI (device `rig-a`), an update directory and the servers.
final class DownloadRig {
    let root: URL
    let pki: URL
    let updates: URL
    private var nginx: NginxServer?
    private var faulty: [SpawnedProcess] = []
    /// nginx's port (after `startNginx`).
    private(set) var nginxPort = 0

    init(_ label: String) throws {
        root = try PackagePaths.temporaryDirectory("http-\(label)")
        pki = root.appendingPathComponent("pki")
        updates = root.appendingPathComponent("updates")
        try daqctl(["pki", "init", "--dir", pki.path])
        try daqctl(["pki", "device", "--dir", pki.path, "rig-a"])
        try FileManager.default.createDirectory(at: deviceFolder, withIntermediateDirectories: true)
    }

    deinit {
        nginx?.stop()
        for process in faulty { process.terminate(graceSeconds: 1) }
        try? FileManager.default.removeItem(at: root)
    }

    /// Where nginx serves rig-a's `/ota/NAME` from.
    var deviceFolder: URL { updates.appendingPathComponent("devices/rig-a") }

    /// rig-a's mutual-TLS files (verifying the server against the CA and its CRL).
    var deviceTLS: HTTPClientTLS {
        HTTPClientTLS(caFile: pki.appendingPathComponent("ca.crt").path,
                      certificateFile: pki.appendingPathComponent("devices/rig-a.crt").path,
                      keyFile: pki.appendingPathComponent("devices/rig-a.key").path,
                      revocationListFile: pki.appendingPathComponent("ca.crl").path)
    }

    /// Publishes `bytes` as rig-a's `/ota/name` (atomically, as `daqctl ota publish` does).
    @discardableResult
    func publish(_ name: String, _ bytes: [UInt8], modified: Date? = nil) throws -> URL {
        let target = deviceFolder.appendingPathComponent(name)
        let temporary = deviceFolder.appendingPathComponent(".\(name).tmp")
        try Data(bytes).write(to: temporary)
        if let modified { try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: temporary.path) }
        guard rename(temporary.path, target.path) == 0 else { throw DAQError(.io, "rename \(temporary.path): errno \(errno)") }
        return target
    }

    /// Starts nginx on a free loopback port (retrying if the port is taken before nginx binds it).
    func startNginx() throws {
        let server = root.appendingPathComponent("nginx")
        for _ in 0..<3 {
            let port = try MosquittoBroker.freeLoopbackPort()
            try daqctl(["ota", "nginx-config", "--pki", pki.path, "--updates", updates.path, "--out", server.path,
                        "--port", String(port), "--user", "root"])
            let candidate = try NginxServer(configuration: server.appendingPathComponent("nginx.conf"), state: server)
            if waitForListener(port: port, while: { candidate.isRunning }) {
                nginx = candidate
                nginxPort = port
                return
            }
            candidate.stop()
        }
        throw DAQError(.system, "nginx did not start: \(nginx?.log ?? "")")
    }

    /// https://127.0.0.1:port/ota/name on nginx (the server certificate names 127.0.0.1).
    func nginxURL(_ name: String, port: Int? = nil) -> String { "https://127.0.0.1:\(port ?? nginxPort)/ota/\(name)" }

    /// Starts the faulty server serving `artifact`, with a server certificate from `pki`'s CA and
    /// client certificates required from the same CA. Returns its base URL.
    func startFaultyServer(artifact: [UInt8]) throws -> String {
        let file = root.appendingPathComponent("faulty-artifact-\(faulty.count).bin")
        try Data(artifact).write(to: file)
        let script = PackagePaths.root.appendingPathComponent("Tests/HTTPFetchTests/faulty_https_server.py").path
        let out = root.appendingPathComponent("faulty-\(faulty.count).out")
        let process = try SpawnedProcess(
            ["timeout", "--kill-after=5", "300", "python3", "-u", script,
             "--cert", pki.appendingPathComponent("server.crt").path, "--key", pki.appendingPathComponent("server.key").path,
             "--ca", pki.appendingPathComponent("ca.crt").path, "--artifact", file.path],
            stdout: out.path, stderr: root.appendingPathComponent("faulty-\(faulty.count).err").path)
        faulty.append(process)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && process.isRunning {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }), let port = Int(line.dropFirst(10)) {
                return "https://127.0.0.1:\(port)"
            }
            usleep(20_000)
        }
        throw DAQError(.system, "faulty server did not start: \((try? String(contentsOf: root.appendingPathComponent("faulty-\(faulty.count - 1).err"), encoding: .utf8)) ?? "")")
    }

    /// A second, unrelated PKI (its own CA) with a device `stranger`.
    func foreignPKI() throws -> URL {
        let other = root.appendingPathComponent("foreign-pki")
        try daqctl(["pki", "init", "--dir", other.path])
        try daqctl(["pki", "device", "--dir", other.path, "stranger"])
        return other
    }

    private func waitForListener(port: Int, while alive: () -> Bool) -> Bool {
        for _ in 0..<200 where alive() {
            if let fd = LoopbackTCP.connect(port: port) {
                close(fd)
                return alive()
            }
            usleep(25_000)
        }
        return false
    }

    private func daqctl(_ arguments: [String]) throws {
        let result = try runProcess(PackagePaths.executable("daqctl").path, arguments)
        guard result.status == 0 else {
            throw DAQError(.system, "daqctl \(arguments.joined(separator: " ")): \(result.stderr)")
        }
    }
}

/// Deterministic pseudo-random bytes (an artifact).
func artifactBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state >> 24)
    }
}

/// SHA-256 of a file, by `sha256sum` (an outside oracle).
func sha256(of path: String) throws -> String {
    String(try runProcess("sha256sum", [path]).stdout.prefix(64))
}

/// SHA-256 of bytes, by `sha256sum`.
func sha256(_ bytes: [UInt8]) throws -> String {
    String(try runProcess("sha256sum", [], stdin: Data(bytes)).stdout.prefix(64))
}

/// Runs `loop` until `start`'s completion is called (or `seconds` pass: then nil).
/// `tick` runs about every 10 ms meanwhile (to cut a link, cancel, or watch progress).
func runLoop<Value>(_ loop: EventLoop, seconds: Double = 30, tick: (() -> Void)? = nil,
                    _ start: (@escaping (Value) -> Void) -> Void) throws -> Value? {
    var result: Value?
    start { value in
        result = value
        loop.stop()
    }
    let deadline = loop.clock.now() + Int64(seconds * 1e9)
    let guardTimer = loop.schedule(at: deadline) { loop.stop() }
    var tickTimer: EventLoop.TimerID?
    func armTick() {
        tickTimer = loop.schedule(at: loop.clock.now() + 10_000_000) {
            tick?()
            if result == nil { armTick() }
        }
    }
    if tick != nil { armTick() }
    while result == nil && loop.clock.now() < deadline {
        try loop.run()
    }
    loop.cancel(guardTimer)
    if let tickTimer { loop.cancel(tickTimer) }
    return result
}

/// The file's bytes (empty if missing).
func contents(_ path: String) -> [UInt8] {
    (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
}
