// `daqctl export` and `daqctl inspect` on the reference workload's journal, checked by asammdf:
// every channel's stored samples and every timestamp equal `daqctl journal dump`, units and value
// tables appear, CSV cells equal asammdf's physical values, and inspect's table matches asammdf's
// view of the groups. All asammdf checks run in one python process (start-up is ~1–2 s).
import Foundation
import Testing
import TestSupport

@Suite struct MDFExportTests {
    /// The reference journal, its dump, and the exported MDF / CSV / inspect files (built once).
    struct Reference {
        var directory: URL
        var journal: String { directory.appendingPathComponent("journal").path }
        var mdf: String { directory.appendingPathComponent("ref.mf4").path }
        var csvBase: String { directory.appendingPathComponent("ref.csv").path }
        var dump: String { directory.appendingPathComponent("dump.jsonl").path }
        var inspect: String { directory.appendingPathComponent("inspect.json").path }
    }

    static let daqctl = PackagePaths.executable("daqctl").path

    static let reference: Result<Reference, ReferenceFailure> = {
        do {
            let reference = Reference(directory: try PackagePaths.temporaryDirectory("mdf-export"))
            let fixtures = PackagePaths.fixtures.appendingPathComponent("reference")
            let run = try runProcess(PackagePaths.executable("daqlink").path, [
                "run", "--experiment", fixtures.appendingPathComponent("reference.toml").path,
                "--source", "replay:" + fixtures.appendingPathComponent("engine-10s.log").path,
                "--speed", "max", "--journal", reference.journal, "--quiet"])
            guard run.status == 0 else { return .failure(ReferenceFailure(step: "daqlink run", output: run.stderr)) }
            let steps: [(String, [String], String?)] = [
                ("journal dump", ["journal", "dump", reference.journal], reference.dump),
                ("export mdf", ["export", "--journal", reference.journal, "--format", "mdf", "--out", reference.mdf], nil),
                ("export csv", ["export", "--journal", reference.journal, "--format", "csv", "--out", reference.csvBase], nil),
                ("inspect", ["inspect", reference.mdf, "--json"], reference.inspect),
            ]
            for (name, arguments, output) in steps {
                let result = try runProcess(daqctl, arguments)
                guard result.status == 0 else { return .failure(ReferenceFailure(step: name, output: result.stderr)) }
                if let output { try result.stdoutData.write(to: URL(fileURLWithPath: output)) }
            }
            return .success(reference)
        } catch {
            return .failure(ReferenceFailure(step: "setup", output: "\(error)"))
        }
    }()

    struct ReferenceFailure: Error { var step: String; var output: String }

    /// Compares asammdf's reading of the exported files with the dump; prints one JSON report.
    static let oracle = """
        import json, sys, csv, glob
        import numpy as np
        from asammdf import MDF
        mdf_path, dump_path, csv_base, inspect_path = sys.argv[1:5]
        layout, records = None, {}
        for line in open(dump_path):
            entry = json.loads(line)
            if "layout" in entry: layout = entry["layout"]
            else: records.setdefault(entry["group"], []).append(entry)
        mdf = MDF(mdf_path)
        report = {"groups": [], "mismatches": [], "compared": 0, "units": {}, "tables": {}, "csv": {}}
        def miss(text):
            if len(report["mismatches"]) < 20: report["mismatches"].append(text)
        phys_by_channel = {}
        for index, group in enumerate(mdf.groups):
            acq = group.channel_group.acq_name
            rows = records.get(acq, [])
            master = mdf.get_master(index)
            report["groups"].append({"acq": acq, "cycles": int(group.channel_group.cycles_nr),
                                     "channels": len(group.channels), "dump_records": len(rows),
                                     "t0": float(master[0]) if len(master) else None,
                                     "t1": float(master[-1]) if len(master) else None})
            if len(master) != len(rows): miss(f"{acq}: {len(master)} timestamps, dump has {len(rows)}")
            for i, (t, row) in enumerate(zip(master.tolist(), rows)):
                if t != row["dt"]: miss(f"{acq} record {i}: time {t!r} != dump dt {row['dt']!r}"); break
            for ch in group.channels[1:]:
                raw = mdf.get(ch.name, group=index, raw=True, ignore_invalidation_bits=True)
                phys = mdf.get(ch.name, group=index, ignore_invalidation_bits=True)
                phys_by_channel[(acq, ch.name)] = phys
                report["units"][ch.name] = raw.unit
                invalid = raw.invalidation_bits
                for i, row in enumerate(rows):
                    expected = row["values"][ch.name]
                    flagged = bool(invalid[i]) if invalid is not None else False
                    report["compared"] += 1
                    if expected is None:
                        if not flagged: miss(f"{acq}/{ch.name} record {i}: dump null but invalidation bit clear")
                        continue
                    got = raw.samples[i].item()
                    if flagged or got != expected or type(got) is not type(expected):
                        miss(f"{acq}/{ch.name} record {i}: asammdf {got!r} (invalid={flagged}) != dump {expected!r}")
                texts = [v.decode() for v in phys.samples.tolist() if isinstance(v, bytes)]
                if texts: report["tables"][ch.name] = texts
        # CSV: every cell equals asammdf's physical value (numeric channels), empty where invalid.
        for path in sorted(glob.glob(csv_base[:-4] + "-*.csv")):
            with open(path) as f:
                table = list(csv.reader(f))
            acq = next(g["acq"] for g in report["groups"] if path.endswith("-" + g["acq"].replace(" ", "_") + ".csv"))
            header, body = table[0], table[1:]
            checked = 0
            rows = records.get(acq, [])
            if len(body) != len(rows): miss(f"{path}: {len(body)} rows, dump has {len(rows)}")
            for column, title in enumerate(header[1:], start=1):
                name = title.split(" [")[0]
                phys = phys_by_channel[(acq, name)]
                if phys.samples.dtype.kind not in "iuf": continue  # value-table text
                for i, cells in enumerate(body):
                    cell, valid = cells[column], rows[i]["values"][name] is not None
                    if i == 0 and float(cells[0]) != rows[0]["dt"]: miss(f"{path}: t {cells[0]} != {rows[0]['dt']!r}")
                    if not valid:
                        if cell != "": miss(f"{path} {name} row {i}: invalid sample written as {cell!r}")
                        continue
                    want = phys.samples[i]
                    got = np.float32(float(cell)) if want.dtype == np.float32 else float(cell)
                    checked += 1
                    if got != want: miss(f"{path} {name} row {i}: csv {cell} != asammdf {want!r}")
            report["csv"][acq] = {"header": header[:3], "cells": checked}
        report["inspect"] = json.load(open(inspect_path))
        print(json.dumps(report))
        """

