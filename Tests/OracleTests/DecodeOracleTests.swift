// Oracle: every message of every DBC in ../shared/public-data/dbc, decoded from seeded random
// full-length payloads by `daqctl decode` (and by the DBC module directly) and by python cantools.
//
// cantools loading: vw_mqb.dbc is rejected by cantools' strict checks ("The signals
// PLA_Bremsverzoegerung and PLA_Bremsmoment are overlapping in message PLA_01"), so any file the
// strict load rejects is loaded with strict=False (overlaps are legal for decoding). No message and
// no signal is excluded, and the tolerance is the same for every file.
//
// Multiplexed messages: cantools decodes only the selected signals, and raises
// "expected multiplexer id …" when a multiplexer value selects no signal at all. For those frames
// the test requires our decoder to report `hasUnselectedMultiplexer`. Half the payloads of a
// multiplexed message get each multiplexer set to a value some signal is selected by, so the
// selected branches are exercised, not only rejected frames.
import DAQCore
import DBC
import Foundation
import Testing
import TestSupport

private let dbcDirectory = PackagePaths.shared.appendingPathComponent("public-data/dbc")
private let framesPerMessage = 48

private func dbcFiles() -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dbcDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".dbc") }.sorted()
}

private let cantoolsScript = #"""
import json, math, sys
import cantools

request = json.load(sys.stdin)
strict = True
try:
    db = cantools.database.load_file(request["dbc"], strict=True)
except Exception as error:
    strict = False
    db = cantools.database.load_file(request["dbc"], strict=False)

def number(value):
    value = float(value)
    if math.isnan(value): return "nan"
    if math.isinf(value): return "inf" if value > 0 else "-inf"
    return value

results = []
for frame_id, is_extended, data in request["frames"]:
    message = db.get_message_by_frame_id(frame_id)
    try:
        decoded = db.decode_message(frame_id, bytes.fromhex(data), decode_choices=False, scaling=True)
        results.append({"name": message.name, "signals": {k: number(v) for k, v in decoded.items()}})
    except Exception as error:
        if str(error) != "unpacking failed" or message.is_multiplexed():
            results.append({"name": message.name, "error": str(error)})
            continue
        # Overlapping signals: cantools' packer cannot unpack the message at once; one signal at a time it can.
        from cantools.database.can import Message
        signals = {}
        for signal in message.signals:
            single = Message(frame_id=message.frame_id, name=message.name, length=message.length,
                             signals=[signal], strict=False)
            signals.update(single.decode(bytes.fromhex(data), decode_choices=False, scaling=True))
        results.append({"name": message.name, "perSignal": True, "signals": {k: number(v) for k, v in signals.items()}})
