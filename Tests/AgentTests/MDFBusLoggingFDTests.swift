// CAN FD bus logging end to end: a CAN FD log simulated from a small FD DBC (8- to 64-byte
// messages, standard and extended ids, two buses) replayed through `daqlink run --mdf` with an
// `fd = true` bus group. asammdf's extract_bus_logging decodes the device's file to what
// `daqctl decode` makes of the log; DLC/DataLength/EDL/BRS, dump, CSV and inspect show the FD
// fields; the file rebuilt from the journal alone is byte-identical (the option travels in it).
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct MDFBusLoggingFDTests {
    /// A classic message, FD messages of 8, 12 (extended id), 20 and 64 bytes with signals up to the last byte.
    static let dbc = """
        VERSION ""

        NS_ :

        BS_:

        BU_: ECU

        BO_ 256 Classic: 8 ECU
         SG_ Speed : 0|16@1+ (0.01,0) [0|600] "km/h" Vector__XXX
         SG_ Gear : 16|4@1+ (1,0) [0|8] "" Vector__XXX

        BO_ 512 Wide: 64 ECU
         SG_ Head : 0|16@1+ (0.1,-100) [-100|5000] "" Vector__XXX
         SG_ Middle : 200|12@1- (1,0) [-2000|2000] "" Vector__XXX
         SG_ Motorola : 263|24@0+ (1,0) [0|16000000] "" Vector__XXX
         SG_ Tail : 496|16@1+ (1,0) [0|65535] "" Vector__XXX

        BO_ 2147484465 Extended: 12 ECU
         SG_ Pressure : 64|24@1+ (0.5,0) [0|8000000] "kPa" Vector__XXX

        BO_ 768 Twenty: 20 ECU
         SG_ Level : 144|16@1- (0.25,0) [-8000|8000] "" Vector__XXX

        BO_ 1024 ShortFD: 8 ECU
         SG_ Count : 0|8@1+ (1,0) [0|255] "" Vector__XXX

        BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000;
        BA_DEF_ BO_ "VFrameFormat" ENUM "StandardCAN","ExtendedCAN","StandardCAN_FD","ExtendedCAN_FD";
        BA_DEF_DEF_ "GenMsgCycleTime" 10;
        BA_DEF_DEF_ "VFrameFormat" "StandardCAN";
        BA_ "VFrameFormat" BO_ 512 2;
        BA_ "VFrameFormat" BO_ 2147484465 3;
        BA_ "VFrameFormat" BO_ 768 2;
        BA_ "VFrameFormat" BO_ 1024 2;

        """

    static let experiment = """
        name = "fd"
        [[dbc]]
        file = "fd.dbc"
        buses = ["can0", "can1"]

        [[group]]
        name = "CAN frames"
        kind = "bus"
        buses = ["can0", "can1"]
        fd = true
        """

    /// The FD fields of every frame as asammdf reads them: DataBytes width, the distinct
    /// (ID, IDE, DLC, DataLength, EDL, BRS) rows, and whether bytes past DataLength are zero.
    static let fdFields = """
        import json, sys
        from asammdf import MDF
        mdf = MDF(sys.argv[1])
        index = [i for i, g in enumerate(mdf.groups) if g.channel_group.acq_name == "CAN frames"][0]
        get = lambda name: mdf.get("CAN_DataFrame." + name, group=index).samples
        data = get("DataBytes")
        columns = [get(name).astype(int).tolist() for name in ["ID", "IDE", "DLC", "DataLength", "EDL", "BRS"]]
        lengths = columns[3]
        print(json.dumps({"width": int(data.shape[1]), "rows": sorted(set(zip(*columns))),
                          "padding_zero": all(not any(row[n:]) for row, n in zip(data.tolist(), lengths))}))
        """

    @Test func asammdfDecodesCANFDFramesLikeDaqctlDecode() throws {
        let work = try PackagePaths.temporaryDirectory("mdfbusfd")
        let dbc = work.appendingPathComponent("fd.dbc"), experiment = work.appendingPathComponent("fd.toml")
        try Self.dbc.write(to: dbc, atomically: true, encoding: .utf8)
        try Self.experiment.write(to: experiment, atomically: true, encoding: .utf8)
        let log = work.appendingPathComponent("fd.log")
        let sim = try runProcess(Agent.daqctl, ["ecu-sim", "--dbc", dbc.path, "--log", log.path, "--duration", "3",
                                                "--seed", "11", "--bus", "can0,can1"])
        try #require(sim.status == 0, "\(sim.stderr)")
        // A remote request and an error frame at the end: not bus-logged, counted.
        var text = try String(contentsOf: log, encoding: .utf8)
        let dataFrames = text.split(separator: "\n").count
        text += "(1700000005.000000) can0 100#R\n(1700000005.000100) can1 20000004#0000080000000000\n"
        try text.write(to: log, atomically: true, encoding: .utf8)
        #expect(dataFrames > 1000 && text.contains("##"), "FD frames in the log")

        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let arguments = ["run", "--experiment", experiment.path, "--source", "replay:\(log.path)", "--speed", "max",
                         "--journal", journal.path, "--mdf", mdf.path]
        let run = try runProcess(Agent.daqlink, arguments)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("group \"CAN frames\": \(dataFrames) records, \(dataFrames * 79) bytes"), "\(run.stderr)")
        #expect(run.stderr.contains("remote/error frames not bus-logged 2") && !run.stderr.contains("over 8 bytes"), "\(run.stderr)")
        let file = mdf.appendingPathComponent("measurement-1.mf4")

        let decode = try runProcess(Agent.daqctl, ["decode", "--dbc", dbc.path, log.path])
        #expect(decode.status == 0, "\(decode.stderr)")
        let decoded = work.appendingPathComponent("decode.jsonl")
        try decode.stdoutData.write(to: decoded)
        let oracle = try runPython(MDFBusLoggingTests.oracle, [file.path, dbc.path, decoded.path])
        try #require(oracle.status == 0, "asammdf: \(oracle.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: oracle.stdoutData) as? [String: Any])
        #expect(report["mismatches"] as? [String] == [], "\(report["mismatches"] ?? "")")
        #expect(report["frames"] as? Int == dataFrames, "\(report["frames"] ?? "")")
        #expect((report["values"] as? Int ?? 0) >= dataFrames, "\(report["values"] ?? "")")
        #expect((report["undecoded"] as? [[Any]])?.isEmpty == true, "\(report["undecoded"] ?? "")")

        let fields = try runPython(Self.fdFields, [file.path])
        try #require(fields.status == 0, "asammdf: \(fields.stderr)")
        let fd = try #require(try JSONSerialization.jsonObject(with: fields.stdoutData) as? [String: Any])
        #expect(fd["width"] as? Int == 64 && fd["padding_zero"] as? Bool == true, "\(fd)")
        // (ID, IDE, DLC, DataLength, EDL, BRS): DLC is the FD code of the length; classic frames keep EDL 0.
        #expect(fd["rows"] as? [[Int]] == [[256, 0, 8, 8, 0, 0], [512, 0, 15, 64, 1, 1], [768, 0, 11, 20, 1, 1],
                                          [817, 1, 9, 12, 1, 1], [1024, 0, 8, 8, 1, 1]], "\(fd["rows"] ?? "")")

        let inspect = try runProcess(Agent.daqctl, ["inspect", "--json", file.path])
        let summary = try JSONSerialization.jsonObject(with: inspect.stdoutData) as? [String: Any]
        let group = (summary?["groups"] as? [[String: Any]])?.first { $0["acquisition_name"] as? String == "CAN frames" }
        #expect(group?["channels"] as? Int == 12 && group?["cycles"] as? Int == dataFrames
                && group?["raw_bytes"] as? Int == dataFrames * 81, "\(inspect.stdout)\(inspect.stderr)")

        let layoutLine = try runProcess(Agent.daqctl, ["journal", "dump", journal.path]).stdout.prefix { $0 != "\n" }
        #expect(layoutLine.contains("{\"name\": \"CAN frames\", \"channels\": [], \"buses\": [\"can0\", \"can1\"], \"fd\": true}"),
                "\(layoutLine)")
        let dump = try runProcess(Agent.daqctl, ["journal", "dump", journal.path, "--from", "2"])
        let wide = dump.stdout.split(separator: "\n").first { $0.contains("\"id\": 512,") }.map(String.init) ?? ""
        #expect(wide.contains("\"dlc\": 15, ") && wide.contains("\"fd\": true, \"brs\": true, \"esi\": false}"), "\(wide)")
        #expect(wide.range(of: "\"data\": \"[0-9A-F]{128}\"", options: .regularExpression) != nil, "\(wide)")

        let csv = work.appendingPathComponent("frames.csv").path
        let export = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "csv", "--group", "CAN frames", "--out", csv])
        #expect(export.status == 0, "\(export.stderr)")
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(rows.count == dataFrames + 1 && rows.first == "t [s],bus,id,ide,dlc,length,dir,edl,brs,esi,data")
        let extended = rows.first { $0.contains(",817,1,") } ?? ""
        #expect(extended.range(of: "^[0-9.e-]+,can[01],817,1,9,12,[RT]x,1,1,0,[0-9A-F]{24}$", options: .regularExpression) != nil, "\(extended)")

        // daqctl export writes the same frames as a sorted data group.
        let exported = work.appendingPathComponent("export.mf4")
        let mdfExport = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "mdf", "--out", exported.path])
        #expect(mdfExport.status == 0, "\(mdfExport.stderr)")
        let exportedFields = try runPython(Self.fdFields, [exported.path])
        #expect(exportedFields.stdout == fields.stdout, "\(exportedFields.stdout)\(exportedFields.stderr)")

        // The collector and a restarted device rebuild the file from the journal's layout entry
        // alone: mark the file unfinalized, start again, and the rebuilt file has the same bytes.
        let original = try Data(contentsOf: file)
        let handle = try FileHandle(forWritingTo: file)
        try handle.write(contentsOf: Data("UnFinMF ".utf8))
        try handle.close()
        let restart = try runProcess(Agent.daqlink, arguments)
        #expect(restart.status == 0, "\(restart.stderr)")
        #expect(try Data(contentsOf: file) == original, "the file rebuilt from the journal differs: \(restart.stderr)")
    }
}
