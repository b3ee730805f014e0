// `daqctl ecu-sim`: the traffic of the ECU(s) a DBC describes — every message at its cycle time
// with modelled signal values — written to a candump log (byte-exact for a seed) or sent onto
// SocketCAN interfaces on the real monotonic clock. The generator is ECUSimulation's; this file
// only routes, paces and writes.
import ArgumentParser
import DAQCore
import DBC
import ECUSimulation
import Runtime
import SocketCAN
#if canImport(Glibc)
import Glibc
#endif

struct ECUSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecu-sim",
        abstract: "Simulate the ECU(s) of a DBC: every message at its cycle time with changing values.",
        discussion: """
            Messages with a GenMsgCycleTime are sent at that cycle; others every --default-cycle-ms \
            (or, with --event-jitter, at random intervals averaging it). Signal values ramp, swing \
            (sine), wander (bounded noise) or step through their value table, always inside the \
            signal's [min, max]; counters (names with counter/cnt/alive) roll over; multiplexed \
            messages cycle through their multiplexer values, with only the selected signals encoded.

            --log OUT writes a candump -l log whose bytes depend only on the DBC, --seed, \
            --duration, --start and --bus. --to sends the frames live (timestamps are the kernel's \
            there) and prints a per-message summary on stderr at the end or on SIGINT.

            --bus can0,can1 spreads the messages over logical buses (message i on bus i mod n). \
            --to vcan0 sends everything to vcan0; --to can0=vcan0,can1=vcan1 maps logical buses \
            (and names them, when --bus is not given); a bare interface among pairs takes the rest.

            Examples:
              daqctl ecu-sim --dbc engine.dbc --log sim.log --duration 10 --seed 7
              daqctl ecu-sim --dbc engine.dbc --to vcan0 --duration 60
              daqctl ecu-sim --dbc engine.dbc --to can0=vcan0,can1=vcan1
            """
    )

    @Option(help: "The DBC file describing the messages to simulate.")
    var dbc: String

    @Option(name: .customLong("to"), help: "Send live: IFACE, or BUS=IFACE pairs, comma-separated.")
    var target: String?

    @Option(name: .customLong("log"), help: "Write a candump -l log to this file (- for standard output) instead of sending.")
    var logPath: String?

    @Option(help: "Seconds of traffic, at most 10^7 (default: 10 for --log; until SIGINT for --to).")
    var duration: Double?

    @Option(help: "Seed for phases, waveforms and noise.")
    var seed: UInt64 = 1

    @Option(name: .customLong("bus"), help: "Logical bus names, comma-separated (default can0).")
    var busNames: String?

    @Option(name: .customLong("start"), help: "Timestamp of the first instant in the log (Unix seconds, 0 to 4102444800).")
    var startSeconds: Int64 = 1_700_000_000

    @Option(name: .customLong("default-cycle-ms"), help: "Cycle of messages without GenMsgCycleTime, in ms.")
    var defaultCycleMilliseconds: Double = 100

    @Flag(name: .customLong("event-jitter"), help: "Time messages without a cycle like events (random intervals).")
    var eventJitter = false

    func validate() throws {
        guard (target == nil) != (logPath == nil) else { throw ValidationError("give exactly one of --to and --log") }
        if let duration, !(duration > 0 && duration <= Self.longestDuration) {
            throw ValidationError("--duration must be more than 0 and at most \(Int(Self.longestDuration)) s (115 days), not \(duration)")
        }
        // A log's timestamps are seconds since 1970 that daqctl reads back: none before it, none
        // past 2100 (nanoseconds since 1970 stay within 64 bits with the longest duration on top).
        guard (0...Self.latestStart).contains(startSeconds) else {
            throw ValidationError("--start must be Unix seconds from 0 to \(Self.latestStart) (the year 2100), not \(startSeconds)")
        }
        guard defaultCycleMilliseconds >= 0.001 && defaultCycleMilliseconds.isFinite else {
            throw ValidationError("--default-cycle-ms must be at least 0.001")
        }
        _ = try routing()
        if let busNames {
            guard !logicalBuses(busNames).isEmpty else { throw ValidationError("--bus needs at least one name") }
            guard !busNames.split(separator: ",", omittingEmptySubsequences: false).contains(where: { $0.allSatisfy { $0 == " " } }) else {
                throw ValidationError("--bus '\(busNames)' has an empty name between its commas")
            }
        }
    }

    /// The longest --duration: 10^7 s.
    static let longestDuration = 10_000_000.0
    /// The latest --start: 2100-01-01.
    static let latestStart: Int64 = 4_102_444_800

    /// The interface for frames of unmapped buses (a bare name in --to) and the BUS=IFACE pairs.
    private func routing() throws -> (fallback: String?, map: [(bus: String, interface: String)]) {
        guard let target else { return (nil, []) }
        var fallback: String?
        var map: [(bus: String, interface: String)] = []
        for item in target.split(separator: ",") {
            let sides = item.split(separator: "=", omittingEmptySubsequences: false)
            if sides.count == 1, !item.isEmpty, fallback == nil {
                fallback = String(item)
            } else if sides.count == 2, !sides[0].isEmpty, !sides[1].isEmpty {
                map.append((String(sides[0]), String(sides[1])))
            } else {
                throw ValidationError("--to: '\(item)' is not IFACE or BUS=IFACE (one bare IFACE at most)")
            }
        }
        guard fallback != nil || !map.isEmpty else { throw ValidationError("--to needs an interface") }
        return (fallback, map)
    }

    private func logicalBuses(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
    }

    func run() throws {
        let database: DBCDatabase
        do {
            database = try DecodeCommand.loadDatabase(path: dbc)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        guard !database.messages.isEmpty else {
            printError("\(dbc): the DBC has no messages to simulate")
            throw ExitCode(1)
        }
        let route = try routing()
        // Without --bus, the buses named in --to pairs are the logical buses; else one, can0.
        let buses = busNames.map(logicalBuses) ?? (route.map.isEmpty ? ["can0"] : route.map.map(\.bus))
        let micros = Int64((defaultCycleMilliseconds * 1000).rounded())
        let simulator = ECUSimulator(
            database: database, seed: seed, start: Timestamp(seconds: startSeconds, microseconds: 0), buses: buses,
            uncycled: eventJitter ? .jittered(meanMicroseconds: micros) : .periodic(microseconds: micros))
        if let logPath {
            try writeLog(simulator, to: logPath, seconds: duration ?? 10)
        } else {
            try sendLive(simulator, route: route, buses: buses)
        }
    }

    /// Writes `seconds` of traffic as candump -l text.
    private func writeLog(_ simulator: ECUSimulator, to path: String, seconds: Double) throws {
        var simulator = simulator
        // "-": standard output, as `frames` and `decode` read "-" as standard input.
        let fd = path == "-" ? 1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            printError("\(DAQError(.io, "cannot create: \(String(cString: strerror(errno)))", at: InputLocation(file: path)))")
            throw ExitCode(1)
        }
        defer { if fd != 1 { close(fd) } }
        let end = Timestamp(nanoseconds: simulator.start.nanoseconds + Int64((seconds * 1e6).rounded()) * 1_000)
        var text = ""
        text.reserveCapacity(1 << 20)
        var count = 0
        while let time = simulator.nextTimestamp, time < end, let frame = simulator.next() {
            text += frame.candumpLine
            text += "\n"
            count += 1
            if text.utf8.count >= 1 << 20 {
                guard writeFully(text, to: fd) else { throw writeFailure(path) }
                text.removeAll(keepingCapacity: true)
            }
        }
        guard writeFully(text, to: fd) else { throw writeFailure(path) }
        printError("ecu-sim: \(count) frames of \(simulator.database.messages.count) messages over \(seconds) s written to \(path)")
    }

    /// Sends frames on the real monotonic clock until the duration ends or SIGINT/SIGTERM.
    private func sendLive(_ simulator: ECUSimulator, route: (fallback: String?, map: [(bus: String, interface: String)]),
                          buses: [String]) throws {
        var simulator = simulator
        var interfaceOfBus: [String: String] = [:]
        for bus in buses { interfaceOfBus[bus] = route.fallback }
        for pair in route.map { interfaceOfBus[pair.bus] = pair.interface }
        let interfaces = Array(Set(interfaceOfBus.values)).sorted()
        let set: SocketCANBusSet
        do {
            set = try SocketCANBusSet(interfaces: interfaces, configuration: SocketCANBus.Configuration())
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
        var indexOfBus: [String: Int] = [:]
        for (bus, interface) in interfaceOfBus {
            indexOfBus[bus] = set.buses.firstIndex { $0.interface == interface }
        }
        printError("ecu-sim: sending \(simulator.database.messages.count) messages on \(interfaces.joined(separator: ","))")

        StopSignal.install()
        var stats = LiveStatistics(messages: simulator.database.messages.count)
        let origin = SystemClock.monotonicNow()
        let startNanoseconds = simulator.start.nanoseconds
        let end = duration.map { startNanoseconds + waitNanoseconds(seconds: $0) }
        do throws(LiveStop) {
            while let time = simulator.nextTimestamp, end.map({ time.nanoseconds < $0 }) ?? true {
                if StopSignal.isRaised { throw .interrupted }
                let deadline = origin + (time.nanoseconds - startNanoseconds)
                while SystemClock.monotonicNow() < deadline {
                    if !SystemClock.sleep(until: deadline), StopSignal.isRaised { throw .interrupted }
                }
                guard let frame = simulator.next() else { break }
                guard let index = indexOfBus[frame.interface] else { stats.skipped += 1; continue }
                try send(frame, on: index, of: set, stats: &stats)
                stats.perMessage[stats.messageIndex(of: frame, in: simulator)] += 1
            }
        } catch .failed(let error) {
            printError("\(error)")
            stats.print(simulator: simulator, elapsed: SystemClock.monotonicNow() - origin)
            throw ExitCode(1)
        } catch .interrupted {
            // SIGINT: the summary below is the whole point of stopping cleanly.
        }
        stats.print(simulator: simulator, elapsed: SystemClock.monotonicNow() - origin)
    }

    /// Sends one frame, waiting for room (POLLOUT) while the socket's queue is full.
    private func send(_ frame: CANFrame, on index: Int, of set: SocketCANBusSet,
                      stats: inout LiveStatistics) throws(LiveStop) {
        while true {
            let outcome: SocketCANBus.SendOutcome
            do throws(DAQError) { outcome = try set.buses[index].send(frame) } catch { throw .failed(error) }
            if outcome == .sent { break }
            stats.waitsForRoom += 1
            let ready: BusReadiness
            do throws(DAQError) {
                ready = try set.wait(timeoutNanoseconds: 100_000_000, wantWritable: [index])
            } catch { throw .failed(error) }
            if ready.interrupted && StopSignal.isRaised { throw .interrupted }
        }
        stats.sent += 1
    }

    private func writeFailure(_ path: String) -> Error {
        printError("\(DAQError(.io, "write failed: \(String(cString: strerror(errno)))", at: InputLocation(file: path)))")
        return ExitCode(1)
    }
}

