// A daqctl process taking a stream of large MQTT messages (the collector's load; here the bench's
// peer-C subscriber, the same daqctl main and MQTTConnection) reuses its freed heap instead of
// faulting fresh pages in for every message (`HeapReuse`). Real mosquitto with mTLS, real
// mosquitto_pub; the page faults are the child's own, from /proc/<pid>/stat.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct HeapReuseTests {
    /// Minor page faults of `pid` so far (/proc/<pid>/stat field 10).
    static func minorFaults(_ pid: pid_t) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        return Int(fields[7])!  // field 10 of the whole line
    }

    @Test func aStreamOfLargeMessagesFaultsNoFreshPagesPerMessage() throws {
        let broker = try MosquittoBroker(devices: ["heap-01"])
        defer { broker.stop() }
        let topic = "devices/heap-01/peer"
        let out = broker.directory.appendingPathComponent("subscriber.out")
        let identity = broker.collector
        let subscriber = try SpawnedProcess(
            [PackagePaths.executable("daqctl").path, "bench", "peer-subscriber",
             "--host", broker.host, "--port", "\(broker.port)", "--ca", broker.caFile.path,
             "--cert", identity.certificate.path, "--key", identity.key.path, "--topic", topic],
            stdout: out.path, stderr: broker.directory.appendingPathComponent("subscriber.err").path)
        defer { subscriber.terminate(graceSeconds: 2) }
        func lines() -> [Substring] {
            ((try? String(contentsOf: out, encoding: .utf8)) ?? "").split(separator: "\n")
        }
        let deadline = Date().addingTimeInterval(10)
        while lines().first != "subscribed" && Date() < deadline { usleep(20_000) }
        #expect(lines().first == "subscribed", "the subscriber did not subscribe")

        // 200 messages of 130,000 bytes (the size of an uplink part), one mosquitto_pub.
        let count = 200, size = 130_000
        let messages = broker.directory.appendingPathComponent("messages.txt")
        let line = String(repeating: "a", count: size) + "\n"
        try String(repeating: line, count: count).write(to: messages, atomically: true, encoding: .utf8)
        let before = try Self.minorFaults(subscriber.pid)
        let publisher = (["mosquitto_pub"] + broker.clientArguments(broker.device("heap-01"))
                         + ["-t", topic, "-q", "1", "-l"]).joined(separator: " ")
        let published = try broker.runClient(["sh", "-c", "\(publisher) < \(messages.path)"])
        #expect(published.status == 0, "\(published.stderr)")
        let received = Date().addingTimeInterval(20)
        while lines().count < count + 1 && Date() < received { usleep(20_000) }
        let faults = try Self.minorFaults(subscriber.pid) - before

        #expect(lines().dropFirst().count == count)
        #expect(lines().dropFirst().allSatisfy { $0 == "\(size)" })
        // Each message's blocks (libmosquitto's packet and payload copy, our payload array) are 32
        // pages each: faulted in afresh, 63 faults per message were measured with glibc's
        // defaults (12,632 for these 200); reused, 94 for all 200.
        #expect(faults < count * 5, "\(faults) page faults for \(count) messages of \(size) bytes")
    }
}
