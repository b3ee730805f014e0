// Live acquisition when the bus misbehaves (inside the UML guest here; on the host where the
// kernel has CAN): two buses at once, an interface that goes down and up, a burst while daqlink
// is stopped, a bus saturated. From a review that met each of these on vcan.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct LiveBusFaultTests {
    /// The number after `label` in the summary line of frames, 0 when it is not there.
    private func count(_ label: String, in summary: String) -> Int {
        guard let range = summary.range(of: label) else { return 0 }
        return Int(summary[range.upperBound...].prefix { $0.isNumber }) ?? -1
    }

    @Test func twoBusesAnInterfaceDownABurstAndASaturatedBus() throws {
        let work = try PackagePaths.temporaryDirectory("live-faults")
        let dbc = try Agent.writeLiveExperiment(in: work)
        let one = work.appendingPathComponent("live.toml").path
        let two = work.appendingPathComponent("live2.toml")
        try String(contentsOfFile: one, encoding: .utf8).replacingOccurrences(of: "buses = [\"vcan0\"]", with: "buses = [\"vcan0\", \"vcan1\"]")
            .write(to: two, atomically: true, encoding: .utf8)
        let run = "\(Agent.daqlink) run --quiet --drain-timeout 0"
        let script = """
            set -u
            w=\(work.path)
            # Waits until daqlink has opened its sockets (it names its journal right after).
            ready() { for i in $(seq 200); do grep -q "a new journal" "$1" && return; sleep 0.05; done; }
            # Two buses: frames of both, in time order.
            \(run) --experiment \(two.path) --source socketcan:vcan0,vcan1 --journal $w/j2 --duration 3 2>$w/two.err &
            p=$!
            ready $w/two.err
            \(Agent.daqctl) ecu-sim --dbc \(dbc) --bus can0,can1 --to can0=vcan0,can1=vcan1 --duration 2 --seed 3 2>$w/sim2.err
            wait $p; echo $? >$w/two.rc

            # The interface goes down and up mid-run, and is down at the start of another.
            \(run) --experiment \(one) --source socketcan:vcan0 --journal $w/jd --duration 3 2>$w/down.err &
            p=$!
            ready $w/down.err; sleep 0.3; ip link set vcan0 down; sleep 0.5; ip link set vcan0 up; sleep 0.3
            cansend vcan0 100#0102030405060708
            wait $p; echo $? >$w/down.rc
            ip link set vcan0 down
            \(run) --experiment \(one) --source socketcan:vcan0 --journal $w/js --duration 2 2>$w/startdown.err &
            p=$!
            ready $w/startdown.err; sleep 0.3; ip link set vcan0 up; sleep 0.3
            cansend vcan0 100#0102030405060708
            wait $p; echo $? >$w/startdown.rc

            # A burst while daqlink is stopped: what the queue could not hold is counted. The
            # duration leaves time to read the queue after it: on a slower guest the 4 s it had
            # ended while 3,755 queued frames were still unread (neither read nor counted).
            \(run) --experiment \(one) --source socketcan:vcan0 --journal $w/jb --duration 10 2>$w/burst.err &
            p=$!
            ready $w/burst.err; kill -STOP $p
            cangen vcan0 -g 0 -I 300 -L 8 -D i -n 30000
            kill -CONT $p
            wait $p; echo $? >$w/burst.rc

            # A saturated bus: the loop still writes the journal and a signal still stops it soon.
            \(run) --experiment \(one) --source socketcan:vcan0 --journal $w/jl 2>$w/load.err &
            p=$!
            ready $w/load.err
            cangen vcan0 -g 0 -I 300 -L 8 -D i &
            g=$!
            sleep 3
            du -sb $w/jl | cut -f1 >$w/load.size1
            sleep 2
            du -sb $w/jl | cut -f1 >$w/load.size2
            # (A loop that never returned to its signals hung here for good: killed after 20 s.)
            ( sleep 20; kill -9 $p ) 2>/dev/null &
            k=$!
            t0=$(date +%s%N); kill -TERM $p; wait $p; echo $? >$w/load.rc; t1=$(date +%s%N)
            kill $k 2>/dev/null
            echo $(( (t1 - t0) / 1000000 )) >$w/load.stopms
            kill $g; wait $g 2>/dev/null
            true
            """
        let read = try Agent.runInVcanRig(script, buses: 2, in: work, name: "faults.sh")

        let two2 = read("two.err")
        #expect(read("two.rc").hasPrefix("0"), "\(two2)")
        let frames = count("frames: ", in: two2)
        // Read bus by bus, about half the frames were taken as older than the other bus's last
        // one and moved to its time (5,547 of 11,415).
        #expect(frames > 1000 && count("stamped before the frame ahead of them ", in: two2) * 100 <= frames, "\(two2)")

        let down = read("down.err")
        #expect(read("down.rc").hasPrefix("0"), "the run ended at the interface going down: \(down)")
        #expect(down.contains("vcan0: the interface is down") && down.contains("vcan0: frames again"), "\(down)")
        #expect(down.contains("interface found down 1 times"), "\(down)")
        #expect(try runProcess(Agent.daqctl, ["journal", "verify", work.appendingPathComponent("jd").path]).status == 0)
        let startDown = read("startdown.err")
        #expect(read("startdown.rc").hasPrefix("0") && startDown.contains("vcan0: frames again"), "\(startDown)")

        let burst = read("burst.err")
        #expect(read("burst.rc").hasPrefix("0"), "\(burst)")
        // Every frame of the burst is either read or counted as dropped (the drops at its end
        // were told by no later frame, and the summary said "kernel 0").
        let kernel = burst.range(of: "drops: kernel ").map { Int(burst[$0.upperBound...].prefix { $0.isNumber }) ?? -1 } ?? -1
        #expect(count("frames: ", in: burst) + kernel == 30000, "\(burst)")

        let load = read("load.err")
        #expect(read("load.rc").hasPrefix("0"), "\(load)")
        let (size1, size2) = (Int(read("load.size1").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
                              Int(read("load.size2").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
        #expect(size2 > size1, "the journal did not grow under load: \(size1) → \(size2)")
        let stop = Int(read("load.stopms").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(stop >= 0 && stop < 3000, "SIGTERM to exit under load: \(stop) ms")
        print("live faults: two buses \(frames) frames; burst \(burst.split(separator: "\n").first { $0.contains("drops:") } ?? ""); stop under load \(stop) ms; journal \(size1) → \(size2) bytes")
    }
}
