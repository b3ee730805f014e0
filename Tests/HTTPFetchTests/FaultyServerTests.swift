// The download adapter against a deliberately faulty HTTPS server (faulty_https_server.py, a real
// TLS 1.3 server requiring our client certificates): every fault ends in a resume or a clean
// failure, never in a file with wrong bytes.
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

@Suite struct FaultyServerTests {
    let artifact = artifactBytes(count: 200_000, seed: 9)

    /// A rig with the faulty server, a loop and a fetcher with short limits.
    final class Setup {
        let rig: DownloadRig
        let base: String
        let loop = EventLoop()
        let fetcher: HTTPFetcher
        let path: String

        init(_ label: String, artifact: [UInt8], lowSpeedSeconds: Int = 10) throws {
            rig = try DownloadRig(label)
            base = try rig.startFaultyServer(artifact: artifact)
            fetcher = try HTTPFetcher(loop: loop, configuration: HTTPFetchConfiguration(
                tls: rig.deviceTLS, connectTimeoutMilliseconds: 5_000, lowSpeedBytesPerSecond: 1, lowSpeedSeconds: lowSpeedSeconds))
            path = rig.root.appendingPathComponent("artifact.part").path
        }

        func download(_ mode: String, expectedLength: Int) throws -> HTTPOutcome<Int>? {
            try downloadCounting(mode, expectedLength: expectedLength).outcome
        }

        /// The outcome and how many body bytes the transfer received.
        func downloadCounting(_ mode: String, expectedLength: Int) throws -> (outcome: HTTPOutcome<Int>?, received: Int?) {
            var transfer: HTTPTransfer?
            let outcome: HTTPOutcome<Int>? = try runLoop(loop) {
                transfer = fetcher.download("\(base)/\(mode)", to: path, expectedLength: expectedLength, completion: $0)
            }
            return (outcome, transfer?.bytesReceived)
        }

        /// Leaves a consistent partial file of `bytes` (the server drops the connection there).
        func partial(_ bytes: Int, of artifact: [UInt8]) throws {
            let outcome = try download("truncate?n=\(bytes)", expectedLength: artifact.count)
            #expect(outcome?.failure?.reason == .interrupted && outcome?.failure?.keptBytes == bytes, "\(String(describing: outcome))")
            #expect(holdsPrefix(bytes, of: artifact))
        }

        /// True when the file is exactly the first `count` bytes of `artifact`.
        func holdsPrefix(_ count: Int, of artifact: [UInt8]) -> Bool {
            contents(path) == Array(artifact.prefix(count))
        }

        /// A correct server completes the download, and the file is the artifact.
        func finishBitExact(_ artifact: [UInt8]) throws {
            #expect(try download("ok", expectedLength: artifact.count) == .complete(artifact.count))
            #expect(try sha256(of: path) == sha256(artifact))
        }

        var sidecarExists: Bool { FileManager.default.fileExists(atPath: path + ".validator") }
    }

    @Test(arguments: ["drop", "truncate", "short"])
    func interruptedBodiesAreKeptAndResumed(mode: String) throws {
        let setup = try Setup("fault-\(mode)", artifact: artifact)
        let first = try setup.download("\(mode)?n=70000", expectedLength: artifact.count)
        #expect(first?.failure?.reason == .interrupted, "\(String(describing: first))")
        // A reset may destroy bytes still in flight: at most the 70000 sent arrive, and they are kept.
        let kept = first?.failure?.keptBytes ?? 0
        #expect(kept > 0 && (mode == "drop" ? kept <= 70_000 : kept == 70_000), "kept \(kept)")
        #expect(setup.holdsPrefix(kept, of: artifact))

        try setup.finishBitExact(artifact)
    }

    @Test func aPartialFileWithoutValidatorIsNeverResumed() throws {
        let setup = try Setup("fault-noetag", artifact: artifact)
        let first = try setup.download("truncate?n=50000&etag=0", expectedLength: artifact.count)
        #expect(first?.failure?.reason == .interrupted && first?.failure?.keptBytes == 0, "\(String(describing: first))")
        #expect(!setup.sidecarExists)
        let second = try setup.downloadCounting("ok", expectedLength: artifact.count)
        #expect(second.outcome == .complete(artifact.count))
        #expect(second.received == artifact.count, "fetched from 0")
        #expect(try sha256(of: setup.path) == sha256(artifact))
    }

    @Test func serverErrorsKeepAConsistentPartialFile() throws {
        let setup = try Setup("fault-500", artifact: artifact)
        try setup.partial(50_000, of: artifact)
        let failed = try setup.download("status500", expectedLength: artifact.count)
        #expect(failed?.failure?.reason == .httpStatus(500))
        #expect(failed?.failure?.keptBytes == 50_000)
        #expect(failed?.failure?.description.contains(setup.path) == true)
        #expect(setup.holdsPrefix(50_000, of: artifact), "untouched by the error page")
        try setup.finishBitExact(artifact)
    }

    @Test(arguments: ["bad-start", "bad-total"])
    func mismatchedRangesDiscardThePartialFile(mode: String) throws {
        let setup = try Setup("fault-\(mode)", artifact: artifact)
        try setup.partial(60_000, of: artifact)
        let failed = try setup.download(mode, expectedLength: artifact.count)
        #expect(failed?.failure?.reason == .rangeMismatch, "\(String(describing: failed))")
        #expect(failed?.failure?.keptBytes == 0)
        #expect(!FileManager.default.fileExists(atPath: setup.path) && !setup.sidecarExists, "nothing left to resume wrongly from")
        try setup.finishBitExact(artifact)
    }

