// MDF4 files checked by asammdf (PyPI), the outside oracle: every channel's samples and
// timestamps as asammdf reads them equal what the sampler recorded.
import Foundation
import Testing
import DAQCore
import Acquisition
import TestSupport
@testable import MDF

@Suite struct MDFWriterTests {
    static let groups = [
        ChannelGroup(name: "Time 5ms", trigger: .raster(periodNanoseconds: 5_000_000), channels: [
            ChannelSpec(name: "Eng.Speed", unit: "rpm", storage: .unsigned(bits: 16), factor: 0.25, offset: 0),
            ChannelSpec(name: "Eng.Temp", unit: "degC", storage: .signed(bits: 8), factor: 1, offset: -40),
            ChannelSpec(name: "Eng.Lambda", unit: "", storage: .float32),
            ChannelSpec(name: "Eng.Never", unit: "V", storage: .float64),
        ]),
        ChannelGroup(name: "Engine state", trigger: .signalChange("Eng.State"), channels: [
            ChannelSpec(name: "Eng.State", unit: "", storage: .unsigned(bits: 8), valueTable: [(0, "Off"), (2, "Idle"), (1, "Crank")]),
            ChannelSpec(name: "Eng.Torque", unit: "Nm", storage: .float64),
        ]),
    ]

    /// Runs the sampler over a deterministic input and splits its records per group.
    static func measure() -> (MeasurementLayout, [[UInt8]], [[Double]]) {
        var sampler = Sampler(groups: groups)
        var out = RecordBuffer()
        let slot = { (name: String) in sampler.slots(for: name)[0].slot }
        let (speed, temp, lambda, state, torque) = (slot("Eng.Speed"), slot("Eng.Temp"), slot("Eng.Lambda"), slot("Eng.State"), slot("Eng.Torque"))
        let start: Int64 = 1_763_700_000_000_000_000
        for step in 0..<400 {
            let t = Timestamp(nanoseconds: start + Int64(step) * 1_300_000)
            sampler.advance(to: t, into: &out)
            sampler.update(slot: speed, raw: Int64(step * 37 % 65_536), physical: 0)
            sampler.update(slot: temp, raw: Int64(step % 200) - 100, physical: 0)
            sampler.update(slot: lambda, raw: 0, physical: 0.9 + Double(step) / 1000)
            sampler.update(slot: state, raw: Int64(step / 100), physical: Double(step / 100))
            sampler.update(slot: torque, raw: 0, physical: Double(step) * 1.5 - 20)
            sampler.frameApplied(message: nil, at: t, into: &out)
        }
        var perGroup: [[UInt8]] = Array(repeating: [], count: groups.count)
        var times: [[Double]] = Array(repeating: [], count: groups.count)
        for index in 0..<out.count {
            out.withPayload(index) { raw in
                let group = RecordPayload.groupIndex(raw)
                perGroup[group] += raw[RecordPayload.headerBytes...]
                times[group].append(Double(bitPattern: raw.loadUnaligned(fromByteOffset: 2, as: UInt64.self)))
            }
        }
        return (MeasurementLayout(start: Timestamp(nanoseconds: start), experiment: "mdf-test", groups: groups), perGroup, times)
    }

    static let reader = """
        import json, sys
        from asammdf import MDF
        mdf = MDF(sys.argv[1])
        out = {"groups": []}
        for index, group in enumerate(mdf.groups):
            cg = group.channel_group
            channels = {}
            for ch in group.channels[1:]:
                sig = mdf.get(ch.name, group=index, raw=bool(sys.argv[2] == "raw"), ignore_invalidation_bits=True)
                inval = sig.invalidation_bits
                channels[ch.name] = {
                    # floats as exact hex: no decimal round trip between the two languages
                    "values": [v.decode() if isinstance(v, bytes) else float(v).hex() for v in sig.samples.tolist()],
                    "invalid": [bool(b) for b in inval.tolist()] if inval is not None else None,
                    "unit": sig.unit,
                }
            t = mdf.get_master(index)
            out["groups"].append({"acq": cg.acq_name, "cycles": int(cg.cycles_nr),
                                  "time": [float(x).hex() for x in t.tolist()], "channels": channels})
        out["tool"] = mdf.header.comment if hasattr(mdf.header, "comment") else ""
        print(json.dumps(out))
        """

