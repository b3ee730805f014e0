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

    @Test func fdBusGroupsParseAndTheFDFlagTurnsBusGroupsFD() throws {
        let fdText = Self.base.replacingOccurrences(of: "buses = [\"can1\", \"can0\"]", with: "buses = [\"can1\", \"can0\"]\nfd = true")
        let file = try ExperimentFile(text: fdText, file: "x.toml")
        #expect(file.groups[0].trigger == .busFrames(["can1", "can0"], fd: true))
        #expect(try ExperimentFile(text: fdText.replacingOccurrences(of: "fd = true", with: "fd = false"), file: "x.toml")
            .groups[0].trigger == .busFrames(["can1", "can0"]))
        // --mdf-bus-logging-fd: the file's classic bus group becomes FD; without one, "CAN frames" is added as FD.
        var classic = try ExperimentFile(text: Self.base, file: "x.toml")
        try classic.addBusLogging(file: "x.toml", fd: true)
        #expect(classic.groups.map(\.trigger) == [.busFrames(["can1", "can0"], fd: true)])
        var sampled = try ExperimentFile(text: Self.base.replacingOccurrences(of: "kind = \"bus\"\nbuses = [\"can1\", \"can0\"]",
                                                                              with: "raster_ms = 10\nchannels = [\"M.S\"]"), file: "x.toml")
        try sampled.addBusLogging(file: "x.toml", fd: true)
        #expect(sampled.groups[1].trigger == .busFrames(["can0", "can1"], fd: true))
    }

    @Test func badFDKeysNameLineAndField() {
        let cases: [(String, Int, String)] = [
            (Self.base.replacingOccurrences(of: "buses = [\"can1\", \"can0\"]", with: "buses = [\"can1\", \"can0\"]\nfd = \"yes\""), 15, "group.fd"),
            (Self.base.replacingOccurrences(of: "kind = \"bus\"\nbuses = [\"can1\", \"can0\"]", with: "raster_ms = 10\nfd = true\nchannels = [\"M.S\"]"),
             14, "group.fd"),
        ]
        for (text, line, field) in cases {
            do {
                _ = try ExperimentFile(text: text, file: "x.toml")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.location?.file == "x.toml" && error.location?.line == line && error.location?.field == field, "\(error)")
            }
        }
    }

    @Test func theLayoutEntryCarriesFDBusGroupsAsVersion3() throws {
        let classic = ChannelGroup(name: "Frames", trigger: .busFrames(buses: ["can0", "can1"]), channels: [])
        let fd = ChannelGroup(name: "FD frames", trigger: .busFrames(buses: ["can1"], fd: true), channels: [])
        let layout = MeasurementLayout(start: Timestamp(nanoseconds: 5), experiment: "e", groups: [classic, fd])
        let bytes = layout.encoded()
        #expect(bytes.prefix(2) == [3, 0], "an FD bus group needs layout version 3")
        #expect(Array(bytes.suffix(17)) == [UInt8](repeating: 0, count: 17), "version 3 always appends the file options")
        let decoded = try bytes.withUnsafeBytes { (raw) throws(DAQError) in try MeasurementLayout(decoding: raw) }
        #expect(decoded == layout && decoded.groups.map(\.logsFDFrames) == [false, true])
        #expect(RecordLayout(fd).recordBytes == BusFrameRecord.fdBytes && RecordLayout(classic).recordBytes == BusFrameRecord.bytes)
        // Without FD groups nothing changes: version 1, and the classic group keeps trigger code 3.
        #expect(classic.trigger.code == 3 && fd.trigger.code == 4)
        let plain = MeasurementLayout(start: Timestamp(nanoseconds: 5), experiment: "e", groups: [classic])
        #expect(plain.encoded().prefix(2) == [1, 0])
        // Trigger code 4 under an older version is refused, naming the field.
        var old = bytes
        old[0] = 2
        do {
            _ = try old.withUnsafeBytes { (raw) throws(DAQError) in try MeasurementLayout(decoding: raw, source: "j seq 1") }
            Issue.record("accepted trigger code 4 in a version-2 layout")
        } catch let error as DAQError {
            #expect(error.location?.file == "j seq 1" && error.location?.field == "trigger" && "\(error)".contains("version 3"), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
