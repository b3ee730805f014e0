// `daqctl bench uplink` end to end with tiny sizes: a real mosquitto (mTLS), collector and device
// as processes (and the fault proxy as the rate-limited link); the JSON carries positive drain, peer,
// wire-ratio, CPU, latency and rate-limited-drain figures. No timing
// is asserted: figures vary by machine. Every process the command starts must be gone afterwards.
import Foundation
import Testing
import TestSupport

@Suite("daqctl bench uplink")
struct BenchUplinkCommandTests {
    @Test("--backlog-mb 1 --latency-seconds 2 --cellular-mb 1 --rounds 2 --json reports positive figures")
    func smallBenchmark() throws {
        let daqctl = PackagePaths.executable("daqctl").path
        let work = try PackagePaths.temporaryDirectory("bench-uplink")
        defer { try? FileManager.default.removeItem(at: work) }
        let result = try runProcess(daqctl, ["bench", "uplink", "--backlog-mb", "1", "--latency-seconds", "2", "--cellular-mb", "1", "--json",
                                             "--rounds", "2", "--workdir", work.path,
                                             "--fixtures", PackagePaths.fixtures.appendingPathComponent("reference").path])
        try #require(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any],
                                  "not JSON: \(result.stdout)")

        func positive(_ path: String) {
            var value: Any? = object
            for key in path.split(separator: ".") { value = (value as? [String: Any])?[String(key)] }
            #expect(((value as? NSNumber)?.doubleValue ?? 0) > 0, "\(path) in \(result.stdout)")
        }
        for path in ["backlog.journalBytes", "backlog.records", "backlog.recordPayloadBytes",
                     "drain.journalBytes", "drain.batches", "drain.wireBytes", "drain.seconds", "drain.megabytesPerSecond",
                     "peer.messages", "peer.bytes", "peer.seconds", "peer.megabytesPerSecond", "ratio", "rawRatio",
                     "wirePeer.messages", "wirePeer.wireBytes", "wirePeer.seconds", "wirePeer.journalMegabytesPerSecond",
                     "wire.drainWirePerRecordByte", "wire.steadyWirePerRecordByte",
                     "latency.entries", "latency.p50Ms", "latency.p99Ms", "latency.maxMs",
                     "drain.drainSeconds", "drain.fromStartMegabytesPerSecond",
                     "drain.cpuSeconds.device", "drain.cpuSeconds.collector", "wirePeer.cpuSeconds", "cpuRatio",
                     "apartPeer.messages", "apartPeer.wireBytes", "apartPeer.seconds", "apartPeer.journalMegabytesPerSecond",
                     "apartPeer.overWirePeer", "apartPeer.publisherCPUSeconds", "apartPeer.subscriberCPUSeconds",
                     "cellular.bytesPerSecond", "cellular.journalBytes", "cellular.wireBytes", "cellular.megabytesPerSecond",
                     "cellular.wirePerRecordByte", "cellular.rawPeerMegabytesPerSecond", "cellular.wirePeerJournalMegabytesPerSecond"] {
            positive(path)
        }
        // The broker's share of 1 MB can round to nothing (its run time is counted when it is
        // scheduled out), and the collector's MDF files may have caught up during the drain:
        // present and not negative.
        for path in ["drain.cpuSeconds.broker", "wirePeer.brokerCPUSeconds", "drain.cpuSeconds.collectorAfter",
                     "drain.cpuSeconds.collectorSettleSeconds"] {
            var value: Any? = object
            for key in path.split(separator: ".") { value = (value as? [String: Any])?[String(key)] }
            #expect(((value as? NSNumber)?.doubleValue ?? -1) >= 0, "\(path) in \(result.stdout)")
        }

        // Peer A sends the drain's own messages: as many, and as many bytes (raw parts rebuilt from
        // the journal by reference, coded ones as recorded; the bench checks each rebuilt one).
        func number(_ path: String) -> Double? {
            var value: Any? = object
            for key in path.split(separator: ".") { value = (value as? [String: Any])?[String(key)] }
            return (value as? NSNumber)?.doubleValue
        }
        #expect(number("wirePeer.messages") == number("drain.batches"), "\(result.stdout)")
        #expect(number("wirePeer.wireBytes") == number("drain.wireBytes"), "\(result.stdout)")
        // Peer C sends the same messages to a subscriber in its own process, which got them all.
        #expect(number("apartPeer.messages") == number("drain.batches"), "\(result.stdout)")
        #expect(number("apartPeer.wireBytes") == number("drain.wireBytes"), "\(result.stdout)")

        // Two rounds, each a full drain of the restored backlog and peer A with its messages; the
        // ratio is their median (of two: the mean) and lies between theirs.
        let rounds = try #require(object["rounds"] as? [[String: Any]], "\(result.stdout)")
        #expect(rounds.count == 2)
        for round in rounds {
            for key in ["drainMegabytesPerSecond", "peerJournalMegabytesPerSecond", "ratio"] {
                #expect(((round[key] as? NSNumber)?.doubleValue ?? 0) > 0, "\(key) in \(round)")
            }
            // Its parts by coding add up to its batches (how many depends on the drain's timing).
            #expect(((round["parts"] as? [NSNumber]) ?? []).reduce(0) { $0 + $1.intValue } == (round["batches"] as? NSNumber)?.intValue,
                    "\(round)")
        }
        if let ratio = number("ratio"), let low = number("ratioMin"), let high = number("ratioMax") {
            #expect(low <= ratio && ratio <= high, "\(result.stdout)")
        } else {
            Issue.record("ratio, ratioMin, ratioMax missing in \(result.stdout)")
        }
        // The second round drained into a collector of its own, which committed the whole backlog.
        let secondLog = try String(contentsOf: work.appendingPathComponent("collector-2.log"), encoding: .utf8)
        #expect(secondLog.contains("collector: bench-01: committed up to"), "\(secondLog)")

        // No process started from the work directory outlives the command.
        let leftovers = try runProcess("pgrep", ["-f", work.path])
        #expect(leftovers.stdout.isEmpty, "still running: \(leftovers.stdout)")
    }
}
