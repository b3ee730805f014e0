// What the collector acknowledges survives a power loss: the directories it makes for a new
// device's copy (`<out>/`, `<out>/<device>/`, its `journal/`) are synced into their parents
// before the first ack, not only the segment and the journal directory. Before, they were made
// with a plain mkdir: the segment was synced and acknowledged (the device then trims), while the
// directory entries naming it were not, and a power cut could take the whole copy.
// Checked on the real collector's system calls (strace), since a power cut cannot be.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct CollectorDurabilityTests {
    @Test func newDirectoriesAreSyncedIntoTheirParentsBeforeTheFirstAck() throws {
        let rig = try UplinkRig()
        let trace = rig.work.appendingPathComponent("collector.strace")
        try rig.startCollector(wrapper: ["/usr/bin/strace", "-f", "-qq", "-o", trace.path,
                                         "-e", "trace=mkdir,mkdirat,openat,fsync,fdatasync,close"])
        try rig.startDevice(speed: "max", extra: ["--duration", "1"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        rig.stopCollector()
        try rig.expectIdentical("under strace")

        // Per descriptor: the directory it was opened on; per directory made: whether an fsync of
        // its parent followed.
        let lines = try String(contentsOf: trace, encoding: .utf8).split(separator: "\n")
        var openDirectories: [String: String] = [:]  // "pid fd" → path
        var made: [String] = []
        var synced: Set<String> = []
        for line in lines {
            let pid = line.prefix { $0 != " " }
            if let match = line.firstMatch(of: /mkdir(?:at)?\((?:AT_FDCWD, )?"([^"]+)", [0-7]+\) = 0/) {
                made.append(String(match.1))
            } else if let match = line.firstMatch(of: /openat\(AT_FDCWD, "([^"]+)", O_RDONLY\|O_CLOEXEC\|O_DIRECTORY|openat\(AT_FDCWD, "([^"]+)", O_RDONLY\|O_DIRECTORY\|O_CLOEXEC/),
                      let fd = line.firstMatch(of: /\) = (\d+)$/) {
                openDirectories["\(pid) \(fd.1)"] = String(match.1 ?? match.2 ?? "")
            } else if let match = line.firstMatch(of: /fsync\((\d+)\)\s+= 0/), let path = openDirectories["\(pid) \(match.1)"] {
                synced.insert(path)
            }
        }
        let out = rig.collected.path
        for directory in [out, "\(out)/ecu-01", "\(out)/ecu-01/journal"] {
            #expect(made.contains(directory), "\(directory) made: \(made)")
            let parent = (directory as NSString).deletingLastPathComponent
            #expect(synced.contains(parent), "the parent of \(directory) synced: \(synced.sorted())")
        }
    }
}
