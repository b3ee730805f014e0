// The asammdf peer of `daqctl bench mdf` and the report. asammdf gets each group's records as a
// binary file plus a JSON description; it builds its numpy arrays before its clock starts.
import Acquisition
import DAQCore
import Foundation

/// asammdf writing the benchmark's records, run with python3.
enum ASAMMDFPeer {
    struct Result {
        var plain: Double?
        var deflate: Double?
        /// File sizes of the plain and the compressed save.
        var plainBytes = 0
        var deflateBytes = 0
        /// Samples per group in asammdf's plain file (checked against ours).
        var cycles: [Int] = []
        var version = ""
        var unavailable: String?

        init(unavailable: String) { self.unavailable = unavailable }
        init() {}
    }

    static let script = """
        import json, os, sys, time
        import numpy as np
        import asammdf
        from asammdf import MDF, Signal
        meta = json.load(open(sys.argv[1])); out = sys.argv[2]; runs = int(sys.argv[3])
        groups = []
        for g in meta["groups"]:
            raw = np.fromfile(g["file"], dtype=np.uint8).reshape(-1, g["recordBytes"])
            t = raw[:, 0:8].copy().view("<f8").ravel()
            signals = []
            for i, ch in enumerate(g["channels"]):
                size = np.dtype(ch["dtype"]).itemsize
                samples = raw[:, ch["offset"]:ch["offset"] + size].copy().view(ch["dtype"]).ravel()
                byte = raw[:, g["dataBytes"] + i // 8]
                invalid = ((byte >> (i % 8)) & 1).astype(bool)
                conversion = {"a": ch["factor"], "b": ch["offset_phys"]} if ch["linear"] else None
                signals.append(Signal(samples, t, name=ch["name"], unit=ch["unit"], conversion=conversion,
                                      invalidation_bits=invalid))
            groups.append((g["name"], signals))
        def write(path, compression):
            start = time.perf_counter()
            mdf = MDF(version="4.11")
            for name, signals in groups:
                mdf.append(signals, acq_name=name, common_timebase=True)
            saved = mdf.save(path, overwrite=True, compression=compression)
            mdf.close()
            return time.perf_counter() - start, os.path.getsize(saved)
        plain, plain_bytes = min(write(out, 0) for _ in range(runs))
        deflate, deflate_bytes = min(write(out[:-4] + "-dz.mf4", 2) for _ in range(runs))
        check = MDF(out)
        cycles = [int(g.channel_group.cycles_nr) for g in check.groups]
        print(json.dumps({"plain": plain, "deflate": deflate, "cycles": cycles, "version": asammdf.__version__,
                          "plainBytes": plain_bytes, "deflateBytes": deflate_bytes}))
        """

    static func measure(_ input: MDFBenchInput, work: URL, runs: Int) -> Result {
        var groups: [String] = []
        for (index, group) in input.layout.groups.enumerated() where group.loggedBuses == nil {
            let file = work.appendingPathComponent("group-\(index).bin")
            guard FileManager.default.createFile(atPath: file.path, contents: Data(input.records[index])) else {
                return Result(unavailable: "cannot write \(file.path)")
            }
            let layout = RecordLayout(group)
            let channels = group.channels.enumerated().map { position, channel -> String in
                let (dtype, linear): (String, Bool)
                switch channel.storage {
                case .unsigned(let bits): (dtype, linear) = ("<u\(bits / 8)", true)
                case .signed(let bits): (dtype, linear) = ("<i\(bits / 8)", true)
                case .float32: (dtype, linear) = ("<f4", false)
                case .float64: (dtype, linear) = ("<f8", false)
                }
                let scaled = linear && (channel.factor != 1 || channel.offset != 0)
                return "{\"name\": \(quoted(channel.name)), \"unit\": \(quoted(channel.unit)), \"dtype\": \"\(dtype)\", "
                    + "\"offset\": \(layout.valueOffsets[position]), \"linear\": \(scaled), \"factor\": \(channel.factor), "
                    + "\"offset_phys\": \(channel.offset)}"
            }
            groups.append("{\"name\": \(quoted(group.name)), \"file\": \(quoted(file.path)), \"recordBytes\": \(layout.recordBytes), "
                          + "\"dataBytes\": \(layout.dataBytes), \"channels\": [\(channels.joined(separator: ", "))]}")
        }
        let meta = work.appendingPathComponent("groups.json")
        guard FileManager.default.createFile(atPath: meta.path, contents: Data("{\"groups\": [\(groups.joined(separator: ", "))]}".utf8)) else {
            return Result(unavailable: "cannot write \(meta.path)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, meta.path, work.appendingPathComponent("asammdf.mf4").path, "\(runs)"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return Result(unavailable: "python3 not found (\(error))") }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            return Result(unavailable: String(decoding: errors, as: UTF8.self).split(separator: "\n").last.map(String.init)
                          ?? "exit status \(process.terminationStatus)")
        }
        var result = Result()
        result.plain = object["plain"] as? Double
        result.deflate = object["deflate"] as? Double
        result.cycles = object["cycles"] as? [Int] ?? []
        result.plainBytes = object["plainBytes"] as? Int ?? 0
        result.deflateBytes = object["deflateBytes"] as? Int ?? 0
        result.version = object["version"] as? String ?? ""
        return result
    }

