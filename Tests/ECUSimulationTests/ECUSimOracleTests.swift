// `daqctl ecu-sim --log` checked from outside: python cantools decodes the simulated log to the
// same values `daqctl decode` prints, all inside each signal's [min, max]; and the log's bytes
// depend only on the seed (and DBC, duration, start).
import Foundation
import Testing
import TestSupport

private let cantoolsDecode = #"""
import json, sys, cantools
db = cantools.database.load_file(sys.argv[1])
out = []
for line in open(sys.argv[2]):
    stamp, bus, body = line.split()
    ident, data = body.split("#")
    frame_id = int(ident, 16)
    message = db.get_message_by_frame_id(frame_id)
    values = db.decode_message(frame_id, bytes.fromhex(data), decode_choices=False)
    outside = []
    for name, value in values.items():
        signal = message.get_signal_by_name(name)
        if signal.minimum is not None and value < signal.minimum: outside.append(name)
        if signal.maximum is not None and value > signal.maximum: outside.append(name)
    out.append({"t": stamp[1:-1], "id": frame_id, "signals": {k: float(v) for k, v in values.items()}, "outside": outside})
print(json.dumps(out))
"""#

private func daqctl(_ arguments: [String]) throws -> ProcessResult {
    try runProcess(PackagePaths.executable("daqctl").path, arguments)
}

@Suite("daqctl ecu-sim against cantools")
struct ECUSimOracleTests {
    @Test("cantools decodes the simulated log to daqctl decode's values, inside [min, max]")
    func cantoolsAgrees() throws {
        let directory = try PackagePaths.temporaryDirectory("ecu-sim-oracle")
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("out.log").path
        let sim = try daqctl(["ecu-sim", "--dbc", engineDBCPath, "--log", log, "--duration", "2"])
        try #require(sim.status == 0, "\(sim.stderr)")

        let decoded = try daqctl(["decode", "--dbc", engineDBCPath, log])
        try #require(decoded.status == 0, "\(decoded.stderr)")
        let ours = try decoded.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let python = try runPython(cantoolsDecode, [engineDBCPath, log])
        try #require(python.status == 0, "\(python.stderr)")
        let theirs = try JSONSerialization.jsonObject(with: python.stdoutData) as! [[String: Any]]

        try #require(ours.count == theirs.count)
        #expect(ours.count > 19_000)
        var mismatches: [String] = []
        for (a, b) in zip(ours, theirs) {
            let ourSignals = a["signals"] as! [String: Double]
            let theirSignals = b["signals"] as! [String: Double]
            if (a["id"] as! Int) != (b["id"] as! Int) || Set(ourSignals.keys) != Set(theirSignals.keys) {
                mismatches.append("frame at \(b["t"]!): ids or signal names differ")
                continue
            }
            for (name, value) in ourSignals where abs(value - theirSignals[name]!) > 1e-9 * max(1, abs(value)) {
                mismatches.append("\(name) at \(b["t"]!): daqctl \(value), cantools \(theirSignals[name]!)")
            }
            let outside = b["outside"] as! [String]
            if !outside.isEmpty { mismatches.append("outside [min, max] at \(b["t"]!): \(outside)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count): \(mismatches.prefix(10))")
    }

    @Test("--log bytes depend only on DBC, seed, duration and start")
    func logIsDeterministic() throws {
        let directory = try PackagePaths.temporaryDirectory("ecu-sim-seed")
        defer { try? FileManager.default.removeItem(at: directory) }
        func run(_ name: String, _ extra: [String]) throws -> Data {
            let path = directory.appendingPathComponent(name).path
            let result = try daqctl(["ecu-sim", "--dbc", engineDBCPath, "--log", path, "--duration", "0.5"] + extra)
            try #require(result.status == 0, "\(result.stderr)")
            return try Data(contentsOf: URL(fileURLWithPath: path))
        }
        let a = try run("a.log", ["--seed", "5"])
        let b = try run("b.log", ["--seed", "5"])
        let c = try run("c.log", ["--seed", "6"])
        let d = try run("d.log", ["--seed", "5", "--start", "1800000000"])
        #expect(a == b)
        #expect(a != c)
        #expect(a != d)
        let first = String(decoding: d, as: UTF8.self).prefix(12)
        #expect(first == "(1800000000.")
    }

    @Test("bad input: a missing DBC names the file; --to and --log together are refused")
    func badInput() throws {
        let missing = try daqctl(["ecu-sim", "--dbc", "/nonexistent.dbc", "--log", "/tmp/x.log"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent.dbc"))
        let both = try daqctl(["ecu-sim", "--dbc", engineDBCPath, "--log", "/tmp/x.log", "--to", "vcan0"])
        #expect(both.status != 0)
        // Out of range: refused as usage errors (they trapped, or wrote a log daqctl cannot read).
        for (extra, message) in [(["--duration", "1e10"], "--duration must be more than 0 and at most 10000000 s"),
                                 (["--duration", "1e300"], "--duration must be more than 0"),
                                 (["--start", "99999999999"], "--start must be Unix seconds from 0 to 4102444800"),
                                 (["--start", "-100"], "--start must be Unix seconds from 0"),
                                 (["--bus", "can0,,can1"], "has an empty name between its commas")] {
            let refused = try daqctl(["ecu-sim", "--dbc", engineDBCPath, "--log", "/tmp/never.log"] + extra)
            #expect(refused.status == 64 && refused.stderr.contains(message), "\(extra): \(refused.status) \(refused.stderr)")
        }
        // "-" is standard output, as frames and decode read "-" as standard input.
        let piped = try daqctl(["ecu-sim", "--dbc", engineDBCPath, "--log", "-", "--duration", "0.1"])
        #expect(piped.status == 0 && piped.stdout.hasPrefix("(1700000000.") && piped.stderr.contains("written to -"), "\(piped.stderr)")
    }
}
