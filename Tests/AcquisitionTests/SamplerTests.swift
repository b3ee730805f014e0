// The sampler under time that the test controls: exact tick times, sample-and-hold,
// invalidation bits, event triggers, determinism.
import Testing
import TestSupport
import DAQCore
@testable import Acquisition

private let ms: Int64 = 1_000_000

/// A decoded record, read back from its bytes.
private struct Decoded: Equatable {
    var group: Int
    var seconds: Double
    var values: [UInt64]
    var invalid: [Bool]
}

private func decode(_ buffer: RecordBuffer, _ sampler: Sampler) -> [Decoded] {
    (0..<buffer.count).map { index in
        buffer.withPayload(index) { raw -> Decoded in
            let group = RecordPayload.groupIndex(raw)
            let layout = sampler.layouts[group]
            let base = RecordPayload.headerBytes
            let seconds = Double(bitPattern: raw.loadUnaligned(fromByteOffset: base, as: UInt64.self))
            var values: [UInt64] = []
            var invalid: [Bool] = []
            for (i, channel) in sampler.groups[group].channels.enumerated() {
                let offset = base + layout.valueOffsets[i]
                var v: UInt64 = 0
                for b in 0..<channel.storage.byteCount { v |= UInt64(raw[offset + b]) << (8 * UInt64(b)) }
                values.append(v)
                invalid.append(raw[base + layout.dataBytes + i / 8] & (1 << UInt8(i % 8)) != 0)
            }
            #expect(raw.count == base + layout.recordBytes)
            return Decoded(group: group, seconds: seconds, values: values, invalid: invalid)
        }
    }
}

@Suite struct SamplerTests {
    let groups = [
        ChannelGroup(name: "Time 5ms", trigger: .raster(periodNanoseconds: 5 * ms), channels: [
            ChannelSpec(name: "M.A", storage: .unsigned(bits: 16)),
            ChannelSpec(name: "M.B", storage: .float32),
        ]),
        ChannelGroup(name: "Time 10ms", trigger: .raster(periodNanoseconds: 10 * ms), channels: [
            ChannelSpec(name: "M.A", storage: .float64),
        ]),
        ChannelGroup(name: "Seg 1", trigger: .message("Seg"), channels: [
            ChannelSpec(name: "S.X", storage: .signed(bits: 8)),
        ]),
        ChannelGroup(name: "On change", trigger: .signalChange("M.A"), channels: [
            ChannelSpec(name: "M.A", storage: .unsigned(bits: 16)),
        ]),
    ]

