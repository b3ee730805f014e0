// daqctl ecu-sim on a real vcan bus (inside the UML guest when the host kernel has no CAN):
// daqctl listen records 2 s of simulated traffic; ids and per-message rates must match the DBC.
import DAQCore
import DBC
import Foundation
import Testing
import TestSupport

private let setupScript = PackagePaths.root.appendingPathComponent("vcan-setup.sh").path

/// The same check the SocketCAN suites make: a CAN kernel, a vcan module, or linux.uml.
private let vcanAvailable: Bool = {
    let files = FileManager.default
    if files.fileExists(atPath: "/proc/net/can") { return true }
    if let release = try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines),
       let names = try? files.contentsOfDirectory(atPath: "/lib/modules/\(release)/kernel/drivers/net/can/"),
       names.contains(where: { $0.hasPrefix("vcan.ko") }) {
        return true
    }
    return ["/usr/bin/linux.uml", "/usr/bin/linux"].contains { files.isExecutableFile(atPath: $0) }
}()

private let liveScript = #"""
set -u
out=$1; daqctl=$2; dbc=$3
"$daqctl" listen --on vcan0 --duration 8 >"$out/listen.log" 2>"$out/listen.err" &
p=$!
for _ in $(seq 250); do grep -q "listening on vcan0" "$out/listen.err" 2>/dev/null && break; sleep 0.02; done
"$daqctl" ecu-sim --dbc "$dbc" --to vcan0 --duration 2 --seed 3 2>"$out/sim.err"; echo $? >"$out/sim.rc"
sleep 0.3
kill -INT $p; wait $p; echo $? >"$out/listen.rc"
"""#

@Suite("daqctl ecu-sim on a real vcan bus", .enabled(if: vcanAvailable, "needs a kernel with CAN or linux.uml"))
struct ECUSimLiveTests {
    @Test("2 s on vcan0: every DBC message arrives at its cycle time (±20 %)")
    func ratesOnVCAN() throws {
        let directory = try PackagePaths.temporaryDirectory("ecu-sim-live")
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("live.sh")
        try liveScript.write(to: script, atomically: true, encoding: .utf8)
        let result = try runProcess(setupScript, ["--run", "--", "bash", script.path, directory.path,
                                                  PackagePaths.executable("daqctl").path, engineDBCPath])
        try #require(result.status == 0, "\(result.stdout)\(result.stderr)")
        func text(_ name: String) -> String {
            (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
        }
        #expect(text("sim.rc").hasPrefix("0"), "\(text("sim.err"))")
        #expect(text("sim.err").contains("ecu-sim summary: sent="))

        let database = try loadDBC(engineDBCPath)
        var counts: [UInt32: Int] = [:]
        for line in text("listen.log").split(separator: "\n") {
            // (SECONDS) IFACE ID#DATA
            let fields = line.split(separator: " ")
            guard fields.count == 3, let body = fields[2].split(separator: "#").first,
                  let id = UInt32(body, radix: 16) else { continue }
            counts[id, default: 0] += 1
        }
        let known = Set(database.messages.map(\.id))
        #expect(Set(counts.keys).subtracting(known).isEmpty, "ids not in the DBC: \(Set(counts.keys).subtracting(known))")
        for message in database.messages {
            let expected = 2.0 * 1000 / Double(message.cycleTime ?? 100)
            let got = Double(counts[message.id] ?? 0)
            #expect(abs(got - expected) <= expected * 0.2, "\(message.name): \(got) frames, expected \(expected)")
        }
        print("ecu-sim live: \(counts.values.reduce(0, +)) frames recorded; \(text("sim.err").split(separator: "\n").first ?? "")")
    }
}
