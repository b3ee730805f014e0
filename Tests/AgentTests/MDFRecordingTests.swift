// daqlink --mdf: the measurement's MDF4 file streamed while recording. After a clean exit it is
// finalized; after kill -9 it still opens in asammdf (the oracle) with every complete record, and
// in both cases its samples are the journal's records, value for value.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct MDFRecordingTests {
    /// Per group (by acquisition name): time master and the first channel's raw values, as asammdf reads them.
    static let reader = """
        import json, sys
        from asammdf import MDF
        mdf = MDF(sys.argv[1])
        out = {}
        for index, group in enumerate(mdf.groups):
            name = group.channel_group.acq_name
            first = group.channels[1].name
            sig = mdf.get(first, group=index, raw=True, ignore_invalidation_bits=True)
            out[name] = {"t": [float(x).hex() for x in sig.timestamps.tolist()],
                         "v": [float(x) for x in sig.samples.tolist()], "channel": first}
        print(json.dumps(out))
        """

    private func check(_ file: URL, against journal: URL, complete: Bool) throws {
        let result = try runPython(Self.reader, [file.path])
        try #require(result.status == 0, "asammdf could not open \(file.path): \(result.stderr)")
        let groups = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: [String: Any]]
        let entries = try Agent.dump(journal)
        #expect(groups.count == 5)
        for (name, data) in groups {
            let times = (data["t"] as! [String]).map { Double($0)! }
            let values = data["v"] as! [Double]
            let channel = data["channel"] as! String
            let records = entries.filter { $0["group"] as? String == name }
            #expect(!times.isEmpty, "\(name): no samples")
            if complete { #expect(times.count == records.count, "\(name)") } else { #expect(times.count <= records.count, "\(name)") }
            for (index, record) in records.prefix(times.count).enumerated() {
                #expect(times[index] == record["dt"] as? Double, "\(name) sample \(index) time")
                let stored = (record["values"] as! [String: Any])[channel]
                if let number = stored as? Double { #expect(values[index] == number, "\(name) sample \(index)") }
            }
        }
    }

    @Test func cleanExitLeavesAFinalizedFileEqualToTheJournal() throws {
        let work = try PackagePaths.temporaryDirectory("mdfrec")
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let run = try Agent.run(journal, extra: ["--mdf", mdf.path])
        #expect(run.status == 0, "\(run.stderr)")
        let file = mdf.appendingPathComponent("measurement-1.mf4")
        let head = try FileHandle(forReadingFrom: file).readData(ofLength: 8)
        #expect(String(decoding: head, as: UTF8.self) == "MDF     ", "finalized ID block")
        try check(file, against: journal, complete: true)
    }

    @Test func killMinus9LeavesAFileAsammdfStillOpens() throws {
        let work = try PackagePaths.temporaryDirectory("mdfkill")
        let journal = work.appendingPathComponent("journal"), mdf = work.appendingPathComponent("mdf")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Agent.daqlink)
        process.arguments = ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)", "--speed", "5",
                             "--journal", journal.path, "--mdf", mdf.path, "--quiet"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(1_200_000)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let file = mdf.appendingPathComponent("measurement-1.mf4")
        let head = try FileHandle(forReadingFrom: file).readData(ofLength: 8)
        #expect(String(decoding: head, as: UTF8.self) == "UnFinMF ", "a killed recording stays unfinalized")
        try check(file, against: journal, complete: false)
    }
}
