// `daqctl decode`: a CAN log decoded with a DBC into JSON lines, one per known frame.
// The hot path formats into one byte buffer written in 1 MiB chunks; no String per frame.
import Agent
import ArgumentParser
import CANLogs
import DAQCore
import DBC
import Foundation
import SystemIO

struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode a CAN log with a DBC file into JSON lines of physical signal values.",
        discussion: """
            Every data frame whose id is in the DBC becomes one JSON object on standard output, \
            with the log's timestamp in seconds (t, microseconds), the interface (bus), the 11- or \
            29-bit identifier (id), the message name and the physical signal values \
            (raw × factor + offset) in DBC order:

              {"t": 1700000000.123456, "bus": "can0", "id": 291,
               "name": "Engine", "signals": {"Speed": 1250.5, "Temp": 88}}

            (one line per frame). For a multiplexed message only the signals selected by its \
            multiplexer value(s) appear. Value tables are not applied. NaN and infinite float \
            values print as null. Signals that end beyond a frame's data (a frame shorter than \
            the message) are left out.

            Frames with ids not in the DBC, and remote/error frames, are skipped and counted on \
            standard error. A malformed log line stops the command with file:line [field]; with \
            --lenient such lines are skipped and counted instead. The log format (candump -l, \
            Vector ASC, PCAN TRC) comes from the extension, else from the first line; --format forces it.

            Examples:
              daqctl decode --dbc vehicle.dbc drive.log > drive.jsonl
              daqctl decode --dbc vehicle.dbc drive.log | jq '.signals.Speed'
              candump -L can0 | daqctl decode --dbc vehicle.dbc -
            """
    )

    @Option(help: "The DBC file describing the messages.")
    var dbc: String

    @Argument(help: "The log file (candump -l, .asc or .trc; '-' for standard input).")
    var log: String

    @Option(help: "Read the log as this format instead of detecting it (candump, asc, trc).")
    var format: CANLogFormat?

    @Flag(help: "Skip malformed log lines (counted on standard error) instead of stopping at the first.")
    var lenient = false

    func run() throws {
        var output: DecodeOutput
        var counts = (decoded: 0, unknown: 0, notData: 0, malformed: 0)
        do {
            let database = try Self.loadDatabase(path: dbc)
            guard !database.messages.isEmpty else {
                throw DAQError(.malformedInput, "the DBC has no messages to decode with (no BO_ line)", at: InputLocation(file: dbc))
            }
            let decoder = DBCDecoder(database)
            output = DecodeOutput(decoder: decoder)
            var values = decoder.makeValues()
            let source = try LogFrameSource(path: log, format: format, lenient: lenient, formatOption: "--format")
            do {
                try source.forEachFrame { frame in
                    guard frame.kind == .data else { counts.notData += 1; return }
                    guard let message = decoder.decode(frame, into: &values) else { counts.unknown += 1; return }
                    counts.decoded += 1
                    output.append(frame: frame, message: message, values: values)
                }
            } catch {
                counts.malformed = source.malformedLines
                output.flush()
                throw error
            }
            counts.malformed = source.malformedLines
        } catch {
            writeError("\(error)\n")
            throw ExitCode(1)
        }
        output.flush()
        var summary = "daqctl decode: \(counts.decoded) frames decoded, \(counts.unknown) skipped (id not in \(dbc))"
        if counts.notData > 0 { summary += ", \(counts.notData) skipped (remote or error frames)" }
        if counts.malformed > 0 { summary += ", \(counts.malformed) malformed lines skipped" }
        writeError(summary + "\n")
    }

    private func writeError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Reads and parses a DBC file (the pure DBC module does no I/O).
    static func loadDatabase(path: String) throws -> DBCDatabase {
        try ExperimentLoader.loadDBC(path: path)
    }
}

/// JSON lines for decoded frames, formatted into one buffer and written to stdout in large chunks.
struct DecodeOutput {
    private var buffer: [UInt8] = []
    /// All names pre-rendered as JSON into one flat table (no nested arrays to retain per frame):
    /// per message `, "id": N, "name": "X", "signals": {`, per signal `"S": `.
    private let text: [UInt8]
    /// Per message: range of its head in `text`.
    private let heads: [Range<Int>]
    /// Per message: index of its first signal key in `keys`.
    private let firstKey: [Int]
    /// Per signal (all messages, in order): range of its key in `text`.
    private let keys: [Range<Int>]
    /// Per signal: an integer signal whose physical value is its raw value (factor 1, offset 0)
    /// wider than a double's 53 bits, written from the raw bits exactly (1 unsigned, 2 signed);
    /// 0: the physical double (2^53 + 1 printed as 2^53, 2^64 − 1 as 1.8446744073709552e19).
    private let exact: [UInt8]
    private var lastInterface = ""
    private var lastInterfaceJSON: [UInt8] = []
    private static let flushSize = 1 << 20

