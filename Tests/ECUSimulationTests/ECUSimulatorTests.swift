// The simulator against the project's own decoder: values in range, cycle times, multiplexer
// cycling, counters, determinism — on the reference engine DBC and on every public DBC.
import DAQCore
import DBC
import ECUSimulation
import Foundation
import Testing
import TestSupport

let engineDBCPath = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
let publicDBCDirectory = PackagePaths.shared.appendingPathComponent("public-data/dbc")
let simulationStart = Timestamp(seconds: 1_700_000_000, microseconds: 0)

func loadDBC(_ path: String) throws -> DBCDatabase {
    try DBCDatabase.parse(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
}

func publicDBCFiles() -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: publicDBCDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".dbc") }.sorted()
}

/// `seconds` of traffic from a fresh simulator.
func simulate(_ database: DBCDatabase, seed: UInt64, seconds: Double) -> (ECUSimulator, [CANFrame]) {
    var simulator = ECUSimulator(database: database, seed: seed, start: simulationStart)
    let end = Timestamp(nanoseconds: simulationStart.nanoseconds + Int64(seconds * 1e9))
    let frames = simulator.frames(until: end)
    return (simulator, frames)
}

/// Decodes every frame and checks each present signal against its range; returns problems.
func rangeProblems(_ database: DBCDatabase, simulator: ECUSimulator, frames: [CANFrame]) -> [String] {
    let decoder = DBCDecoder(database)
    var values = decoder.makeValues()
    var problems: [String] = []
    for frame in frames {
        guard let index = decoder.decode(frame, into: &values) else {
            problems.append("\(frame.candumpLine): not decodable")
            continue
        }
        let message = database.messages[index]
        let models = simulator.signalModels(message: index)
        let overlapped = simulator.overlappedSignals(message: index)
        for (i, signal) in message.signals.enumerated() where values.isPresent[i] && !overlapped.contains(signal.name) {
            let value = values.physical[i]
            let range = models[i].range
            // Where the DBC's [min, max] is usable it is the bound; else what the bits can hold.
            let low = range.followsDBC ? signal.minimum : range.physicalLow
            let high = range.followsDBC ? signal.maximum : range.physicalHigh
            if !(value >= low && value <= high) {
                problems.append("\(message.name).\(signal.name) = \(value) outside [\(low), \(high)] at \(frame.timestamp)")
            }
        }
    }
    return problems
}

@Suite("ECUSimulator on the reference engine DBC")
struct ECUSimulatorTests {
    @Test("frames decode to values inside each signal's [min, max]", arguments: [1, 2, 42] as [UInt64])
    func valuesInRange(seed: UInt64) throws {
        let database = try loadDBC(engineDBCPath)
        let (simulator, frames) = simulate(database, seed: seed, seconds: 2)
        #expect(frames.count > 19_000)
        for index in database.messages.indices {
            for model in simulator.signalModels(message: index) {
                #expect(model.range.followsDBC, "\(model.signal.name): the engine DBC's ranges are all usable")
            }
        }
        let problems = rangeProblems(database, simulator: simulator, frames: frames)
        #expect(problems.isEmpty, "\(problems.prefix(10))")
    }

    @Test("every message appears at its cycle time (count over 3 s within ±1), in time order")
    func cycleTimes() throws {
        let database = try loadDBC(engineDBCPath)
        let seconds = 3.0
        let (_, frames) = simulate(database, seed: 7, seconds: seconds)
        #expect(zip(frames, frames.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })
        var counts: [UInt32: Int] = [:]
        for frame in frames { counts[frame.id, default: 0] += 1 }
        for message in database.messages {
            // Messages without GenMsgCycleTime (the crank-synchronous segments) get the 100 ms default.
            let cycle = Double(message.cycleTime ?? 100) / 1000
            let expected = seconds / cycle
            let count = Double(counts[message.id] ?? 0)
            #expect(abs(count - expected) <= 1, "\(message.name): \(count) frames, expected \(expected)")
        }
        // Consecutive frames of one message are exactly one cycle apart.
        let fast = frames.filter { $0.id == 0x100 }.map(\.timestamp.nanoseconds)
        #expect(Set(zip(fast, fast.dropFirst()).map { $1 - $0 }) == [5_000_000])
    }

    @Test("the multiplexed message cycles through every multiplexer value, only selected signals encoded")
    func multiplexerCycles() throws {
        let database = try loadDBC(engineDBCPath)
        let (_, frames) = simulate(database, seed: 3, seconds: 2)
        let decoder = DBCDecoder(database)
        var values = decoder.makeValues()
        var seen: [UInt64: Set<String>] = [:]
        for frame in frames where frame.id == 1281 {
            decoder.decode(frame, into: &values)
            #expect(!values.hasUnselectedMultiplexer)
            let names = database.messages[decoder.messageIndex(id: 1281, isExtended: false)!].signals.map(\.name)
            let present = Set(names.indices.filter { values.isPresent[$0] }.map { names[$0] })
            seen[values.raw[0], default: []].formUnion(present)
        }
        #expect(seen == [0: ["DiagMux", "DiagOilLevel"], 1: ["DiagMux", "DiagBattery"], 2: ["DiagMux", "DiagRuntime"]])
    }

    @Test("rolling counters increment by one per frame and wrap at the top of their range")
    func countersIncrement() throws {
        let database = try loadDBC(engineDBCPath)
        let (_, frames) = simulate(database, seed: 5, seconds: 3)
        let decoder = DBCDecoder(database)
        var values = decoder.makeValues()
        var counters: [UInt64] = []
        for frame in frames where frame.id == 1280 {
            decoder.decode(frame, into: &values)
            counters.append(values.raw[1])  // EngCounter, 4 bits
        }
        #expect(counters.count == 30)
        #expect(counters == (0..<30).map { UInt64($0 % 16) })
    }

