// The experiment file's bus-logging groups (kind = "bus") and [mdf] table: parsed into the
// measurement layout's file options; bad values name line and field.
import Foundation
import Testing
import DAQCore
import Acquisition
@testable import Experiment

@Suite struct ExperimentMDFOptionsTests {
    /// Bad variants of this file are among ExperimentFileTests' bad files.
    static let base = """
        name = "t"
        [[dbc]]
        file = "a.dbc"
        buses = ["can0", "can1"]

        [mdf]
        split_bytes = 1000000
        split_seconds = 2.5
        deflate = true

        [[group]]
        name = "Frames"
        kind = "bus"
        buses = ["can1", "can0"]
        """

    @Test func busGroupsAndFileOptionsParse() throws {
        let file = try ExperimentFile(text: Self.base, file: "x.toml")
        #expect(file.groups.map(\.name) == ["Frames"])
        #expect(file.groups[0].trigger == .busFrames(["can1", "can0"]))
        #expect(file.files == MeasurementFiles(splitBytes: 1_000_000, splitNanoseconds: 2_500_000_000, deflate: true))
    }

    @Test func theBusLoggingFlagAddsOneGroupForTheDBCsBuses() throws {
        var file = try ExperimentFile(text: Self.base.replacingOccurrences(of: "kind = \"bus\"\nbuses = [\"can1\", \"can0\"]",
                                                                           with: "raster_ms = 10\nchannels = [\"M.S\"]"), file: "x.toml")
        try file.addBusLogging(file: "x.toml")
        try file.addBusLogging(file: "x.toml")
        #expect(file.groups.map(\.name) == ["Frames", "CAN frames"])
        #expect(file.groups[1].trigger == .busFrames(["can0", "can1"]))
    }

    @Test func theBusLoggingFlagNeedsNamedBusesAndAFreeName() throws {
        var unnamed = try ExperimentFile(text: Self.base.replacingOccurrences(of: "buses = [\"can0\", \"can1\"]\n", with: "")
            .replacingOccurrences(of: "kind = \"bus\"\nbuses = [\"can1\", \"can0\"]", with: "raster_ms = 10\nchannels = [\"M.S\"]"),
                                         file: "x.toml")
        #expect(throws: DAQError.self) { try unnamed.addBusLogging(file: "x.toml") }
        var clash = try ExperimentFile(text: Self.base.replacingOccurrences(of: "name = \"Frames\"\nkind = \"bus\"\nbuses = [\"can1\", \"can0\"]",
                                                                            with: "name = \"CAN frames\"\nraster_ms = 10\nchannels = [\"M.S\"]"),
                                       file: "x.toml")
        do {
            try clash.addBusLogging(file: "x.toml")
            Issue.record("accepted a second group named 'CAN frames'")
        } catch {
            #expect(error.location?.line == 11 && error.location?.field == "group.name", "\(error)")
        }
    }

    @Test func theLayoutEntryCarriesBusGroupsAndFileOptions() throws {
        let group = ChannelGroup(name: "Frames", trigger: .busFrames(buses: ["can0", "can1"]), channels: [])
        let plain = MeasurementLayout(start: Timestamp(nanoseconds: 5), experiment: "e", groups: [group])
        #expect(plain.encoded().prefix(2) == [1, 0], "default options keep layout version 1")
        var layout = plain
        layout.files = MeasurementFiles(splitBytes: 1 << 20, splitNanoseconds: nil, deflate: true)
        let bytes = layout.encoded()
        #expect(bytes.prefix(2) == [2, 0])
        let decoded = try bytes.withUnsafeBytes { (raw) throws(DAQError) in try MeasurementLayout(decoding: raw) }
        #expect(decoded == layout)
        #expect(RecordLayout(group).recordBytes == BusFrameRecord.bytes)
    }
}
