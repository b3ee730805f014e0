// `daqctl bench decode`: parse and parse+decode throughput of a large candump log on one core,
// next to python-can and cantools measured in the same run on the same file. The figures
// matter as ratios: the machine (a shared VM) changes, the ratio between peers much less.
import ArgumentParser
import CANLogs
import DAQCore
import DBC
import Foundation
import Runtime
import SystemIO

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Throughput benchmarks next to the Python peers.",
        subcommands: [BenchDecodeCommand.self, BenchUplinkCommand.self, BenchMDFCommand.self, BenchPeerSubscriberCommand.self]
    )
}

struct BenchDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Parse and parse+decode throughput of a candump log, next to python-can and cantools.",
        discussion: """
            Builds a large candump log in a temporary directory from the reference fixture log \
            repeated --repeat times with shifted timestamps (10 × engine-10s.log = 1,032,720 frames), \
            or uses --log/--dbc. Measures in this process, on one core: (a) parse only (LogFrameSource: LineStream + \
            CANLogReader), (b) parse + decode (DBCDecoder into one reused SignalValues), best of --runs. \
            Then runs python-can's CanutilsLogReader (parse) and python-can + cantools \
            decode_message(decode_choices=False) (parse + decode, unknown ids skipped) with python3 \
            on the same file; each peer times its own loop, without interpreter start-up and DBC loading, \
            as ours excludes DBC parsing. Build with -c release: a debug build's figures mean nothing.
            """
    )

    @Option(help: "Directory holding engine.dbc and engine-10s.log (default: Fixtures/reference).")
    var fixtures: String?

    @Option(help: "Use this candump log instead of building one (needs --dbc).")
    var log: String?

    @Option(help: "The DBC for --log.")
    var dbc: String?

    @Option(help: "How many times the fixture log is repeated.")
    var `repeat`: Int = 10

    @Option(help: "Cap the generated log at this many frames.")
    var frames: Int?

    @Option(help: "Runs of each of our measurements; the best counts.")
    var runs: Int = 3

    @Option(name: .customLong("peer-runs"), help: "Runs of each Python peer measurement; the best counts.")
    var peerRuns: Int = 1

    @Flag(name: .customLong("no-peers"), help: "Skip the Python peers.")
    var noPeers = false

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    func validate() throws {
        if (log == nil) != (dbc == nil) { throw ValidationError("--log and --dbc go together") }
        if `repeat` < 1 { throw ValidationError("--repeat must be at least 1") }
        if let frames, frames < 1 { throw ValidationError("--frames must be positive") }
        if runs < 1 || peerRuns < 1 { throw ValidationError("--runs and --peer-runs must be at least 1") }
    }

    func run() throws {
        #if DEBUG
        printError("warning: daqctl is a debug build; benchmark figures need `swift build -c release`")
        #endif
        let workDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("daqctl-bench-\(ProcessInfo.processInfo.processIdentifier)")
        defer { try? FileManager.default.removeItem(at: workDirectory) }
        let input: BenchInput
        do {
            input = try prepareInput(workDirectory: workDirectory)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        if !json { printError("bench: \(input.frameCount) frames, \(input.bytes) bytes in \(input.logPath)") }

        let database = try DecodeCommand.loadDatabase(path: input.dbcPath)
        let decoder = DBCDecoder(database)
        var parse = BenchFigure.worst, decode = BenchFigure.worst
        var checksum = 0.0
        var decoded = 0
        for _ in 0..<runs {
            let p = try measureParse(input)
            parse = parse.better(p.figure)
            let d = try measureDecode(input, decoder: decoder)
            decode = decode.better(d.figure)
            checksum = d.checksum
            decoded = d.decoded
        }
        let peers = noPeers ? PeerResults(unavailable: "skipped (--no-peers)") : PythonPeers.measure(input, runs: peerRuns)
        let report = BenchReport(input: input, runs: runs, parse: parse, decode: decode, decodedFrames: decoded,
                                 checksum: checksum, peers: peers)
        print(json ? report.json : report.table)
    }

    /// The log and DBC to measure: given, or built from the fixtures.
    private func prepareInput(workDirectory: URL) throws -> BenchInput {
        if let log, let dbc {
            let count = try countFrames(log)
            return BenchInput(logPath: log, dbcPath: dbc, frameCount: count, bytes: fileSize(log),
                              source: log)
        }
        let directory = try fixtureDirectory()
        let fixtureLog = directory.appendingPathComponent("engine-10s.log").path
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        let out = workDirectory.appendingPathComponent("bench.log").path
        let count = try BenchLogBuilder.build(from: fixtureLog, to: out, repeats: `repeat`, cap: frames)
        return BenchInput(logPath: out, dbcPath: directory.appendingPathComponent("engine.dbc").path,
                          frameCount: count, bytes: fileSize(out),
                          source: "\(`repeat`) × \(fixtureLog)" + (frames.map { ", capped at \($0) frames" } ?? ""))
    }

    /// --fixtures, else Fixtures/reference under the current directory, else next to this source file.
    private func fixtureDirectory() throws -> URL {
        let files = FileManager.default
        var candidates: [URL] = []
        if let fixtures { candidates.append(URL(fileURLWithPath: fixtures)) } else {
            candidates.append(URL(fileURLWithPath: files.currentDirectoryPath).appendingPathComponent("Fixtures/reference"))
            var source = URL(fileURLWithPath: #filePath)
            for _ in 0..<3 { source.deleteLastPathComponent() }
            candidates.append(source.appendingPathComponent("Fixtures/reference"))
        }
        for candidate in candidates
        where files.fileExists(atPath: candidate.appendingPathComponent("engine-10s.log").path)
            && files.fileExists(atPath: candidate.appendingPathComponent("engine.dbc").path) {
            return candidate
        }
        throw DAQError(.io, "no engine-10s.log and engine.dbc here; use --fixtures DIR or --log/--dbc",
                       at: InputLocation(file: candidates[0].path))
    }

    private func measureParse(_ input: BenchInput) throws(DAQError) -> (figure: BenchFigure, checksum: UInt64) {
        let source = try LogFrameSource(path: input.logPath, format: .candump)
        var count = 0
        var idSum: UInt64 = 0
        let started = SystemClock.monotonicNow()
        try source.forEachFrame { frame in
            count += 1
            idSum &+= UInt64(frame.id) &+ UInt64(frame.data.count)
        }
        let seconds = Double(SystemClock.monotonicNow() - started) / 1e9
        return (BenchFigure(frames: count, bytes: input.bytes, seconds: seconds), idSum)
    }

    private func measureDecode(_ input: BenchInput, decoder: DBCDecoder) throws(DAQError)
        -> (figure: BenchFigure, checksum: Double, decoded: Int) {
        let source = try LogFrameSource(path: input.logPath, format: .candump)
        var values = decoder.makeValues()
        var count = 0, decoded = 0
        // Summing every present value keeps the optimizer from dropping the decode work.
        var sum = 0.0
        let started = SystemClock.monotonicNow()
        try source.forEachFrame { frame in
            count += 1
            guard decoder.decode(frame, into: &values) != nil else { return }
            decoded += 1
            for i in 0..<values.count where values.isPresent[i] { sum += values.physical[i] }
        }
        let seconds = Double(SystemClock.monotonicNow() - started) / 1e9
        return (BenchFigure(frames: count, bytes: input.bytes, seconds: seconds), sum, decoded)
    }

    private func countFrames(_ path: String) throws -> Int {
        let source = try LogFrameSource(path: path, format: .candump)
        var count = 0
        try source.forEachFrame { _ in count += 1 }
        return count
    }

    private func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}

/// The file measured.
struct BenchInput {
    var logPath: String
    var dbcPath: String
    var frameCount: Int
    var bytes: Int
    /// How the log was made, for the report.
    var source: String
}

/// Builds the benchmark log: a candump log repeated with timestamps shifted past its own span.
enum BenchLogBuilder {
    /// Writes `repeats` copies of `source` to `destination` (at most `cap` frames); returns the frame count.
    static func build(from source: String, to destination: String, repeats: Int, cap: Int?) throws -> Int {
        var frames: [CANFrame] = []
        try LogFrameSource(path: source, format: .candump).forEachFrame { frame in frames.append(frame) }
        guard let first = frames.first?.timestamp.nanoseconds,
              let last = frames.map(\.timestamp.nanoseconds).max() else {
            throw DAQError(.malformedInput, "the log has no frames", at: InputLocation(file: source))
        }
        // Whole seconds past the span, so copy k starts k × shift later and the timestamps still increase.
        let shift = ((last - first) / 1_000_000_000 + 1) * 1_000_000_000
        guard FileManager.default.createFile(atPath: destination, contents: nil),
              let handle = FileHandle(forWritingAtPath: destination) else {
            throw DAQError(.io, "cannot create the benchmark log", at: InputLocation(file: destination))
        }
        defer { try? handle.close() }
        let limit = cap ?? Int.max
        var written = 0
        var text = ""
        text.reserveCapacity(1 << 21)
        copies: for copy in 0..<repeats {
            for var frame in frames {
                guard written < limit else { break copies }
                frame.timestamp.nanoseconds += Int64(copy) * shift
                text += frame.candumpLine
                text += "\n"
                written += 1
                if text.utf8.count >= 1 << 21 {
                    handle.write(Data(text.utf8))
                    text.removeAll(keepingCapacity: true)
                }
            }
        }
        handle.write(Data(text.utf8))
        return written
    }
}

/// One measurement: frames and bytes over seconds.
struct BenchFigure {
    var frames: Int
    var bytes: Int
    var seconds: Double

    static let worst = BenchFigure(frames: 0, bytes: 0, seconds: .infinity)

    var framesPerSecond: Double { seconds > 0 && seconds.isFinite ? Double(frames) / seconds : 0 }
    var megabytesPerSecond: Double { seconds > 0 && seconds.isFinite ? Double(bytes) / seconds / 1e6 : 0 }

    /// The faster of two runs.
    func better(_ other: BenchFigure) -> BenchFigure { other.seconds < seconds ? other : self }

    var json: String {
        "{\"frames\": \(frames), \"seconds\": \(rounded(seconds, 6)), \"framesPerSecond\": \(Int(framesPerSecond)), "
            + "\"megabytesPerSecond\": \(rounded(megabytesPerSecond, 2))}"
    }
}

/// The Python peers' figures, or why there are none.
struct PeerResults {
    var parse: BenchFigure?
    var decode: BenchFigure?
    var unavailable: String?
    var versions = ""

    init(unavailable: String) { self.unavailable = unavailable }
    init(parse: BenchFigure, decode: BenchFigure?, unavailable: String?, versions: String) {
        self.parse = parse
        self.decode = decode
        self.unavailable = unavailable
        self.versions = versions
    }
}

/// python-can and cantools, run with python3 on the benchmark file.
enum PythonPeers {
    // Each mode times only its loop; the result is one JSON line on stdout.
    static let script = #"""
import json, sys, time
mode, path, dbc = sys.argv[1], sys.argv[2], sys.argv[3]
import can
versions = {"python-can": can.__version__}
if mode == "parse":
    start = time.perf_counter()
    n = 0
    for msg in can.CanutilsLogReader(path):
        n += 1
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": n, "seconds": seconds, "versions": versions}))
else:
    import cantools
    versions["cantools"] = cantools.__version__
    db = cantools.database.load_file(dbc, strict=False)
    known = {m.frame_id for m in db.messages}
    start = time.perf_counter()
    n = decoded = 0
    total = 0.0
    for msg in can.CanutilsLogReader(path):
        n += 1
        if msg.arbitration_id not in known:
            continue
        values = db.decode_message(msg.arbitration_id, msg.data, decode_choices=False)
        decoded += 1
        total += sum(values.values())
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": n, "decoded": decoded, "seconds": seconds, "versions": versions}))
"""#

    static func measure(_ input: BenchInput, runs: Int) -> PeerResults {
        var parse = BenchFigure.worst, decode = BenchFigure.worst
        var versions = ""
        for _ in 0..<runs {
            switch run(mode: "parse", input) {
            case .failure(let reason): return PeerResults(unavailable: "python-can: \(reason)")
            case .success(let result): parse = parse.better(result.figure); versions = result.versions
            }
        }
        for _ in 0..<runs {
            switch run(mode: "decode", input) {
            case .failure(let reason):
                return PeerResults(parse: parse, decode: nil, unavailable: "cantools: \(reason)", versions: versions)
            case .success(let result): decode = decode.better(result.figure); versions = result.versions
            }
        }
        return PeerResults(parse: parse, decode: decode, unavailable: nil, versions: versions)
    }

    private struct PeerFailure: Error, CustomStringConvertible {
        var description: String
    }

    private static func run(mode: String, _ input: BenchInput) -> Result<(figure: BenchFigure, versions: String), PeerFailure> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, mode, input.logPath, input.dbcPath]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return .failure(PeerFailure(description: "python3 not found (\(error))")) }
        // The peer prints one short line; stderr is read after exit (a traceback fits a pipe).
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any],
              let frames = object["frames"] as? Int, let seconds = object["seconds"] as? Double else {
            let message = String(decoding: errors, as: UTF8.self).split(separator: "\n").last.map(String.init)
                ?? "exit status \(process.terminationStatus)"
            return .failure(PeerFailure(description: message))
        }
        let versions = (object["versions"] as? [String: String] ?? [:]).sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return .success((BenchFigure(frames: frames, bytes: input.bytes, seconds: seconds), versions))
    }
}

/// The results as a table or JSON.
struct BenchReport {
    var input: BenchInput
    var runs: Int
    var parse: BenchFigure
    var decode: BenchFigure
    var decodedFrames: Int
    var checksum: Double
    var peers: PeerResults

    private var build: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }

    private func ratio(_ ours: BenchFigure, _ peer: BenchFigure?) -> Double? {
        guard let peer, peer.framesPerSecond > 0 else { return nil }
        return ours.framesPerSecond / peer.framesPerSecond
    }

    var table: String {
        var rows: [(String, BenchFigure?, Double?)] = [
            ("daqctl parse (LineStream + CANLogReader)", parse, ratio(parse, peers.parse)),
            ("daqctl parse + decode (DBCDecoder)", decode, ratio(decode, peers.decode)),
        ]
        rows.append(("python-can CanutilsLogReader parse", peers.parse, nil))
        rows.append(("python-can + cantools decode_message", peers.decode, nil))
        var lines = [
            "daqctl bench decode: \(grouped(input.frameCount)) frames, \(rounded(Double(input.bytes) / 1e6, 1)) MB "
                + "(\(input.source)); \(build) build, one core, ours best of \(runs)",
            "",
            "| measurement | frames/s | MB/s | seconds | ours / peer |",
            "|---|---:|---:|---:|---:|",
        ]
        for (name, figure, ratio) in rows {
            guard let figure else {
                lines.append("| \(name) | – | – | – | – |")
                continue
            }
            lines.append("| \(name) | \(grouped(Int(figure.framesPerSecond))) | \(rounded(figure.megabytesPerSecond, 1)) "
                         + "| \(rounded(figure.seconds, 3)) | \(ratio.map { "\(rounded($0, 1))×" } ?? "") |")
        }
        if let reason = peers.unavailable { lines.append("peer: \(reason)") }
        if !peers.versions.isEmpty { lines.append("peers: \(peers.versions)") }
        lines.append("decoded frames: \(grouped(decodedFrames)); target ≥ 2,000,000 frames/s parse+decode: "
                     + (decode.framesPerSecond >= 2_000_000 ? "met" : "not met"))
        return lines.joined(separator: "\n")
    }

    var json: String {
        let parseRatio = ratio(parse, peers.parse).map { "\(rounded($0, 3))" } ?? "null"
        let decodeRatio = ratio(decode, peers.decode).map { "\(rounded($0, 3))" } ?? "null"
        let reason = peers.unavailable.map { JSONText.quoted($0) } ?? "null"
        return """
            {"frames": \(input.frameCount), "bytes": \(input.bytes), "runs": \(runs), "build": "\(build)", \
            "decodedFrames": \(decodedFrames), "checksum": \(checksum.isFinite ? "\(checksum)" : "null"), \
            "ours": {"parse": \(parse.json), "decode": \(decode.json)}, \
            "peer": {"available": \(peers.unavailable == nil), "reason": \(reason), \
            "versions": \(JSONText.quoted(peers.versions)), \
            "parse": \(peers.parse?.json ?? "null"), "decode": \(peers.decode?.json ?? "null")}, \
            "ratio": {"parse": \(parseRatio), "decode": \(decodeRatio)}}
            """
    }
}

func rounded(_ value: Double, _ digits: Int) -> Double {
    guard value.isFinite else { return 0 }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    return (value * scale).rounded() / scale
}

/// 1,032,720.
func grouped(_ value: Int) -> String {
    let digits = String(value)
    var out = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 && character != "-" { out.append(",") }
        out.append(character)
    }
    return out
}