    @Test func layoutIsAnMDFRecord() {
        let layout = RecordLayout(groups[0])
        #expect(layout.valueOffsets == [8, 10])
        #expect(layout.dataBytes == 14)
        #expect(layout.invalidationBytes == 1)
        #expect(RecordLayout(ChannelGroup(name: "x", trigger: .message("m"),
            channels: (0..<9).map { ChannelSpec(name: "c\($0)", storage: .float64) })).invalidationBytes == 2)
    }

    @Test func rasterTicksAtMultiplesOfThePeriodWithSampleAndHold() {
        var sampler = Sampler(groups: groups, messageKeys: ["Seg": 7])
        var out = RecordBuffer()
        let a16 = sampler.slots(for: "M.A").first { $0.storage == .unsigned(bits: 16) }!.slot
        let a64 = sampler.slots(for: "M.A").first { $0.storage == .float64 }!.slot
        // First frame at 3 ms: measurement starts, first 5 ms tick at 5 ms, first 10 ms tick at 10 ms.
        sampler.advance(to: Timestamp(nanoseconds: 3 * ms), into: &out)
        sampler.update(slot: a16, raw: 100, physical: 10.0)
        sampler.update(slot: a64, raw: 100, physical: 10.0)
        sampler.frameApplied(message: 1, at: Timestamp(nanoseconds: 3 * ms), into: &out)
        // Next frame at 12 ms: ticks at 5 and 10 ms (5ms group) and 10 ms (10ms group) come first.
        sampler.advance(to: Timestamp(nanoseconds: 12 * ms), into: &out)
        let records = decode(out, sampler)
        // The change-triggered group fired at 3 ms (first value counts as a change).
        #expect(records.map(\.group) == [3, 0, 0, 1])
        #expect(records.map(\.seconds) == [0, 0.002, 0.007, 0.007])
        #expect(records[1].values[0] == 100)
        #expect(records[1].invalid == [false, true], "M.B never received: invalidation bit set")
        #expect(records[3].values[0] == (10.0).bitPattern)
        #expect(sampler.nextTickTime == Timestamp(nanoseconds: 15 * ms))
    }

    @Test func aFrameAtTheTickTimeIsSeenByTheNextTick() {
        var sampler = Sampler(groups: [groups[0]])
        var out = RecordBuffer()
        let slot = sampler.slots(for: "M.A")[0].slot
        sampler.advance(to: Timestamp(nanoseconds: 0), into: &out)
        sampler.update(slot: slot, raw: 1, physical: 1)
        sampler.advance(to: Timestamp(nanoseconds: 5 * ms), into: &out)
        sampler.update(slot: slot, raw: 2, physical: 2)
        sampler.advance(to: Timestamp(nanoseconds: 5 * ms + 1), into: &out)
        #expect(decode(out, sampler).map { $0.values[0] } == [1, 2])
    }

    /// Two groups on the change of a signal neither records, and a change group before the
    /// raster group that records the signal as float64: every group records. (Each change group
    /// made its own float64 slot of the name, replacing the one before: the first group never
    /// recorded, and the later float64 channel was never fed.)
    @Test func changeGroupsWatchEverySlotOfTheirSignalWhateverGroupRecordsIt() {
        let watchers = [
            ChannelGroup(name: "chgA", trigger: .signalChange("M.S"), channels: [ChannelSpec(name: "M.T", storage: .unsigned(bits: 8))]),
            ChannelGroup(name: "chgB", trigger: .signalChange("M.S"), channels: [ChannelSpec(name: "M.T", storage: .unsigned(bits: 8))]),
            ChannelGroup(name: "raster", trigger: .raster(periodNanoseconds: 10 * ms), channels: [ChannelSpec(name: "M.S", storage: .float64)]),
        ]
        var sampler = Sampler(groups: watchers)
        var out = RecordBuffer()
        let slots = sampler.slots(for: "M.S")
        #expect(slots.count == 1, "one float64 slot of M.S: \(slots)")
        for (t, value) in [(1, 1.0), (2, 2.0), (3, 2.0), (25, 3.0)] {
            sampler.advance(to: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
            for (slot, _) in sampler.slots(for: "M.S") { sampler.update(slot: slot, raw: 0, physical: value) }
            sampler.frameApplied(message: nil, at: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
        }
        let records = decode(out, sampler)
        #expect(records.filter { $0.group == 0 }.count == 3 && records.filter { $0.group == 1 }.count == 3, "\(records.map(\.group))")
        let raster = records.filter { $0.group == 2 }
        #expect(raster.map { Double(bitPattern: $0.values[0]) } == [2.0, 2.0] && raster.allSatisfy { !$0.invalid[0] }, "\(raster)")
    }

    @Test func eventGroupsRecordOnMessageAndOnChangeOnly() {
        var sampler = Sampler(groups: [groups[2], groups[3]], messageKeys: ["Seg": 7])
        var out = RecordBuffer()
        let x = sampler.slots(for: "S.X")[0].slot
        let a = sampler.slots(for: "M.A")[0].slot
        for (t, value) in [(1, -3), (2, -3), (3, -4)] {
            sampler.advance(to: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
            sampler.update(slot: x, raw: Int64(value), physical: Double(value))
            sampler.frameApplied(message: 7, at: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
        }
        for (t, value) in [(4, 9), (5, 9), (6, 10)] {
            sampler.advance(to: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
            sampler.update(slot: a, raw: Int64(value), physical: Double(value))
            sampler.frameApplied(message: 1, at: Timestamp(nanoseconds: Int64(t) * ms), into: &out)
        }
        let records = decode(out, sampler)
        #expect(records.map(\.group) == [0, 0, 0, 1, 1])
        #expect(records[0].values == [0xFD], "signed raw -3 in 8 bits")
        #expect(records[2].values == [0xFC])
        #expect(records.suffix(2).map { $0.values[0] } == [9, 10])
        #expect(records.map(\.seconds) == [0, 0.001, 0.002, 0.003, 0.005])
    }

    @Test(arguments: [1, 7, 42])
    func sameInputSameBytes(seed: UInt64) {
        func run() -> [UInt8] {
            var rng = SeededGenerator(seed: seed)
            var sampler = Sampler(groups: groups, messageKeys: ["Seg": 7])
            var out = RecordBuffer()
            var t: Int64 = 1_700_000_000_000 * ms / 1000
            let slots = ["M.A", "M.B", "S.X"].flatMap { sampler.slots(for: $0).map(\.slot) }
            for _ in 0..<2_000 {
                t += Int64(rng.next() % 3_000_000)
                sampler.advance(to: Timestamp(nanoseconds: t), into: &out)
                let slot = slots[Int(rng.next() % UInt64(slots.count))]
                let raw = Int64(rng.next() % 300)
                sampler.update(slot: slot, raw: raw, physical: Double(raw) * 0.5)
                sampler.frameApplied(message: Int(rng.next() % 8), at: Timestamp(nanoseconds: t), into: &out)
            }
            return out.bytes
        }
        let first = run()
        #expect(!first.isEmpty)
        #expect(first == run())
    }
}


@Suite struct MeasurementLayoutTests {
    let layout = MeasurementLayout(start: Timestamp(nanoseconds: 1_763_700_000_000_049_000), experiment: "reference", groups: [
        ChannelGroup(name: "Time 5ms", trigger: .raster(periodNanoseconds: 5_000_000), channels: [
            ChannelSpec(name: "EngStatus.EngState", unit: "", storage: .unsigned(bits: 8), factor: 1, offset: 0,
                        valueTable: [(0, "Off"), (1, "Crank")]),
            ChannelSpec(name: "Eng.Temp", unit: "degC", storage: .float32),
        ]),
        ChannelGroup(name: "Seg 1", trigger: .message("Seg1_00"), channels: [
            ChannelSpec(name: "Seg1_00.S0", unit: "deg", storage: .signed(bits: 16), factor: 0.1, offset: -40),
        ]),
        ChannelGroup(name: "Changes", trigger: .signalChange("EngStatus.EngState"), channels: []),
    ])

    @Test func roundTrips() throws {
        let bytes = layout.encoded()
        let back = try bytes.withUnsafeBytes { try MeasurementLayout(decoding: $0) }
        #expect(back == layout)
    }

    @Test func everyTruncationIsAnErrorNotACrash() {
        let bytes = layout.encoded()
        for cut in 0..<bytes.count {
            #expect(throws: DAQError.self) {
                try Array(bytes[0..<cut]).withUnsafeBytes { try MeasurementLayout(decoding: $0) }
            }
        }
    }
}
