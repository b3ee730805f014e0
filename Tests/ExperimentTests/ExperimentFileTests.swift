// Experiment files: the reference fixture parses; bad files name line and field.
import Foundation
import Testing
import DAQCore
import TestSupport
@testable import Experiment

@Suite struct ExperimentFileTests {
    @Test func referenceWorkloadHasTheSeedsFourGroups() throws {
        let url = PackagePaths.fixtures.appendingPathComponent("reference/reference.toml")
        let file = try ExperimentFile(text: String(contentsOf: url, encoding: .utf8), file: url.path)
        #expect(file.name == "reference")
        #expect(file.dbcs == [ExperimentDBC(path: "engine.dbc", buses: ["can0", "can1"])])
        #expect(file.groups.map(\.name) == ["Time 5ms", "Time 10ms", "Seg 2", "Seg 1", "Engine state"])
        #expect(file.groups.map(\.channels.count) == [162, 64, 34, 28, 3])
        #expect(file.groups[0].trigger == .raster(milliseconds: 5))
        #expect(file.groups[2].trigger == .message("Seg2_08"))
        #expect(file.groups[4].trigger == .signalChange("EngStatus.EngState"))
        #expect(file.groups[4].channels.map(\.storage) == [.raw, .float64, .float32])
        #expect(file.groups[0].channels[0].line == 14)
    }

    static let mdf = ExperimentMDFOptionsTests.base

    static let base = """
        name = "t"
        [[dbc]]
        file = "a.dbc"

        [[group]]
        name = "G"
        raster_ms = 10
        channels = ["M.S"]
        """

    static let badFiles: [(String, Int, String)] = [
        (base.replacingOccurrences(of: "raster_ms = 10", with: "raster_ms = 10\non_message = \"M\""), 5, "group.trigger"),
        (base.replacingOccurrences(of: "raster_ms = 10", with: "raster_ms = -5"), 7, "group.raster_ms"),
        // A typo for 1 ms (it gave 193289 records from a 0.2 s log), and a raster nothing samples on.
        (base.replacingOccurrences(of: "raster_ms = 10", with: "raster_ms = 0.001"), 7, "group.raster_ms"),
        (base.replacingOccurrences(of: "raster_ms = 10", with: "raster_ms = 99999999999"), 7, "group.raster_ms"),
        (base.replacingOccurrences(of: "\"M.S\"", with: "\"MS\""), 8, "group.channels"),
        (base.replacingOccurrences(of: "\"M.S\"", with: "\"M.S:int7\""), 8, "group.channels"),
        (base.replacingOccurrences(of: "file = \"a.dbc\"", with: "path = \"a.dbc\""), 2, "dbc.file"),
        (base + "\nrate = 3", 9, "group.rate"),
        (base.replacingOccurrences(of: "name = \"G\"", with: "name = \"G\"\nstorage = \"int\""), 7, "group.storage"),
        (base.replacingOccurrences(of: "raster_ms = 10", with: "raster_ms = [10"), 8, "column 1"),
        (base + "\n[[group]]\nname = \"G\"\nraster_ms = 5\nchannels = [\"A.B\"]", 9, "group.name"),
        // A message or a signal name missing around the dot trapped when the experiment was bound.
        (base.replacingOccurrences(of: "raster_ms = 10", with: "on_change = \"M.\""), 7, "group.on_change"),
        (base.replacingOccurrences(of: "raster_ms = 10", with: "on_change = \".\""), 7, "group.on_change"),
        (base.replacingOccurrences(of: "raster_ms = 10", with: "on_change = \".S\""), 7, "group.on_change"),
        // The [mdf] table and bus-logging groups (ExperimentMDFOptionsTests.base).
        (mdf.replacingOccurrences(of: "split_bytes = 1000000", with: "split_bytes = 12"), 7, "mdf.split_bytes"),
        (mdf.replacingOccurrences(of: "split_seconds = 2.5", with: "split_seconds = 1e10"), 8, "mdf.split_seconds"),
        (mdf.replacingOccurrences(of: "deflate = true", with: "deflate = 1"), 9, "mdf.deflate"),
        (mdf.replacingOccurrences(of: "deflate = true", with: "deflate = true\nsplit = 3"), 10, "mdf.split"),
        (mdf.replacingOccurrences(of: "buses = [\"can1\", \"can0\"]", with: "buses = []"), 14, "group.buses"),
        (mdf.replacingOccurrences(of: "kind = \"bus\"", with: "kind = \"lin\""), 13, "group.kind"),
        (mdf + "\nchannels = [\"M.S\"]", 15, "group.channels"),
    ]

    @Test(arguments: badFiles)
    func badFilesNameLineAndField(text: String, line: Int, field: String) {
        do {
            _ = try ExperimentFile(text: text, file: "x.toml")
            Issue.record("accepted a bad experiment")
        } catch {
            #expect(error.location?.file == "x.toml")
            #expect(error.location?.line == line, "\(error)")
            #expect(error.location?.field == field, "\(error)")
        }
    }
}
