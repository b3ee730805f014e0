// A broker given by name, while name lookups hang (a 4G dead spot: DNS queries go out and nothing
// comes back). libmosquitto resolves the name inside mosquitto_connect_async with a blocking
// getaddrinfo; called on the device's loop, every connect attempt stopped acquisition for the
// resolver's whole timeout. The device runs in its own mount namespace (unshare, as root) with
// its own resolv.conf (a nameserver on 127.0.0.9 that never answers, 2 s timeout), hosts and
// nsswitch.conf, so nothing outside the test sees them; the broker's name is "localhost", in
// its certificate, and missing from that hosts file until the test adds it.
import Foundation
import Runtime
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct NameLookupTests {
    @Test func acquisitionGoesOnWhileTheBrokersNameDoesNotResolve() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        // A nameserver that takes every query and answers none.
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(silent >= 0)
        defer { close(silent) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(53).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.9")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0, "binding 127.0.0.9:53 needs root: \(String(cString: strerror(errno)))")

        let (wrapper, hosts) = try privateResolver(in: rig.work, nameserver: "127.0.0.9", timeout: 2)
        let trace = rig.work.appendingPathComponent("appends.trace")
        let started = SystemClock.realtime()  // the append trace's clock
        // Raw parts: what is measured is the loop during lookups, and a debug build's codec 4 holds
        // the loop 0.3–0.5 s per part of the backlog (the ring's, once the name resolves; seen in CI).
        try rig.startDevice(speed: "1", extra: ["--no-compression"], host: "localhost",
                            wrapper: wrapper,
                            environment: ["DAQLINK_APPEND_TRACE": trace.path])
        UplinkRig.pause(5)
        // The name resolves again (the hosts file is read at every lookup): the backlog drains.
        try "127.0.0.1 localhost\n".write(to: hosts, atomically: false, encoding: .utf8)
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        #expect(log.contains("acknowledged up to 3637"), "\(log)")
        try rig.expectIdentical("name resolved again")

        // Entries kept being appended all along (at ×1 one every few ms): while lookups hung, and
        // after. A lookup on the loop stopped them for its whole 2 s timeout at every attempt.
        let appends = try UplinkRig.appendTimes(trace)
        try #require(appends.filter { $0 < started + 5_000_000_000 }.count > 100, "too few entries appended while lookups hung")
        let longestGap = UplinkRig.longestGap(appends)
        #expect(longestGap < 500_000_000, "acquisition stood still for \(Double(longestGap) / 1e9) s while the name did not resolve")
    }
}
