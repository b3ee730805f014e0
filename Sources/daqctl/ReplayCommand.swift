// `daqctl replay`: writes a recorded log's frames to SocketCAN interfaces at the log's own timing
// (or faster), what can-utils' canplayer does, paced by DAQCore's ReplayPacer on CLOCK_MONOTONIC.
import ArgumentParser
import CANLogs
import DAQCore
import SocketCAN
import Runtime
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Write a CAN log's frames to SocketCAN interfaces at original timing (like canplayer).",
        discussion: """
            --to vcan0 sends every frame to vcan0; --to can0=vcan0,can1=vcan1 maps the log's \
            interfaces (frames of unmapped interfaces are skipped). A summary goes to stderr.
            """
    )

    @Option(name: .customLong("to"), help: "Target interface, or LOGIFACE=IFACE pairs, comma-separated.")
    var target: String

    @Argument(help: "The log file (candump -l; '-' for standard input).")
    var log: String

    @Option(help: "Speed: 1 (original timing), 2 (twice as fast), 0.5, or max.")
    var speed: String = "1"

    @Flag(name: .customLong("loop"), help: "Start over at the end of the log until interrupted.")
    var loopForever = false

    func validate() throws {
        guard ReplaySpeed(argument: speed) != nil else {
            throw ValidationError("--speed must be a positive number or max")
        }
        _ = try routing()
        if loopForever && log == "-" { throw ValidationError("--loop needs a file: standard input can be read only once") }
    }

    /// nil: everything to one interface; else log interface → target interface.
    private func routing() throws -> (single: String?, map: [String: String]) {
        if !target.contains("=") {
            guard !target.isEmpty, !target.contains(",") else { throw ValidationError("--to needs one interface or LOG=IFACE pairs") }
            return (target, [:])
        }
        var map: [String: String] = [:]
        for pair in target.split(separator: ",") {
            let sides = pair.split(separator: "=", omittingEmptySubsequences: false)
            guard sides.count == 2, !sides[0].isEmpty, !sides[1].isEmpty else {
                throw ValidationError("--to: '\(pair)' is not LOGIFACE=IFACE")
            }
            map[String(sides[0])] = String(sides[1])
        }
        return (nil, map)
    }

    func run() throws {
        let route = try routing()
        let speed = ReplaySpeed(argument: speed) ?? .original
        let targets = route.single.map { [$0] } ?? Array(Set(route.map.values)).sorted()
        // The log first: a missing or unreadable one is named before any bus is opened.
        if log != "-" { _ = try LogFrameSource(path: log) }
        let buses = try SocketCANBusSet(interfaces: targets, configuration: SocketCANBus.Configuration())
        var busIndex: [String: Int] = [:]
        for (index, bus) in buses.buses.enumerated() { busIndex[bus.interface] = index }

        StopSignal.install()
        var stats = ReplayStatistics()
        let started = SystemClock.monotonicNow()
        repeat {
            let sentBefore = stats.sent
            var pacer = ReplayPacer(speed: speed)
            let source = try LogFrameSource(path: log)
            var stop: ReplayStop?
            while stop == nil, try source.read(maxLines: 4096, { (frame) throws(DAQError) -> Bool in
                if StopSignal.isRaised { stop = .interrupted; return false }
                guard let index = route.single != nil ? 0 : route.map[frame.interface].flatMap({ busIndex[$0] }) else {
                    stats.skipped += 1
                    return true
                }
                if let deadline = pacer.deadline(for: frame.timestamp, now: SystemClock.monotonicNow()) {
                    while SystemClock.monotonicNow() < deadline {
                        if !SystemClock.sleep(until: deadline), StopSignal.isRaised { stop = .interrupted; return false }
                    }
                    stats.maxLateness = max(stats.maxLateness, SystemClock.monotonicNow() - deadline)
                }
                do throws(ReplayStop) { try send(frame, on: index, of: buses, stats: &stats) } catch {
                    stop = error
                    return false
                }
                return true
            }) {}
            if case .interrupted = stop { break }
            if case .failed(let error) = stop { throw error }
            stats.passes += 1
            // A log with nothing to send would make --loop spin without pause.
            if stats.sent == sentBefore { break }
        } while loopForever && !StopSignal.isRaised

        let elapsed = Double(SystemClock.monotonicNow() - started) / 1e9
        let rate = elapsed > 0 ? Double(stats.sent) / elapsed : 0
        printError("replay summary: sent=\(stats.sent) skipped=\(stats.skipped) passes=\(stats.passes) "
                   + "elapsed=\(formatted(elapsed))s rate=\(Int(rate))/s speed=\(speed) "
                   + "max-late=\(formatted(Double(stats.maxLateness) / 1e6))ms waits-for-room=\(stats.waitsForRoom)")
    }

    /// Sends one frame, waiting for POLLOUT while the socket has no room.
    private func send(_ frame: CANFrame, on index: Int, of buses: SocketCANBusSet,
                      stats: inout ReplayStatistics) throws(ReplayStop) {
        while true {
            let outcome: SocketCANBus.SendOutcome
            do throws(DAQError) { outcome = try buses.buses[index].send(frame) } catch { throw .failed(error) }
            if outcome == .sent { break }
            stats.waitsForRoom += 1
            let ready: BusReadiness
            do throws(DAQError) {
                ready = try buses.wait(timeoutNanoseconds: 100_000_000, wantWritable: [index])
            } catch { throw .failed(error) }
            if ready.interrupted && StopSignal.isRaised { throw .interrupted }
        }
        stats.sent += 1
    }
}

/// Why a replay pass ended early.
private enum ReplayStop: Error {
    case interrupted
    case failed(DAQError)
}

private struct ReplayStatistics {
    var sent = 0
    var skipped = 0
    var passes = 0
    var waitsForRoom = 0
    /// Worst delay (ns) between a frame's deadline and the moment it was due to be sent.
    var maxLateness: Int64 = 0
}

private func formatted(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return String(scaled)
}