    @Test func asammdfReadsTheExportedJournalExactlyAsTheDump() throws {
        let reference = try Self.reference.get()
        let result = try runPython(Self.oracle, [reference.mdf, reference.dump, reference.csvBase, reference.inspect])
        try #require(result.status == 0, "oracle failed: \(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        let groups = try #require(report["groups"] as? [[String: Any]])

        #expect(groups.map { $0["acq"] as? String } == ["Time 5ms", "Time 10ms", "Seg 2", "Seg 1", "Engine state"])
        for group in groups {
            #expect(group["cycles"] as? Int == group["dump_records"] as? Int, "\(group["acq"] ?? "?") cycles")
            #expect((group["cycles"] as? Int ?? 0) > 0)
        }
        // 162 + 64 + … channels, each plus the time master.
        #expect(groups.map { $0["channels"] as? Int } == [163, 65, 35, 29, 4])
        #expect(report["mismatches"] as? [String] == [], "asammdf vs dump")
        let compared = report["compared"] as? Int ?? 0
        #expect(compared > 300_000, "samples compared: \(compared)")

        let units = report["units"] as? [String: String] ?? [:]
        #expect(units["EngFast_00.EngFast_00_S0"] == "rpm")
        #expect(units["EngStatus.EngTorque"] == "Nm")
        let tables = report["tables"] as? [String: [String]] ?? [:]
        #expect(tables["EngStatus.EngState"] == ["Idle", "PartLoad"])

        let csv = report["csv"] as? [String: [String: Any]] ?? [:]
        #expect(csv.count == 5, "one CSV per group")
        #expect((csv["Time 10ms"]?["cells"] as? Int ?? 0) > 50_000)
        #expect(csv["Engine state"]?["header"] as? [String] == ["t [s]", "EngStatus.EngState", "EngStatus.EngTorque [Nm]"])

        // inspect --json against asammdf's view of the same file.
        let inspect = try #require(report["inspect"] as? [String: Any])
        let rows = try #require(inspect["groups"] as? [[String: Any]])
        #expect(rows.map { $0["acquisition_name"] as? String } == groups.map { $0["acq"] as? String })
        #expect(rows.map { $0["cycles"] as? Int } == groups.map { $0["cycles"] as? Int })
        #expect(rows.map { $0["channels"] as? Int } == groups.map { $0["channels"] as? Int })
        #expect(rows.map { $0["time_start"] as? Double } == groups.map { $0["t0"] as? Double })
        #expect(rows.map { $0["time_end"] as? Double } == groups.map { $0["t1"] as? Double })
        #expect(rows.map { $0["raw_bytes"] as? Int } == [2000 * 353, 1000 * 144, 317 * 81, 317 * 68, 2 * 22])
    }

    @Test func exportOfOneGroupAndTheTable() throws {
        let reference = try Self.reference.get()
        let out = reference.directory.appendingPathComponent("one.csv").path
        let result = try runProcess(Self.daqctl, ["export", "--journal", reference.journal, "--format", "csv", "--out", out,
                                                  "--group", "Engine state"])
        #expect(result.status == 0, "\(result.stderr)")
        let text = try String(contentsOfFile: out, encoding: .utf8)
        #expect(text.hasPrefix("t [s],EngStatus.EngState,EngStatus.EngTorque [Nm],EngDiag.DiagOilLevel [l]\n"))
        #expect(text.split(separator: "\n").count == 3)

        let unknown = try runProcess(Self.daqctl, ["export", "--journal", reference.journal, "--format", "mdf", "--out", out,
                                                   "--group", "No such group"])
        #expect(unknown.status != 0 && unknown.stderr.contains("No such group"))

        let table = try runProcess(Self.daqctl, ["inspect", reference.mdf])
        #expect(table.status == 0)
        #expect(table.stdout.contains("Time 5ms"))
        #expect(table.stdout.contains("total: 5 channel groups, 3636 cycles"))
    }

    @Test(arguments: [64, 100, 4_000, 500_000, 999_999])
    func inspectRejectsATruncatedFile(length: Int) throws {
        let reference = try Self.reference.get()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: reference.mdf))
        let cut = reference.directory.appendingPathComponent("cut-\(length).mf4")
        try bytes.prefix(length).write(to: cut)
        let result = try runProcess(Self.daqctl, ["inspect", cut.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains(cut.path) && result.stderr.contains("[offset "), "\(result.stderr)")
    }
}
