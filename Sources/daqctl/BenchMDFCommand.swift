// `daqctl bench mdf`: MB/s of our MDF4 writers on the reference workload's records, next to
// asammdf writing the same records (MDF(version='4.11'), append, save) timed in the same run.
// The figures matter as ratios: the machine (a shared VM) changes, the ratio between peers much less.
import Acquisition
import Agent
import ArgumentParser
import DAQCore
import Experiment
import Foundation
import MDF
import MDFFiles
import SystemIO

struct BenchMDFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mdf",
        abstract: "MDF4 writing throughput on the reference workload, next to asammdf.",
        discussion: """
            Replays Fixtures/reference/engine-10s.log --repeat times (timestamps shifted by 10 s each \
            time, one continuous measurement) through the reference experiment into the journal's \
            record payloads, in memory. Then writes them, best of --runs: (a) MDFWriter, one sorted \
            data group per channel group (daqctl export), (b) the same with ##DZ transposed deflate \
            blocks (export --deflate), (c) MDFRecording, the streaming unsorted file daqlink --mdf \
            writes (append per record, finalize, fsync). The peer, asammdf via python3, gets the same \
            records as numpy arrays (built before its clock starts) and times MDF(version='4.11'), \
            one append of Signals (with units, linear conversions, invalidation bits) per group \
            and save(), plain and with compression=2 (transposed deflate). MB/s = record bytes \
            (time master + values + invalidation bytes, no record ids) per second. \
            Build with -c release: a debug build's figures mean nothing.
            """
    )

    @Option(help: "Directory holding reference.toml, engine.dbc and engine-10s.log (default: Fixtures/reference).")
    var fixtures: String?

    @Option(help: "How many times the fixture log is replayed.")
    var `repeat`: Int = 10

    @Option(help: "Runs of each measurement; the best counts.")
    var runs: Int = 3

    @Flag(name: .customLong("no-peers"), help: "Skip asammdf.")
    var noPeers = false

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    func validate() throws {
        if `repeat` < 1 || runs < 1 { throw ValidationError("--repeat and --runs must be at least 1") }
    }

    func run() throws {
        #if DEBUG
        printError("warning: daqctl is a debug build; benchmark figures need `swift build -c release`")
        #endif
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("daqctl-bench-mdf-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let input: MDFBenchInput
        do {
            input = try MDFBenchInput.replay(fixtures: try LocalFleet.fixtureDirectory(fixtures), repeats: `repeat`)
        } catch let error as DAQError {
            printError("daqctl bench mdf: \(error)")
            throw ExitCode(1)
        }
        var figures: [(name: String, seconds: Double, fileBytes: Int)] = []
        let out = work.appendingPathComponent("ours.mf4").path
        let stream = work.appendingPathComponent("stream.mf4").path
        func size(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0 }
        figures.append(("daqctl MDFWriter, sorted (export)", try best { () throws in
            try ExportPaths.write(MDFWriter.finalizedFile(layout: input.layout, records: input.records), to: out)
        }, size(out)))
        figures.append(("daqctl MDFWriter, sorted + ##DZ transposed deflate (export --deflate)", try best { () throws in
            try ExportPaths.write(MDFWriter.finalizedFile(layout: input.layout, records: input.records,
                                                          deflate: { Deflate.compress($0) }), to: out)
        }, size(out)))
        figures.append(("daqctl MDFRecording, streaming unsorted (daqlink --mdf)", try best { () throws in
            let recording = try MDFRecording(directory: work.path, name: "stream", layout: input.layout)
            try input.payloads.withUnsafeBytes { raw in
                for range in input.payloadRanges { try recording.append(UnsafeRawBufferPointer(rebasing: raw[range])) }
            }
            try recording.finish()
        }, size(stream)))
        var peer = ASAMMDFPeer.Result(unavailable: "skipped (--no-peers)")
        if !noPeers { peer = ASAMMDFPeer.measure(input, work: work, runs: runs) }
        let report = MDFBenchReport(input: input, runs: runs, ours: figures, peer: peer)
        print(json ? report.json : report.table)
    }

    /// The best (shortest) of `runs` timings of `body`, in seconds.
    private func best(_ body: () throws -> Void) throws -> Double {
        var fastest = Double.infinity
        for _ in 0..<runs {
            let start = ContinuousClock.now
            try body()
            let elapsed = ContinuousClock.now - start
            fastest = min(fastest, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return fastest
    }
}

/// The reference workload's records: the layout, each group's MDF records back to back, and the
/// journal record payloads in recording order.
struct MDFBenchInput {
    var layout: MeasurementLayout
    var records: [[UInt8]]
    var payloads: [UInt8]
    var payloadRanges: [Range<Int>]
    /// Record bytes (without record ids): the numerator of MB/s.
    var recordBytes: Int { records.reduce(0) { $0 + $1.count } }
    var source: String

    static func replay(fixtures: URL, repeats: Int) throws(DAQError) -> MDFBenchInput {
        let binding = try ExperimentLoader.load(path: fixtures.appendingPathComponent("reference.toml").path)
        let log = fixtures.appendingPathComponent("engine-10s.log").path
        var frames: [CANFrame] = []
        try LogFrameSource(path: log).forEachFrame { frames.append($0) }
        guard let first = frames.first, let last = frames.last else {
            throw DAQError(.malformedInput, "no frames", at: InputLocation(file: log))
        }
        // Whole seconds covering the log, so repeats continue the raster grid.
        let span = ((last.timestamp.nanoseconds - first.timestamp.nanoseconds) / 1_000_000_000 + 1) * 1_000_000_000
        var pipeline = AcquisitionPipeline(binding)
        var buffer = RecordBuffer()
        for round in 0..<repeats {
            for var frame in frames {
                frame.timestamp = Timestamp(nanoseconds: frame.timestamp.nanoseconds + Int64(round) * span)
                pipeline.ingest(frame, into: &buffer)
            }
        }
        guard let layout = pipeline.layout else { throw DAQError(.malformedInput, "no measurement", at: InputLocation(file: log)) }
        var records = Array(repeating: [UInt8](), count: layout.groups.count)
        var ranges: [Range<Int>] = []
        for index in 0..<buffer.count {
            buffer.withPayload(index) { payload in
                let start = ranges.last?.upperBound ?? 0
                ranges.append(start..<(start + payload.count))
                records[RecordPayload.groupIndex(payload)] += payload[RecordPayload.headerBytes...]
            }
        }
        return MDFBenchInput(layout: layout, records: records, payloads: buffer.bytes, payloadRanges: ranges,
                             source: "\(repeats) × \(log) through reference.toml")
    }
}