    @Test func aServerIgnoringRangeMakesItStartOver() throws {
        let setup = try Setup("fault-full", artifact: artifact)
        try setup.partial(80_000, of: artifact)
        let outcome = try setup.downloadCounting("full", expectedLength: artifact.count)
        #expect(outcome.outcome == .complete(artifact.count))
        #expect(outcome.received == artifact.count, "rewritten from 0, not appended")
        #expect(try sha256(of: setup.path) == sha256(artifact))
    }

    @Test func unsatisfiableRangeIsDoneOnlyWhenTheFileIsComplete() throws {
        let setup = try Setup("fault-416", artifact: artifact)
        try setup.partial(90_000, of: artifact)
        let failed = try setup.download("always416", expectedLength: artifact.count)
        #expect(failed?.failure?.reason == .httpStatus(416))
        #expect(!FileManager.default.fileExists(atPath: setup.path) && !setup.sidecarExists)

        #expect(try setup.download("ok", expectedLength: artifact.count) == .complete(artifact.count))
        #expect(try setup.download("always416", expectedLength: artifact.count) == .complete(artifact.count))
        #expect(try sha256(of: setup.path) == sha256(artifact))
    }

    @Test(arguments: ["oversize", "oversize-stream"])
    func bodiesLongerThanExpectedAreRefused(mode: String) throws {
        let setup = try Setup("fault-\(mode)", artifact: artifact)
        let failed = try setup.download(mode, expectedLength: artifact.count)
        #expect(failed?.failure?.reason == .oversize, "\(String(describing: failed))")
        #expect(failed?.failure?.keptBytes == 0)
        #expect(contents(setup.path).count <= artifact.count, "never a byte past the expected length")
        #expect(!setup.sidecarExists)
    }

    /// Low-speed limit 2 s. With no body byte at all that is the bound; after some bytes curl's
    /// rate (an average over its last 5 seconds) needs up to 5 s more to fall below the limit.
    @Test(arguments: [0, 1000])
    func aStalledServerTimesOutWithinTheLimit(bytesBeforeStall: Int) throws {
        let setup = try Setup("fault-stall", artifact: artifact, lowSpeedSeconds: 2)
        let started = Date()
        let failed = try setup.download("stall?n=\(bytesBeforeStall)", expectedLength: artifact.count)
        let elapsed = Date().timeIntervalSince(started)
        #expect(failed?.failure?.reason == .timeout, "\(String(describing: failed))")
        #expect(failed?.failure?.keptBytes == bytesBeforeStall, "what arrived is kept for a resume")
        let bound = bytesBeforeStall == 0 ? 2.0 : 7.0
        #expect(elapsed >= 1.5 && elapsed < bound + 2, "low-speed limit 2 s, took \(elapsed) s")
    }

    /// A connection reset during the handshake (a 4G link dropping) is an interruption, not a
    /// TLS refusal: the OTA task rolls a new certificate back on refusals (the update server's
    /// word), and curl's "SSL connect error" without an alert was taken for one.
    @Test func aConnectionResetDuringTheHandshakeIsNoRefusal() throws {
        let rig = try DownloadRig("fault-handshake-reset")
        let (listener, port) = try LoopbackTCP.listener()
        defer { close(listener) }
        // Reads the ClientHello, then closes with SO_LINGER 0: a TCP reset.
        let server = Thread {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = read(client, &buffer, buffer.count)
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(client)
        }
        server.start()
        let loop = EventLoop()
        let fetcher = try HTTPFetcher(loop: loop, configuration: HTTPFetchConfiguration(tls: rig.deviceTLS, connectTimeoutMilliseconds: 5_000))
        let outcome: HTTPOutcome<[UInt8]>? = try runLoop(loop) { fetcher.get("https://127.0.0.1:\(port)/ota/x", maxBytes: 4096, completion: $0) }
        #expect(outcome?.failure?.reason == .interrupted, "\(String(describing: outcome))")
    }

    @Test func clientsWithoutOurCertificateFailTheHandshake() throws {
        let setup = try Setup("fault-tls", artifact: artifact)
        let foreign = try setup.rig.foreignPKI()
        let ca = setup.rig.pki.appendingPathComponent("ca.crt").path
        for tls in [HTTPClientTLS.withoutClientCertificate(caFile: ca),
                    HTTPClientTLS(caFile: ca, certificateFile: foreign.appendingPathComponent("devices/stranger.crt").path,
                                  keyFile: foreign.appendingPathComponent("devices/stranger.key").path)] {
            let fetcher = try HTTPFetcher(loop: setup.loop, configuration: HTTPFetchConfiguration(tls: tls))
            let outcome: HTTPOutcome<[UInt8]>? = try runLoop(setup.loop) { fetcher.get("\(setup.base)/ok", maxBytes: 1 << 20, completion: $0) }
            #expect(outcome?.failure?.reason == .tls, "\(tls.certificateFile ?? "no certificate"): \(String(describing: outcome))")
        }
        let outcome: HTTPOutcome<[UInt8]>? = try runLoop(setup.loop) { setup.fetcher.get("\(setup.base)/ok", maxBytes: 1 << 20, completion: $0) }
        #expect(outcome == .complete(artifact), "our own device is served")
    }
}
