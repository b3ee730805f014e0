// daqlink on a real vcan bus (inside the UML guest here; on the host where the kernel has CAN):
// 2 s of the reference ECU's traffic is put on vcan0/vcan1 by `daqctl replay`, daqlink records it
// from SocketCAN, and its event records equal those of a file replay of the same frames.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct LiveAcquisitionTests {
    @Test func socketCANAcquisitionRecordsWhatWasSent() throws {
        let work = try PackagePaths.temporaryDirectory("live")
        // 2 s of traffic, buses renamed for the vcan interfaces.
        let full = try String(contentsOfFile: Agent.log, encoding: .utf8).split(separator: "\n")
        let first = full.first!.dropFirst().prefix { $0 != ")" }
        let start = Double(first)!
        let lines = full.prefix { line in Double(line.dropFirst().prefix { $0 != ")" })! < start + 2 }
        let log = lines.joined(separator: "\n").replacingOccurrences(of: ") can0 ", with: ") vcan0 ")
            .replacingOccurrences(of: ") can1 ", with: ") vcan1 ") + "\n"
        try log.write(to: work.appendingPathComponent("traffic.log"), atomically: true, encoding: .utf8)
        let dbc = PackagePaths.fixtures.appendingPathComponent("reference/engine.dbc").path
        let experiment = try String(contentsOfFile: Agent.experiment, encoding: .utf8)
            .replacingOccurrences(of: "file = \"engine.dbc\"", with: "file = \"\(dbc)\"")
            .replacingOccurrences(of: "buses = [\"can0\", \"can1\"]", with: "buses = [\"vcan0\", \"vcan1\"]")
        try experiment.write(to: work.appendingPathComponent("live.toml"), atomically: true, encoding: .utf8)

        let script = """
            set -u
            w=\(work.path)
            \(Agent.daqlink) run --experiment $w/live.toml --source socketcan:vcan0,vcan1 --journal $w/live-journal \\
                --quiet --drain-timeout 0 2>$w/daqlink.err &
            p=$!
            sleep 1
            \(Agent.daqctl) replay --to vcan0=vcan0,vcan1=vcan1 $w/traffic.log 2>$w/replay.err
            echo $? >$w/replay.rc
            sleep 0.5
            kill -INT $p
            wait $p
            echo $? >$w/daqlink.rc
            """
        try script.write(to: work.appendingPathComponent("live.sh"), atomically: true, encoding: .utf8)
        let rig = try runProcess(PackagePaths.root.appendingPathComponent("vcan-setup.sh").path,
                                 ["--count", "2", "--run", "--", "bash", work.appendingPathComponent("live.sh").path])
        #expect(rig.status == 0, "\(rig.stdout)\(rig.stderr)")
        let read = { (name: String) in (try? String(contentsOf: work.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        #expect(read("replay.rc").hasPrefix("0"), "replay: \(read("replay.err"))")
        #expect(read("daqlink.rc").hasPrefix("0"), "daqlink: \(read("daqlink.err"))")
        let summary = read("daqlink.err")
        #expect(summary.contains("drops: kernel 0"), "\(summary)")

        // The same frames from the file: event records must match value for value.
        let fileJournal = work.appendingPathComponent("file-journal")
        let replay = try runProcess(Agent.daqlink, ["run", "--experiment", work.appendingPathComponent("live.toml").path,
                                                    "--source", "replay:\(work.appendingPathComponent("traffic.log").path)",
                                                    "--speed", "max", "--journal", fileJournal.path, "--quiet"])
        #expect(replay.status == 0, "\(replay.stderr)")
        let live = try Agent.dump(work.appendingPathComponent("live-journal"))
        let file = try Agent.dump(fileJournal)
        func values(_ entries: [[String: Any]], _ group: String) -> [NSDictionary] {
            entries.filter { $0["group"] as? String == group }.map { NSDictionary(dictionary: $0["values"] as! [String: Any]) }
        }
        for group in ["Seg 2", "Seg 1", "Engine state"] {
            let a = values(live, group), b = values(file, group)
            #expect(!b.isEmpty)
            #expect(a == b, "\(group): \(a.count) live records vs \(b.count) from the file")
        }
        // The 5 ms raster ran on the live clock from the first frame until SIGINT: the 2 s of
        // traffic plus the 0.5 s pause (sample-and-hold), with slack for the guest's scheduling.
        let fast = live.filter { $0["group"] as? String == "Time 5ms" }.count
        #expect(fast > 400 && fast < 700, "\(fast) records of the 5 ms group")
        #expect(try runProcess(Agent.daqctl, ["journal", "verify", work.appendingPathComponent("live-journal").path]).status == 0)
    }
}