/// Why live sending ended early.
private enum LiveStop: Error {
    case interrupted
    case failed(DAQError)
}

/// Counters of a live run, printed as the summary.
private struct LiveStatistics {
    var sent = 0
    var skipped = 0
    var waitsForRoom = 0
    var perMessage: [Int]

    init(messages: Int) { perMessage = [Int](repeating: 0, count: messages) }

    /// The message a frame was generated for (ids are unique per kind in a sane DBC; the first wins).
    func messageIndex(of frame: CANFrame, in simulator: ECUSimulator) -> Int {
        simulator.database.messages.firstIndex { $0.id == frame.id && $0.isExtended == frame.isExtended } ?? 0
    }

    func print(simulator: ECUSimulator, elapsed: Int64) {
        let seconds = Double(elapsed) / 1e9
        let rate = seconds > 0 ? Int(Double(sent) / seconds) : 0
        printError("ecu-sim summary: sent=\(sent) skipped=\(skipped) elapsed=\((seconds * 1000).rounded() / 1000)s "
                   + "rate=\(rate)/s waits-for-room=\(waitsForRoom)")
        for (index, message) in simulator.database.messages.enumerated() {
            let id = String(message.id, radix: 16, uppercase: true)
            printError("  \(message.name) id=0x\(id) cycle=\(message.cycleTime.map { "\($0)ms" } ?? "none") frames=\(perMessage[index])")
        }
    }
}

/// Writes all of `text` to `fd`; false on a write error.
private func writeFully(_ text: String, to fd: Int32) -> Bool {
    var text = text
    return text.withUTF8 { bytes -> Bool in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }
}