    init(decoder: DBCDecoder) {
        var text: [UInt8] = []
        var heads: [Range<Int>] = []
        var firstKey: [Int] = []
        var keys: [Range<Int>] = []
        var exact: [UInt8] = []
        for message in decoder.database.messages {
            let start = text.count
            text += Array(", \"id\": \(message.id), \"name\": ".utf8) + jsonString(message.name)
                + Array(", \"signals\": {".utf8)
            heads.append(start..<text.count)
            firstKey.append(keys.count)
            for signal in message.signals {
                let keyStart = text.count
                text += jsonString(signal.name) + Array(": ".utf8)
                keys.append(keyStart..<text.count)
                let identity = signal.valueType == .integer && signal.factor == 1 && signal.offset == 0 && signal.length > 53
                exact.append(identity ? (signal.isSigned ? 2 : 1) : 0)
            }
        }
        self.text = text
        self.exact = exact
        self.heads = heads
        self.firstKey = firstKey
        self.keys = keys
        buffer.reserveCapacity(Self.flushSize + 64 * 1024)
    }

    mutating func append(frame: CANFrame, message: Int, values: borrowing SignalValues) {
        buffer.append(contentsOf: "{\"t\": ".utf8)
        appendTimestamp(frame.timestamp.nanoseconds)
        buffer.append(contentsOf: ", \"bus\": ".utf8)
        if frame.interface != lastInterface {
            lastInterface = frame.interface
            lastInterfaceJSON = jsonString(frame.interface)
        }
        buffer.append(contentsOf: lastInterfaceJSON)
        text.withUnsafeBufferPointer { text in
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: text[heads[message]]))
            let first = firstKey[message]
            var separator = false
            for i in 0..<values.count where values.isPresent[i] {
                if separator { buffer.append(contentsOf: ", ".utf8) }
                separator = true
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: text[keys[first + i]]))
                switch exact[first + i] {
                case 0: appendNumber(values.physical[i])
                case 1: appendInteger(values.raw[i])
                default:
                    let signed = values.signedRaw(i)
                    if signed < 0 { buffer.append(UInt8(ascii: "-")) }
                    appendInteger(signed.magnitude)
                }
            }
        }
        buffer.append(contentsOf: "}}\n".utf8)
        if buffer.count >= Self.flushSize { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    /// Seconds with six decimals.
    private mutating func appendTimestamp(_ nanoseconds: Int64) {
        var micros = nanoseconds / 1_000
        if micros < 0 {
            buffer.append(UInt8(ascii: "-"))
            micros = -micros
        }
        appendInteger(UInt64(micros / 1_000_000))
        buffer.append(UInt8(ascii: "."))
        var fraction = micros % 1_000_000
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { out in
            for k in stride(from: 5, through: 0, by: -1) {
                out[k] = UInt8(ascii: "0") + UInt8(fraction % 10)
                fraction /= 10
            }
        }
        withUnsafeBytes(of: digits) { buffer.append(contentsOf: $0) }
    }

    /// JSON number: integral values as integers, others in Swift's shortest round-trip form, NaN/inf as null.
    private mutating func appendNumber(_ value: Double) {
        guard value.isFinite else {
            buffer.append(contentsOf: "null".utf8)
            return
        }
        if value == value.rounded(), abs(value) < 1e15 {
            if value < 0 { buffer.append(UInt8(ascii: "-")) }
            appendInteger(UInt64(abs(value)))
            return
        }
        buffer.append(contentsOf: value.description.utf8)
    }

    private mutating func appendInteger(_ value: UInt64) {
        if value < 10 {
            buffer.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { out -> Int in
            var rest = value
            var index = out.count
            while rest > 0 {
                index -= 1
                out[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            return out.count - index
        }
        withUnsafeBytes(of: digits) { buffer.append(contentsOf: $0[($0.count - count)...]) }
    }
}

/// A JSON string literal (quotes, backslashes and control characters escaped).
private func jsonString(_ text: String) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "\"")]
    let hex = Array("0123456789abcdef".utf8)
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            out.append(UInt8(ascii: "\\"))
            out.append(byte)
        case 0..<0x20:
            out.append(contentsOf: "\\u00".utf8)
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        default:
            out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
    return out
}
