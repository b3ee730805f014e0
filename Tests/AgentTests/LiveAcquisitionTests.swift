// daqlink on a real vcan bus (inside the UML guest here; on the host where the kernel has CAN):
// `daqctl ecu-sim` sends 2 s of the reference ECU's traffic to vcan0, daqlink records it from
// SocketCAN, and its event records equal those of a replay of the very same simulated frames.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct LiveAcquisitionTests {
    @Test func socketCANAcquisitionRecordsWhatWasSent() throws {
        let work = try PackagePaths.temporaryDirectory("live")
        let dbc = try Agent.writeLiveExperiment(in: work)

        let script = """
            set -u
            w=\(work.path)
            \(Agent.daqlink) run --experiment $w/live.toml --source socketcan:vcan0 --journal $w/live-journal \\
                --quiet --drain-timeout 0 2>$w/daqlink.err &
            p=$!
            sleep 1
            \(Agent.daqctl) ecu-sim --dbc \(dbc) --to vcan0 --duration 2 --seed 5 2>$w/replay.err
            echo $? >$w/replay.rc
            sleep 0.5
            kill -INT $p
            wait $p
            echo $? >$w/daqlink.rc
            """
        let read = try Agent.runInVcanRig(script, buses: 2, in: work, name: "live.sh")
        #expect(read("replay.rc").hasPrefix("0"), "replay: \(read("replay.err"))")
        #expect(read("daqlink.rc").hasPrefix("0"), "daqlink: \(read("daqlink.err"))")
        let summary = read("daqlink.err")
        #expect(summary.contains("drops: kernel 0"), "\(summary)")

        // The same frames from a log: event records must match value for value.
        let traffic = work.appendingPathComponent("traffic.log").path
        let simulated = try runProcess(Agent.daqctl, ["ecu-sim", "--dbc", dbc, "--log", traffic, "--duration", "2",
                                                      "--seed", "5", "--bus", "vcan0"])
        #expect(simulated.status == 0, "\(simulated.stderr)")
        let fileJournal = work.appendingPathComponent("file-journal")
        let replay = try runProcess(Agent.daqlink, ["run", "--experiment", work.appendingPathComponent("live.toml").path,
                                                    "--source", "replay:\(traffic)",
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
        // The 5 ms raster ran on the live clock from the first frame until SIGINT (at least the 2 s of
        // traffic), one record every 5 ms with none missed (late ticks are caught up, never skipped).
        let fast = live.filter { $0["group"] as? String == "Time 5ms" }.compactMap { $0["dt"] as? Double }
        #expect(fast.count >= 400, "\(fast.count) records of the 5 ms group")
        #expect(zip(fast, fast.dropFirst()).allSatisfy { abs(($1 - $0) - 0.005) < 1e-9 })
        #expect(try runProcess(Agent.daqctl, ["journal", "verify", work.appendingPathComponent("live-journal").path]).status == 0)
    }

    /// Issue 4's end to end on a real bus: `daqctl ecu-sim --to vcan0` → daqlink (SocketCAN) →
    /// mosquitto (mTLS 1.3) → `daqctl collect` → `daqctl verify`, all inside the vcan guest (the
    /// guest has its own loopback; the PKI and broker configuration are made on the host).
    @Test func aLiveBusReachesTheCollectorByteIdentical() throws {
        let work = try PackagePaths.temporaryDirectory("live-uplink")
        let dbc = try Agent.writeLiveExperiment(in: work)
        let pki = work.appendingPathComponent("pki").path, broker = work.appendingPathComponent("broker").path
        for arguments in [["pki", "init", "--dir", pki], ["pki", "device", "--dir", pki, "rig-live"],
                          ["broker-config", "--pki", pki, "--out", broker, "--port", "18883", "--user", "root"]] {
            let result = try runProcess(Agent.daqctl, arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
        }

        let script = """
            set -u
            w=\(work.path)
            mosquitto -c \(broker)/mosquitto.conf >$w/mosquitto.log 2>&1 &
            m=$!
            sleep 1
            \(Agent.daqctl) collect --broker localhost:18883 --pki \(pki) --out $w/collected 2>$w/collect.err &
            c=$!
            \(Agent.daqlink) run --experiment $w/live.toml --source socketcan:vcan0 --journal $w/journal --quiet \\
                --duration 4 --drain-timeout 30 --broker 127.0.0.1:18883 --device rig-live --pki \(pki) 2>$w/daqlink.err &
            p=$!
            sleep 1
            \(Agent.daqctl) ecu-sim --dbc \(dbc) --to vcan0 --duration 2 --seed 7 2>$w/sim.err
            echo $? >$w/sim.rc
            wait $p
            echo $? >$w/daqlink.rc
            sleep 0.5
            kill -TERM $c; wait $c
            kill -TERM $m; wait $m
            \(Agent.daqctl) verify $w/journal $w/collected/rig-live >$w/verify.out 2>&1
            echo $? >$w/verify.rc
            """
        let read = try Agent.runInVcanRig(script, buses: 1, in: work, name: "live.sh")
        #expect(read("sim.rc").hasPrefix("0"), "ecu-sim: \(read("sim.err"))")
        #expect(read("daqlink.rc").hasPrefix("0"), "daqlink: \(read("daqlink.err"))")
        let summary = read("daqlink.err")
        #expect(summary.contains("drops: kernel 0") && summary.contains("0 resend requests"), "\(summary)")
        #expect(read("verify.rc").hasPrefix("0"), "verify: \(read("verify.out"))\ncollector: \(read("collect.err"))\nmosquitto: \(read("mosquitto.log"))")
        #expect(read("verify.out").contains("byte-identical: yes"))
        // Traffic really went over the bus: the event groups have records.
        #expect(read("verify.out").contains("Seg 2"), "\(read("verify.out"))")
    }
}
