// A copied device certificate: two live connections present it and keep replacing each other's
// session. Neither client is told (mosquitto 2.0.11 sends no DISCONNECT 0x8E), but the broker logs
// each replacement on $SYS/broker/log/E, where the collector watches for it. Real mosquitto, real
// collector, two real daqlink processes with one identity.
import Foundation
import Testing
import TestSupport
@testable import Collector
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SessionTakeoverWatchTests {
    @Test func findsTheClientInMosquittosLine() {
        #expect(SessionTakeoverWatch.replacedClient(in: "2026-11-22T01:30:00: Client ecu-01 already connected, closing old connection.") == "ecu-01")
        #expect(SessionTakeoverWatch.replacedClient(in: "1759900040: Client bench-03 already connected, closing old connection.") == "bench-03")
        #expect(SessionTakeoverWatch.replacedClient(in: "Client ecu-01 disconnected.") == nil)
        #expect(SessionTakeoverWatch.replacedClient(in: "Client  already connected, closing old connection.") == nil)
    }

    @Test func oneReplacementIsNormalRepeatedOnesAreATakeover() {
        var watch = SessionTakeoverWatch()
        let line = "t: Client ecu-01 already connected, closing old connection."
        let second: Int64 = 1_000_000_000
        // A device back from a dead link replaces its half-open connection once.
        #expect(watch.observe(line, now: 0) == .replaced(client: "ecu-01", count: 1))
        #expect(watch.observe("t: Client ecu-02 already connected, closing old connection.", now: second) == .replaced(client: "ecu-02", count: 1))
        #expect(watch.observe("t: New connection from 127.0.0.1", now: second) == .unrelated)
        #expect(watch.observe(line, now: 90 * second) == .replaced(client: "ecu-01", count: 1))  // the first is out of the window
        #expect(watch.observe(line, now: 91 * second) == .replaced(client: "ecu-01", count: 2))
        #expect(watch.observe(line, now: 92 * second) == .takeover(client: "ecu-01", count: 3))
        // Once per window, however long the fight goes on.
        #expect(watch.observe(line, now: 93 * second) == .replaced(client: "ecu-01", count: 4))
        // A minute later, still fighting: alarmed again.
        #expect(watch.observe(line, now: 160 * second) == .replaced(client: "ecu-01", count: 1))
        #expect(watch.observe(line, now: 161 * second) == .replaced(client: "ecu-01", count: 2))
        #expect(watch.observe(line, now: 162 * second) == .takeover(client: "ecu-01", count: 3))
    }
}

@Suite(.serialized) struct SessionTakeoverTests {
    @Test func twoConnectionsWithOneCertificateRaiseATakeoverAlarm() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        try rig.startDevice(speed: "1")
        UplinkRig.pause(1)
        // The copy: the same certificate and key (so the same client id), elsewhere.
        let copy = try rig.launchDevice(id: rig.deviceID, journal: rig.work.appendingPathComponent("copy/journal"), speed: "1")
        defer {
            kill(copy.processIdentifier, SIGKILL)
            copy.waitUntilExit()
            rig.killDevice()
            rig.stopCollector()
        }
        let deadline = Date().addingTimeInterval(30)
        while !rig.read("collector").contains("ALARM: session takeover"), Date() < deadline { UplinkRig.pause(0.2) }
        let log = rig.read("collector")
        #expect(log.contains("ALARM: session takeover: the connection of client ecu-01 was replaced"), "\(log)")
        let events = (try? String(contentsOf: rig.collected.appendingPathComponent("security-events.jsonl"), encoding: .utf8)) ?? ""
        #expect(events.contains("\"client\": \"ecu-01\", \"event\": \"session takeover\""), "\(events)")
    }
}
