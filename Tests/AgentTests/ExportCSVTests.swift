// `daqctl export --format csv` with what a reviewer found: 64-bit integers beyond a double's 53
// bits, and two groups whose names differ only in characters a file name cannot hold.
import Foundation
import Testing
import TestSupport

@Suite struct ExportCSVTests {
    @Test func wideIntegersAreExactAndGroupsWhoseFileNamesMeetKeepTheirOwnFiles() throws {
        let work = try PackagePaths.temporaryDirectory("export-csv")
        let dbc = work.appendingPathComponent("wide.dbc")
        try """
            VERSION ""

            BU_: ECU

            BO_ 100 Wide: 16 ECU
             SG_ U64 : 0|64@1+ (1,0) [0|0] "" ECU
             SG_ S64 : 64|64@1- (1,0) [0|0] "" ECU

            """.write(to: dbc, atomically: true, encoding: .utf8)
        let experiment = work.appendingPathComponent("wide.toml")
        try """
            name = "wide"
            [[dbc]]
            file = "\(dbc.path)"
            [[group]]
            name = "Big 64"
            on_message = "Wide"
            storage = "raw"
            channels = ["Wide.U64", "Wide.S64"]
            [[group]]
            name = "Big/64"
            on_message = "Wide"
            storage = "raw"
            channels = ["Wide.U64"]
            """.write(to: experiment, atomically: true, encoding: .utf8)
        // U64 = 2^53 + 1 then 2^64 − 1; S64 = −12345678901234567 then Int64.min.
        let log = work.appendingPathComponent("wide.log")
        try """
            (1.000000) can0 064##0010000000000200079B494A2AB23D4FF
            (1.010000) can0 064##0FFFFFFFFFFFFFFFF0000000000000080

            """.write(to: log, atomically: true, encoding: .utf8)
        let journal = work.appendingPathComponent("journal")
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", experiment.path, "--source", "replay:\(log.path)", "--speed", "max",
                                                 "--journal", journal.path, "--quiet"])
        #expect(run.status == 0, "\(run.stderr)")
        let out = work.appendingPathComponent("w.csv").path
        let export = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "csv", "--out", out])
        #expect(export.status == 0, "\(export.stderr)")
        let paths = export.stdout.split(separator: "\n").map(String.init)
        #expect(paths.count == 2 && Set(paths).count == 2, "one file per group: \(paths)")
        let first = try String(contentsOfFile: paths[0], encoding: .utf8).split(separator: "\n")
        #expect(first.dropFirst().map { $0.split(separator: ",").dropFirst().joined(separator: ",") }
                == ["9007199254740993,-12345678901234567", "18446744073709551615,-9223372036854775808"], "\(first)")
        let second = try String(contentsOfFile: paths[1], encoding: .utf8).split(separator: "\n")
        #expect(second.first == "t [s],Wide.U64" && second.count == 3, "\(second)")
    }

    /// A signal listed once raw and once physical in one group: the second channel is named with
    /// its storage (two channels of one name made asammdf's get(name) refuse: "Multiple
    /// occurrences"); the same storage twice is refused at its line.
    @Test func aSignalTwiceInAGroupGetsTwoNames() throws {
        let work = try PackagePaths.temporaryDirectory("export-twice")
        let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
        let experiment = work.appendingPathComponent("twice.toml")
        func write(_ second: String) throws {
            try """
                name = "twice"
                [[dbc]]
                file = "\(dbc)"
                [[group]]
                name = "Both"
                raster_ms = 10
                channels = ["EngFast_00.EngFast_00_S0",
                            "\(second)"]
                """.write(to: experiment, atomically: true, encoding: .utf8)
        }
        let log = PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path
        let journal = work.appendingPathComponent("journal")
        try write("EngFast_00.EngFast_00_S0")
        let refused = try runProcess(Agent.daqlink, ["run", "--experiment", experiment.path, "--source", "replay:\(log)", "--journal", journal.path])
        #expect(refused.status != 0 && refused.stderr.contains("twice.toml:7 [group.channels]: 'EngFast_00.EngFast_00_S0' is listed twice"),
                "\(refused.stderr)")

        try write("EngFast_00.EngFast_00_S0:float32")
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", experiment.path, "--source", "replay:\(log)", "--speed", "max",
                                                 "--journal", journal.path, "--quiet"])
        #expect(run.status == 0, "\(run.stderr)")
        let mdf = work.appendingPathComponent("twice.mf4").path
        #expect(try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "mdf", "--out", mdf]).status == 0)
        let read = try runPython("""
            import sys
            from asammdf import MDF
            m = MDF(sys.argv[1])
            raw = m.get("EngFast_00.EngFast_00_S0")
            phys = m.get("EngFast_00.EngFast_00_S0:float32")
            assert len(raw.samples) == len(phys.samples) > 0
            assert all(abs(float(a) - float(b)) < 1e-3 * max(1.0, abs(float(a))) for a, b in zip(raw.samples, phys.samples))
            print(len(raw.samples))
            """, [mdf])
        #expect(read.status == 0, "\(read.stdout)\(read.stderr)")
    }
}