    @Test("signal values change over time (no signal is stuck) except one-value ranges")
    func valuesChange() throws {
        let database = try loadDBC(engineDBCPath)
        let (_, frames) = simulate(database, seed: 9, seconds: 2)
        let decoder = DBCDecoder(database)
        var values = decoder.makeValues()
        var distinct: [String: Set<UInt64>] = [:]
        for frame in frames {
            guard let index = decoder.decode(frame, into: &values) else { continue }
            for (i, signal) in database.messages[index].signals.enumerated() where values.isPresent[i] {
                distinct["\(database.messages[index].name).\(signal.name)", default: []].insert(values.raw[i])
            }
        }
        let stuck = distinct.filter { $0.value.count < 2 }.keys.sorted()
        #expect(stuck.isEmpty, "\(stuck)")
    }

    @Test("deterministic: the same seed gives the same frames, another seed different ones")
    func deterministic() throws {
        let database = try loadDBC(engineDBCPath)
        let a = simulate(database, seed: 11, seconds: 1).1.map(\.candumpLine)
        let b = simulate(database, seed: 11, seconds: 1).1.map(\.candumpLine)
        let c = simulate(database, seed: 12, seconds: 1).1.map(\.candumpLine)
        #expect(a == b)
        #expect(a != c)
        #expect(Set(a).intersection(c).count < a.count / 10)
    }

    @Test("two buses split the messages; every frame goes to one of them")
    func buses() throws {
        let database = try loadDBC(engineDBCPath)
        var simulator = ECUSimulator(database: database, seed: 1, start: simulationStart, buses: ["can0", "can1"])
        let frames = simulator.frames(until: Timestamp(seconds: 1_700_000_001, microseconds: 0))
        #expect(Set(frames.map(\.interface)) == ["can0", "can1"])
        for frame in frames {
            let index = database.messages.firstIndex { $0.id == frame.id }!
            #expect(frame.interface == (index % 2 == 0 ? "can0" : "can1"))
        }
    }
}

@Suite("ECUSimulator on every public DBC (../shared/public-data/dbc, read in place)")
struct PublicDBCSimulationTests {
    @Test("1 s of traffic decodes, in range, every message present", arguments: publicDBCFiles())
    func simulateFile(name: String) throws {
        let path = publicDBCDirectory.appendingPathComponent(name).path
        let database = try loadDBC(path)
        let (simulator, frames) = simulate(database, seed: 1, seconds: 1)
        let problems = rangeProblems(database, simulator: simulator, frames: frames)
        #expect(problems.isEmpty, "\(name): \(problems.count) problems, first: \(problems.prefix(5))")
        let ids = Set(frames.map { "\($0.isExtended ? "x" : "s")\($0.id)" })
        for message in database.messages {
            #expect(ids.contains("\(message.isExtended ? "x" : "s")\(message.id)"), "\(name): \(message.name) never sent")
        }
        // Multiplexed messages: every multiplexer value the simulator cycles through appears.
        let decoder = DBCDecoder(database)
        var values = decoder.makeValues()
        for (index, message) in database.messages.enumerated() where message.isMultiplexed {
            let cycles = simulator.multiplexerCycles(message: index)
            var seen = [Set<Int64>](repeating: [], count: message.signals.count)
            for frame in frames where frame.id == message.id && frame.isExtended == message.isExtended {
                decoder.decode(frame, into: &values)
                for i in message.signals.indices where values.isPresent[i] { seen[i].insert(values.signedRaw(i)) }
            }
            for i in cycles.indices where !cycles[i].isEmpty && message.signals[i].multiplexedBy == nil {
                // Top-level multiplexers must show every value in one second (≥ 10 frames at 100 ms).
                if cycles[i].count <= 10 {
                    #expect(seen[i] == Set(cycles[i]), "\(name) \(message.name).\(message.signals[i].name)")
                }
            }
        }
    }
}

@Suite("ECUSimulator timing of messages without a cycle time")
struct UncycledTimingTests {
    @Test("--event-jitter: intervals vary within 0.5…1.5 × the mean, deterministically")
    func jittered() throws {
        let database = try loadDBC(engineDBCPath)
        func run(_ seed: UInt64) -> [Int64] {
            var simulator = ECUSimulator(database: database, seed: seed, start: simulationStart,
                                         uncycled: .jittered(meanMicroseconds: 20_000))
            let frames = simulator.frames(until: Timestamp(seconds: 1_700_000_004, microseconds: 0))
            return frames.filter { $0.id == 0x300 }.map(\.timestamp.nanoseconds)
        }
        let times = run(4)
        let gaps = zip(times, times.dropFirst()).map { $1 - $0 }
        #expect(gaps.allSatisfy { $0 >= 10_000_000 && $0 <= 30_000_000 })
        #expect(Set(gaps).count > 10, "event-like timing varies")
        // 4 s at a 20 ms mean: about 200 frames.
        #expect(times.count > 150 && times.count < 250)
        #expect(run(4) == times)
        // Cyclic messages keep their cycle exactly.
        var simulator = ECUSimulator(database: database, seed: 4, start: simulationStart,
                                     uncycled: .jittered(meanMicroseconds: 20_000))
        let fast = simulator.frames(until: Timestamp(seconds: 1_700_000_001, microseconds: 0))
            .filter { $0.id == 0x100 }.map(\.timestamp.nanoseconds)
        #expect(Set(zip(fast, fast.dropFirst()).map { $1 - $0 }) == [5_000_000])
    }
}
