// daqlink --mdf-bus-logging: every frame of the DBC's buses recorded raw in a CAN_DataFrame
// bus-logging group. asammdf's extract_bus_logging, given the same DBC, decodes the device's
// file to exactly what `daqctl decode` makes of the log: same frames, times and physical values.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct MDFBusLoggingTests {
    static let oracle = """
        import json, sys, re
        from asammdf import MDF
        mdf_path, dbc, decode_path = sys.argv[1:4]
        decoded = {}
        t0 = None
        for line in open(decode_path):
            entry = json.loads(line)
            if t0 is None: t0 = entry["t"]
            decoded[(entry["bus"], entry["id"], round(entry["t"] * 1e6))] = entry
        source = MDF(mdf_path)
        raw = [g for g in source.groups if g.channel_group.acq_name == "CAN frames"][0]
        names = sorted(ch.name for ch in raw.channels)
        out = source.extract_bus_logging({"CAN": [(dbc, 0)]})
        buses = {1: "can0", 2: "can1"}
        seen = set()
        report = {"values": 0, "mismatches": [], "names": names}
        def miss(text):
            if len(report["mismatches"]) < 20: report["mismatches"].append(text)
        # A multiplexed message becomes one group per multiplexer value: frames are matched to
        # decode's lines by bus, id and time.
        for index, group in enumerate(out.groups):
            match = re.match(r"CAN(\\d+) message ID=0x([0-9A-Fa-f]+)", group.channel_group.acq_name)
            bus, ident = buses[int(match[1])], int(match[2], 16)
            keys = [(bus, ident, round((t0 + t) * 1e6)) for t in out.get_master(index).tolist()]
            rows = [decoded.get(key) for key in keys]
            if None in rows: miss(f"{bus} {ident}: frame at {keys[rows.index(None)][2]} µs not decoded by daqctl"); continue
            seen.update(keys)
            for channel in group.channels[1:]:
                signal = out.get(channel.name, group=index)
                if signal.samples.dtype.kind in "SUO":  # a value table: compare the raw value
                    signal = out.get(channel.name, group=index, raw=True)
                for i, (value, row) in enumerate(zip(signal.samples.tolist(), rows)):
                    report["values"] += 1
                    if value != row["signals"].get(channel.name):
                        miss(f"{bus} {ident} {channel.name} #{i}: {value} != {row['signals'].get(channel.name)}"); break
        report["frames"] = len(seen)
        report["undecoded"] = [list(key) for key in decoded if key not in seen][:20]
        print(json.dumps(report))
        """

    @Test func asammdfDecodesTheRawFramesLikeDaqctlDecode() throws {
        let work = try PackagePaths.temporaryDirectory("mdfbus")
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let run = try Agent.run(journal, extra: ["--mdf", mdf.path, "--mdf-bus-logging"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("group \"CAN frames\": 103272 records"), "\(run.stderr)")
        let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
        let decode = try runProcess(Agent.daqctl, ["decode", "--dbc", dbc, Agent.log])
        #expect(decode.status == 0, "\(decode.stderr)")
        let decoded = work.appendingPathComponent("decode.jsonl")
        try decode.stdoutData.write(to: decoded)

        let result = try runPython(Self.oracle, [mdf.appendingPathComponent("measurement-1.mf4").path, dbc, decoded.path])
        try #require(result.status == 0, "asammdf: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        #expect(report["mismatches"] as? [String] == [], "\(report["mismatches"] ?? "")")
        #expect(report["frames"] as? Int == 103_272)
        #expect((report["values"] as? Int ?? 0) > 400_000, "\(report["values"] ?? "")")
        #expect(report["undecoded"] as? [[Any]] != nil && (report["undecoded"] as! [[Any]]).isEmpty, "\(report["undecoded"] ?? "")")
        // inspect counts the CAN_DataFrame members as asammdf lists them: time + 1 + 10 channels.
        let inspect = try runProcess(Agent.daqctl, ["inspect", "--json", mdf.appendingPathComponent("measurement-1.mf4").path])
        let summary = try JSONSerialization.jsonObject(with: inspect.stdoutData) as? [String: Any]
        let groups = summary?["groups"] as? [[String: Any]] ?? []
        let frames = groups.first { $0["acquisition_name"] as? String == "CAN frames" }
        #expect(frames?["channels"] as? Int == 12 && frames?["cycles"] as? Int == 103_272, "\(inspect.stdout)\(inspect.stderr)")
        // journal dump shows the raw frame of a bus-logging record.
        let dump = try runProcess(Agent.daqctl, ["journal", "dump", journal.path, "--from", "2"])
        let firstRecord = dump.stdout.split(separator: "\n").first { $0.contains("\"CAN frames\"") }.map(String.init) ?? ""
        #expect(firstRecord.contains("\"frame\": {\"bus\": \"can1\", \"id\": 768, \"extended\": false, \"dlc\": 8, \"tx\": false, \"data\": \"B07FE87F517F8023\"}"),
                "\(firstRecord)")
        // The CSV export of the bus-logging group: one row per frame, as the log has it.
        let csv = work.appendingPathComponent("frames.csv").path
        let export = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "csv", "--group", "CAN frames", "--out", csv])
        #expect(export.status == 0, "\(export.stderr)")
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 103_273 && rows.first == "t [s],bus,id,ide,dlc,dir,data")
        #expect(rows.dropFirst().first == "0.0,can1,768,0,8,Rx,B07FE87F517F8023", "first frame: (…) can1 300#B07FE87F517F8023")
        // Classic bus logging is unchanged by CAN FD support: the very bytes of the file before it,
        // but for the identity default of the value-to-text conversions of the experiment's
        // signal channels, which was NIL (an empty text for a value the table lacks; docs/mdf.md).
        let sha = try runProcess("/usr/bin/sha256sum", [mdf.appendingPathComponent("measurement-1.mf4").path])
        #expect(sha.stdout.hasPrefix("1aa5bfa732ad0de526d784267578ef4c659b21f7bf53a6d7759275ec5950c1b1"), "\(sha.stdout)")
        let names = report["names"] as? [String] ?? []
        for field in ["ID", "IDE", "DLC", "DataLength", "DataBytes", "BusChannel", "Dir"] {
            #expect(names.contains("CAN_DataFrame." + field), "\(names)")
        }
    }
}
