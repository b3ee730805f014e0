// The README's main command, `daqctl demo`, end to end: a PKI and a broker configuration
// generated, a real mosquitto with mTLS, the collector and daqlink replaying the fixture, the link
// cut once and restored, then the Fig. 4 comparison ending "byte-identical: yes" — and nothing it
// started left running.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct DemoCommandTests {
    @Test func theDemoEndsByteIdenticalAndStopsEverythingItStarted() throws {
        let work = try PackagePaths.temporaryDirectory("demo").appendingPathComponent("run")
        let demo = try runProcess(PackagePaths.executable("daqctl").path, ["demo", "--workdir", work.path])
        #expect(demo.status == 0, "\(demo.stdout)\n\(demo.stderr)")
        let text = demo.stdout + demo.stderr
        for step in ["PKI: CA (EC P-256)", "TLS 1.3 only, client certificates required", "LINK CUT", "link restored",
                     "device finished (exit status 0)", "MDF measurement-1.mf4: device", "identical\nbyte-identical: yes"] {
            #expect(text.contains(step), "\(step): \(text)")
        }
        // The cut is told as what it is: libmosquitto's EPROTO for a broken TLS session read
        // "Protocol error" (strerror's words), as if the MQTT peer had misbehaved.
        #expect(text.contains("lost: ") && text.contains("the TLS session broke") || text.contains("the connection was reset"), "\(text)")
        #expect(!text.contains("Protocol error"), "\(text)")
        // The copy holds every entry the device wrote, once (the link cut made the device resend).
        let entries = text.split(separator: "\n").first { $0.hasPrefix("entries: device ") } ?? ""
        let numbers = entries.split(whereSeparator: { !$0.isNumber }).map(String.init)
        #expect(numbers.count == 4 && numbers[0] == numbers[2] && numbers[1] == numbers[3] && Int(numbers[0])! > 1_000, "\(entries)")
        // Its broker log holds no TLS error of its own making (a readiness probe that connected and
        // closed mid-handshake left "unexpected eof" in every demo's log).
        let brokerLog = try String(contentsOf: work.appendingPathComponent("broker.log"), encoding: .utf8)
        #expect(!brokerLog.contains("unexpected eof") && brokerLog.contains("as ecu-01"), "\(brokerLog)")
        // Everything it started is stopped: no process still uses its work directory.
        let left = try runProcess("pgrep", ["-f", work.path])
        #expect(left.stdout.isEmpty, "still running: \(left.stdout)")
    }

    /// A work directory left by an earlier run would mix its PKI, journals and copies into this
    /// run's (the bench used to stop on a raw "file exists" error): refused by name, left as it is.
    @Test(arguments: [["demo"], ["bench", "uplink"]])
    func aWorkDirectoryLeftByAnEarlierRunIsRefusedByName(_ command: [String]) throws {
        let work = try PackagePaths.temporaryDirectory("demo-left")
        let left = work.appendingPathComponent("device/journal")
        try FileManager.default.createDirectory(at: left, withIntermediateDirectories: true)
        let run = try runProcess(PackagePaths.executable("daqctl").path, command + ["--workdir", work.path])
        #expect(run.status != 0)
        #expect(run.stderr.contains("work directory \(work.path) is not empty"), "\(run.stdout)\n\(run.stderr)")
        #expect(!run.stderr.contains("NSCocoaErrorDomain"), "\(run.stderr)")
        #expect(FileManager.default.fileExists(atPath: left.path))
        #expect(try runProcess("pgrep", ["-f", work.path]).stdout.isEmpty)
    }

    /// Checked before anything starts (a negative cut trapped with the fleet already running).
    @Test(arguments: [(["--cut-at", "-1"], "--cut-at must be 0…3600 seconds"), (["--cut-for", "1e7"], "--cut-for must be 0…3600 seconds"),
                      (["--speed", "0"], "--speed must be above 0")])
    func badDemoOptionsAreRefusedBeforeAnythingStarts(arguments: [String], message: String) throws {
        let run = try runProcess(PackagePaths.executable("daqctl").path, ["demo"] + arguments)
        #expect(run.status == 64 && run.stderr.contains(message), "\(run.stderr)")
    }
}
