// The collector connects off its loop (`BrokerConnector`). Its durable connect blocks in TCP
// connect, and against a host that drops the SYN that lasted the kernel's two minutes of retries,
// deaf to signals. Now a signal stops it at once whatever the broker does; an attempt that gets no
// MQTT session within --connect-timeout is reported and tried again until the broker answers.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CollectorConnectTests {
    /// A loopback listener whose accept queue is full: the kernel drops every further SYN, so a
    /// blocking connect to it waits out its retransmissions.
    final class SYNSink {
        private var fds: [Int32] = []
        let port: Int

        init() throws {
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 }
            }
            guard bound, listen(listener, 0) == 0 else { throw POSIXError(.EADDRINUSE) }
            fds.append(listener)
            port = Int(UInt16(bigEndian: address.sin_port))
            // Fill the queue (a backlog of 0 holds one); the SYNs beyond it are dropped.
            for _ in 0..<3 {
                let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                _ = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                fds.append(client)
            }
            usleep(100_000)
        }

        deinit { fds.forEach { close($0) } }
    }

    @Test func aCollectorWaitingOnAHostThatDropsTheSYNStopsAtOnce() throws {
        let rig = try UplinkRig()
        let sink = try SYNSink()
        try rig.startCollector(port: sink.port, subscribed: false)
        UplinkRig.pause(1.5)
        let signalled = Date()
        rig.stopCollector(signal: SIGTERM)
        let took = Date().timeIntervalSince(signalled)
        #expect(took < 3, "the collector took \(took) s to stop; log: \(rig.read("collector"))")
    }

    @Test func anAttemptWithNoSessionIsReportedAndRetriedUntilTheBrokerAnswers() throws {
        let rig = try UplinkRig()
        rig.proxy.set(.blackhole)  // TCP is accepted, nothing comes back: the TLS handshake never ends
        try rig.startCollector(port: rig.proxy.listenPort, subscribed: false, extra: ["--connect-timeout", "1.5"])
        var deadline = Date().addingTimeInterval(8)
        while !rig.read("collector").contains("no MQTT session within 1.5 s"), Date() < deadline { usleep(50_000) }
        let log = rig.read("collector")
        #expect(log.contains("cannot connect to localhost:\(rig.proxy.listenPort): no MQTT session within 1.5 s; retrying"), "\(log)")
        UplinkRig.pause(2)  // more attempts time out the same way: reported once
        #expect(rig.read("collector").components(separatedBy: "no MQTT session").count == 2, "\(rig.read("collector"))")

        rig.proxy.set(.up)
        deadline = Date().addingTimeInterval(10)
        while !rig.read("collector").contains("daqctl collect: subscribed"), Date() < deadline { usleep(50_000) }
        #expect(rig.read("collector").contains("daqctl collect: subscribed"), "\(rig.read("collector"))")
        rig.stopCollector()
    }

    /// The collector's own link cut under it: one line with why, one when it is back (it said
    /// nothing, and an operator could not tell a collector reconnecting from one that hangs).
    @Test func aCollectorThatLosesTheBrokerSaysWhyAndWhenItIsBack() throws {
        let rig = try UplinkRig()
        try rig.startCollector(port: rig.proxy.listenPort)
        #expect(rig.read("collector").contains("daqctl collect: subscribed"), "\(rig.read("collector"))")
        rig.proxy.resetConnections()
        let deadline = Date().addingTimeInterval(10)
        while !rig.read("collector").contains("connected again after"), Date() < deadline { usleep(50_000) }
        let log = rig.read("collector")
        let lost = log.split(separator: "\n").filter { $0.contains("daqctl collect: lost the broker at localhost:\(rig.proxy.listenPort): ") }
        #expect(lost.count == 1 && lost[0].contains("; reconnecting every second"), "\(log)")
        #expect(log.contains("daqctl collect: connected again after "), "\(log)")
        rig.stopCollector()
    }
}