    @Test func asammdfReadsEverySampleAndTimestamp() throws {
        let (layout, records, times) = Self.measure()
        let bytes = MDFWriter.finalizedFile(layout: layout, records: records)
        let dir = try PackagePaths.temporaryDirectory("mdf")
        let file = dir.appendingPathComponent("m.mf4")
        try Data(bytes).write(to: file)

        let physical = try runPython(Self.reader, [file.path, "phys"])
        try #require(physical.status == 0, "asammdf failed: \(physical.stderr)")
        let raw = try runPython(Self.reader, [file.path, "raw"])
        try #require(raw.status == 0, "asammdf failed: \(raw.stderr)")
        let phys = try JSONSerialization.jsonObject(with: Data(physical.stdout.utf8)) as! [String: Any]
        let rawJSON = try JSONSerialization.jsonObject(with: Data(raw.stdout.utf8)) as! [String: Any]
        let groupsOut = phys["groups"] as! [[String: Any]]
        let rawGroups = rawJSON["groups"] as! [[String: Any]]
        #expect(groupsOut.map { $0["acq"] as? String } == ["Time 5ms", "Engine state"])
        #expect(groupsOut.map { $0["cycles"] as? Int } == times.map(\.count))
        func doubles(_ any: Any?) -> [Double]? { (any as? [String])?.map { Double($0)! } }
        for g in 0..<2 { #expect(doubles(groupsOut[g]["time"]) == times[g], "group \(g) timestamps") }

        // Expected values straight from the record bytes.
        func column(_ g: Int, _ c: Int) -> [Double] {
            let layout = RecordLayout(Self.groups[g])
            let channel = Self.groups[g].channels[c]
            return stride(from: 0, to: records[g].count, by: layout.recordBytes).map { start in
                let o = start + layout.valueOffsets[c]
                let r = records[g]
                switch channel.storage {
                case .unsigned(16): return Double(UInt16(r[o]) | UInt16(r[o + 1]) << 8)
                case .signed(8): return Double(Int8(bitPattern: r[o]))
                case .unsigned(8): return Double(r[o])
                case .float32: return Double(Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(r[o + $1]) << (8 * UInt32($1)) }))
                default: return Double(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(r[o + $1]) << (8 * UInt64($1)) })
                }
            }
        }
        let time5 = groupsOut[0]["channels"] as! [String: [String: Any]]
        let raw5 = rawGroups[0]["channels"] as! [String: [String: Any]]
        #expect(doubles(raw5["Eng.Speed"]?["values"]) == column(0, 0))
        #expect(doubles(time5["Eng.Speed"]?["values"]) == column(0, 0).map { $0 * 0.25 })
        #expect(doubles(time5["Eng.Temp"]?["values"]) == column(0, 1).map { $0 - 40 })
        #expect(doubles(time5["Eng.Lambda"]?["values"]) == column(0, 2))
        #expect(time5["Eng.Speed"]?["unit"] as? String == "rpm")
        let never = time5["Eng.Never"]?["invalid"] as? [Bool]
        #expect(never?.allSatisfy { $0 } == true, "never received: every sample invalid")
        #expect((time5["Eng.Speed"]?["invalid"] as? [Bool])?.allSatisfy { !$0 } ?? true)

        let state = groupsOut[1]["channels"] as! [String: [String: Any]]
        let rawState = rawGroups[1]["channels"] as! [String: [String: Any]]
        #expect(doubles(rawState["Eng.State"]?["values"]) == column(1, 0))
        // The value table's conversion, applied by asammdf to every raw value (as objects: its
        // `get` turns a mix of texts and numbers into numbers): the tabled ones read as their
        // texts, raw 3, not in the table, as the number 3, as cantools decodes it (the default
        // conversion is identity; with none it read as an empty text, and so would CANape).
        let table = try runPython("""
            import json, sys
            from asammdf import MDF
            mdf = MDF(sys.argv[1])
            sig = mdf.get("Eng.State", raw=True)
            out = [v.decode() if isinstance(v, bytes) else float(v) for v in sig.conversion.convert(sig.samples, as_object=True).tolist()]
            print(json.dumps(out))
            """, [file.path])
        let texts = try #require(try JSONSerialization.jsonObject(with: table.stdoutData) as? [Any], "\(table.stderr)")
        let expected: [String] = column(1, 0).map { ["Off", "Crank", "Idle"].indices.contains(Int($0)) ? ["Off", "Crank", "Idle"][Int($0)] : String($0) }
        #expect(texts.map { ($0 as? String) ?? String(($0 as? Double) ?? -1) } == expected)
        #expect(expected.contains("3.0"), "a value the table lacks is in the test")
        #expect(doubles(state["Eng.Torque"]?["values"]) == column(1, 1))
    }

    @Test func theFileDependsOnlyOnItsInputs() {
        let (layout, records, _) = Self.measure()
        #expect(MDFWriter.finalizedFile(layout: layout, records: records) == MDFWriter.finalizedFile(layout: layout, records: records))
    }
}