    private static func quoted(_ text: String) -> String { JSONText.quoted(text) }
}

/// "debug" or "release": which build printed the figures.
let benchBuildKind: String = {
    #if DEBUG
    "debug"
    #else
    "release"
    #endif
}()

/// The results as a table or JSON.
struct MDFBenchReport {
    var input: MDFBenchInput
    var runs: Int
    var ours: [(name: String, seconds: Double, fileBytes: Int)]
    var peer: ASAMMDFPeer.Result

    private var build: String { benchBuildKind }

    private func megabytesPerSecond(_ seconds: Double?) -> Double? {
        guard let seconds, seconds > 0, seconds.isFinite else { return nil }
        return Double(input.recordBytes) / seconds / 1e6
    }

    /// Samples per group in our files, for the check against asammdf's file.
    private var cycles: [Int] {
        input.layout.groups.indices.filter { input.layout.groups[$0].loggedBuses == nil }
            .map { input.records[$0].count / RecordLayout(input.layout.groups[$0]).recordBytes }
    }

    var table: String {
        var lines = [
            "daqctl bench mdf: \(grouped(input.payloadRanges.count)) records, \(rounded(Double(input.recordBytes) / 1e6, 1)) MB of record bytes "
                + "in \(input.layout.groups.count) channel groups (\(input.source)); \(build) build, best of \(runs)",
            "",
            "| writer | MB/s | seconds | file bytes | ours / asammdf (same compression) |",
            "|---|---:|---:|---:|---:|",
        ]
        let peers = [peer.plain, peer.deflate, peer.plain]
        for (index, figure) in ours.enumerated() {
            let ratio = peers[index].map { $0 / figure.seconds }
            lines.append("| \(figure.name) | \(rounded(megabytesPerSecond(figure.seconds) ?? 0, 1)) | \(rounded(figure.seconds, 3)) "
                         + "| \(grouped(figure.fileBytes)) | \(ratio.map { "\(rounded($0, 1))×" } ?? "") |")
        }
        for (name, seconds, bytes) in [("asammdf \(peer.version) append + save", peer.plain, peer.plainBytes),
                                       ("asammdf \(peer.version) append + save(compression=2)", peer.deflate, peer.deflateBytes)] {
            lines.append("| \(name) | \(megabytesPerSecond(seconds).map { "\(rounded($0, 1))" } ?? "–") "
                         + "| \(seconds.map { "\(rounded($0, 3))" } ?? "–") | \(bytes > 0 ? grouped(bytes) : "–") | |")
        }
        if let reason = peer.unavailable { lines.append("peer: \(reason)") }
        if peer.unavailable == nil {
            lines.append("asammdf's file holds the same samples per group: \(peer.cycles == cycles ? "yes" : "NO (\(peer.cycles) vs \(cycles))")")
        }
        return lines.joined(separator: "\n")
    }

    var json: String {
        func figure(_ seconds: Double?) -> String {
            guard let seconds, let rate = megabytesPerSecond(seconds) else { return "null" }
            return "{\"seconds\": \(rounded(seconds, 6)), \"megabytesPerSecond\": \(rounded(rate, 2))}"
        }
        let oursJSON = ours.map { "{\"name\": \(JSONText.quoted($0.name)), \"figure\": \(figure($0.seconds)), \"fileBytes\": \($0.fileBytes)}" }
            .joined(separator: ", ")
        let reason = peer.unavailable.map { JSONText.quoted($0) } ?? "null"
        return """
            {"records": \(input.payloadRanges.count), "recordBytes": \(input.recordBytes), "runs": \(runs), "build": "\(build)", \
            "ours": [\(oursJSON)], "peer": {"available": \(peer.unavailable == nil), "reason": \(reason), \
            "version": \(JSONText.quoted(peer.version)), "plain": \(figure(peer.plain)), "deflate": \(figure(peer.deflate)), \
            "plainBytes": \(peer.plainBytes), "deflateBytes": \(peer.deflateBytes), \
            "sameCycles": \(peer.cycles == cycles)}}
            """
    }
}