print(json.dumps({"strict": strict, "results": results}))
"""#


/// One test frame: which message, and its payload.
private struct OracleFrame {
    var message: Int
    var payload: CANPayload
}

/// Seeded random full-length payloads for every message.
private func makeFrames(_ database: DBCDatabase, seed: UInt64) -> [OracleFrame] {
    var rng = SeededGenerator(seed: seed)
    var frames: [OracleFrame] = []
    for (index, message) in database.messages.enumerated() {
        for k in 0..<framesPerMessage {
            var payload = CANPayload((0..<message.length).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            if message.isMultiplexed && k % 2 == 0 {
                for signal in message.signals where signal.isMultiplexer {
                    let choices = message.signals.compactMap { $0.multiplexedBy }
                        .filter { $0.multiplexer == signal.name }.flatMap(\.values)
                    guard !choices.isEmpty else { continue }
                    let range = choices[Int(rng.next() % UInt64(choices.count))]
                    let span = UInt64(bitPattern: range.upperBound &- range.lowerBound) &+ 1
                    let value = range.lowerBound &+ Int64(bitPattern: span == 0 ? rng.next() : rng.next() % span)
                    signal.encode(raw: UInt64(bitPattern: value), into: &payload)
                }
            }
            frames.append(OracleFrame(message: index, payload: payload))
        }
    }
    return frames
}

private func candumpLine(_ frame: OracleFrame, _ message: DBCMessage, time: Int) -> String {
    let id = String(message.id, radix: 16, uppercase: true)
    let idText = String(repeating: "0", count: max(0, (message.isExtended ? 8 : 3) - id.count)) + id
    let separator = message.isFD || frame.payload.count > 8 ? "##0" : "#"
    let micros = String(time)
    return "(1700000000.\(String(repeating: "0", count: 6 - micros.count) + micros)) can0 \(idText)\(separator)\(frame.payload.hexString)"
}

private func close(_ ours: Double, _ theirs: Double) -> Bool {
    if ours == theirs { return true }
    return abs(ours - theirs) <= 1e-9 * max(1, abs(ours), abs(theirs))
}

/// Does a cantools value (number or "nan"/"inf"/"-inf") match ours?
private func matches(_ ours: Double, _ theirs: Any, nonFiniteAsNull: Bool = false) -> Bool {
    if let text = theirs as? String {
        if nonFiniteAsNull { return false }
        switch text {
        case "nan": return ours.isNaN
        case "inf": return ours == .infinity
        case "-inf": return ours == -.infinity
        default: return false
        }
    }
    guard let number = theirs as? NSNumber else { return false }
    return close(ours, number.doubleValue)
}

@Test(arguments: dbcFiles())
func decodeMatchesCantools(file: String) throws {
    let path = dbcDirectory.appendingPathComponent(file).path
    let database = try DBCDatabase.parse(bytes: [UInt8](Data(contentsOf: URL(fileURLWithPath: path))), file: file)
    let decoder = DBCDecoder(database)
    let frames = makeFrames(database, seed: UInt64(truncatingIfNeeded: file.utf8.reduce(5381) { $0 &* 33 &+ Int($1) }))

    // cantools
    let request: [String: Any] = [
        "dbc": path,
        "frames": frames.map { frame -> [Any] in
            let message = database.messages[frame.message]
            return [Int(message.id), message.isExtended, frame.payload.hexString]
        },
    ]
    let oracle = try runPython(cantoolsScript, stdin: JSONSerialization.data(withJSONObject: request))
    try #require(oracle.status == 0, "cantools failed: \(oracle.stderr)")
    let reply = try #require(try JSONSerialization.jsonObject(with: oracle.stdoutData) as? [String: Any])
    let results = try #require(reply["results"] as? [[String: Any]])
    try #require(results.count == frames.count)
    if reply["strict"] as? Bool == false { #expect(file == "vw_mqb.dbc", "only vw_mqb.dbc needs strict=False") }

    // daqctl decode
    let directory = try PackagePaths.temporaryDirectory("decode-oracle")
    defer { try? FileManager.default.removeItem(at: directory) }
    let log = directory.appendingPathComponent("frames.log")
    let lines = frames.enumerated().map { candumpLine($1, database.messages[$1.message], time: $0) }
    try (lines.joined(separator: "\n") + "\n").write(to: log, atomically: true, encoding: .utf8)
    let cli = try runProcess(PackagePaths.executable("daqctl").path, ["decode", "--dbc", path, log.path])
    try #require(cli.status == 0, "daqctl decode failed: \(cli.stderr)")
    let outputLines = cli.stdout.split(separator: "\n")
    try #require(outputLines.count == frames.count, "one JSON line per frame")

    var values = decoder.makeValues()
    var checkedSignals = 0
    var rejected = 0
    var selectedMultiplexed = 0
    for (k, frame) in frames.enumerated() {
        let message = database.messages[frame.message]
        let expected = results[k]
        #expect(expected["name"] as? String == message.name)
        decoder.decode(message: frame.message, payload: frame.payload, into: &values)
        let line = try #require(try JSONSerialization.jsonObject(with: Data(outputLines[k].utf8)) as? [String: Any])
        #expect(line["name"] as? String == message.name && (line["id"] as? NSNumber)?.uint32Value == message.id)
        #expect(line["bus"] as? String == "can0")
        if let error = expected["error"] as? String {
            // The only cantools rejection of a full-length frame: a multiplexer selecting nothing.
            #expect(error.hasPrefix("expected multiplexer id"), "\(message.name): cantools error \(error)")
            #expect(values.hasUnselectedMultiplexer, "\(message.name) \(frame.payload.hexString): \(error)")
            rejected += 1
            continue
        }
        #expect(!values.hasUnselectedMultiplexer)
        if expected["perSignal"] as? Bool == true {
            #expect(file == "vw_mqb.dbc" && message.name == "PLA_01", "per-signal cantools fallback for \(message.name)")
        }
        let theirs = try #require(expected["signals"] as? [String: Any])
        let present = message.signals.indices.filter { values.isPresent[$0] }
        #expect(Set(present.map { message.signals[$0].name }) == Set(theirs.keys),
                "\(message.name) \(frame.payload.hexString): signal sets differ")
        let printed = try #require(line["signals"] as? [String: Any])
        #expect(Array(printed.keys).sorted() == present.map { message.signals[$0].name }.sorted())
        for i in present {
            let name = message.signals[i].name
            guard let value = theirs[name] else { continue }
            let ours = values.physical[i]
            #expect(matches(ours, value), "\(message.name).\(name) \(frame.payload.hexString): \(ours) vs \(value)")
            if let cliValue = printed[name] as? NSNumber {
                #expect(matches(cliValue.doubleValue, value), "daqctl \(message.name).\(name): \(cliValue) vs \(value)")
            } else {
                #expect(printed[name] is NSNull && !ours.isFinite, "daqctl \(message.name).\(name): null for finite \(ours)")
            }
            checkedSignals += 1
            if message.signals[i].multiplexedBy != nil { selectedMultiplexed += 1 }
        }
    }
    // The multiplexer biasing must leave most frames decodable.
    #expect(rejected < frames.count / 2 || frames.isEmpty)
    if database.messages.contains(where: \.isMultiplexed) {
        #expect(selectedMultiplexed > 0, "multiplexed branches were exercised")
    }
    #expect(checkedSignals > 0 || database.messages.allSatisfy { $0.signals.isEmpty })
}

// The CLI contract around the decoding: stdin, skipped counts, null for NaN, malformed lines.
@Test func decodeCommandContract() throws {
    let daqctl = PackagePaths.executable("daqctl").path
    let dbc = dbcDirectory.appendingPathComponent("floating_point.dbc").path
    let log = """
        (1700000000.000001) can0 400#FFFFFFFFFFFFFFFF
        (1700000000.000002) can0 7FF#00
        (1700000000.000003) can0 400#R
        this is not a candump line
        (1700000000.250000) vcan1 400#000000000000F03F

        """
    let strict = try runProcess(daqctl, ["decode", "--dbc", dbc, "-"], stdin: Data(log.utf8))
    #expect(strict.status != 0)
    #expect(strict.stderr.contains("-:4 [timestamp]: expected '(' before the timestamp"))
    #expect(strict.stdout == "{\"t\": 1700000000.000001, \"bus\": \"can0\", \"id\": 1024, \"name\": \"Message1\", \"signals\": {\"Signal1\": null}}\n")

    let lenient = try runProcess(daqctl, ["decode", "--lenient", "--dbc", dbc, "-"], stdin: Data(log.utf8))
    #expect(lenient.status == 0)
    let lines = lenient.stdout.split(separator: "\n")
    #expect(lines.count == 2)
    #expect(lines.last == "{\"t\": 1700000000.250000, \"bus\": \"vcan1\", \"id\": 1024, \"name\": \"Message1\", \"signals\": {\"Signal1\": 1}}")
    #expect(lenient.stderr.contains("2 frames decoded, 1 skipped (id not in"))
    #expect(lenient.stderr.contains("1 skipped (remote or error frames)"))
    #expect(lenient.stderr.contains("1 malformed lines skipped"))

    let missing = try runProcess(daqctl, ["decode", "--dbc", "/nonexistent/x.dbc", "-"], stdin: Data())
    #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/x.dbc: cannot read the DBC file"))
}

// 64-bit integer signals with no scaling: decode writes the raw value exactly, as cantools gives
// it (it wrote the double: 81985529216486895 as 8.19855292164869e+16), and a value description
// keyed past Int64.max (an unsigned "invalid" code) is loaded, not refused.
@Test func wideIntegersAreDecodedExactlyLikeCantools() throws {
    let work = try PackagePaths.temporaryDirectory("decode-wide")
    let dbc = work.appendingPathComponent("wide.dbc")
    try """
        VERSION ""

        BU_: ECU

        BO_ 100 Wide: 24 ECU
         SG_ BE64 : 7|64@0+ (1,0) [0|0] "" ECU
         SG_ LE64s : 64|64@1- (1,0) [0|0] "" ECU
         SG_ LE64u : 128|64@1+ (1,0) [0|0] "" ECU

        VAL_ 100 LE64u 18446744073709551615 "invalid" 0 "zero" ;

        """.write(to: dbc, atomically: true, encoding: .utf8)
    let log = "(1700000000.000001) can0 064##00123456789ABCDEF0100000000000080FFFFFFFFFFFFFFFF\n"
        + "(1700000000.000002) can0 064##0FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0100000000002000\n"
    let decode = try runProcess(PackagePaths.executable("daqctl").path, ["decode", "--dbc", dbc.path, "-"], stdin: Data(log.utf8))
    #expect(decode.status == 0, "\(decode.stderr)")
    let oracle = try runPython("""
        import cantools, sys, json
        db = cantools.database.load_file(sys.argv[1])
        for line in sys.stdin:
            ident, data = line.split()[2].split("##")
            data = data[1:]
            values = db.decode_message(int(ident, 16), bytes.fromhex(data), decode_choices=False)
            print(json.dumps({k: int(v) for k, v in values.items()}))
        """, [dbc.path], stdin: Data(log.utf8))
    #expect(oracle.status == 0, "\(oracle.stderr)")
    let ours = decode.stdout.split(separator: "\n").map { line -> String in
        // {"t": …, "signals": {"BE64": N, …}} → {"BE64": N, …}
        String(line[line.range(of: "\"signals\": ")!.upperBound...].dropLast())
    }
    let theirs = oracle.stdout.split(separator: "\n").map(String.init)
    #expect(ours.count == 2 && ours == theirs, "ours \(ours)\ncantools \(theirs)")
    #expect(ours.first?.contains("\"BE64\": 81985529216486895") == true)
}
