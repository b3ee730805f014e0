// A device revoked while connected. mosquitto checks the CRL only when a client connects: after
// `daqctl pki revoke` and a reload (SIGHUP) the device keeps its session and publishes on. The
// collector (with --pki) refuses its batches and says how to cut it; a broker restart does.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct RevokedDeviceTests {
    /// Polls `condition` every 100 ms for up to `seconds`.
    private func wait(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    @Test func aDeviceRevokedWhileConnectedIsRefusedByTheCollectorAndCutByARestart() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        try rig.startDevice(speed: "0.4")
        let journal = rig.collected.appendingPathComponent("\(rig.deviceID)/journal")
        func collectedBytes() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: journal.path)) ?? []
            return names.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: journal.appendingPathComponent($1).path)[.size] as? Int) ?? 0) }
        }
        #expect(wait(20) { collectedBytes() > 0 }, "nothing collected: \(rig.read("collector"))")

        let revoke = try runProcess(UplinkRig.daqctl, ["pki", "revoke", "--dir", rig.broker.pkiDirectory.path, rig.deviceID])
        #expect(revoke.status == 0, "\(revoke.stderr)")
        try rig.broker.reload()
        let alarm = "ALARM: \(rig.deviceID): its certificate was revoked"
        #expect(wait(10) { rig.read("collector").contains(alarm) }, "\(rig.read("collector"))")
        // Still connected (the reload cut nothing), still publishing, and nothing more is kept.
        UplinkRig.pause(0.5)
        let held = collectedBytes()
        UplinkRig.pause(3)
        #expect(rig.device?.isRunning == true)
        #expect(collectedBytes() == held, "batches of a revoked device were committed")
        #expect(rig.read("collector").components(separatedBy: alarm).count == 2, "one alarm: \(rig.read("collector"))")

        // A restart cuts it: its reconnects are refused in the TLS handshake.
        rig.broker.stop()
        try rig.broker.start()
        let before = rig.read("device-1").components(separatedBy: "connected to").count
        #expect(wait(15) { rig.broker.log().contains("certificate verify failed") }, "\(rig.broker.log())")
        UplinkRig.pause(2)
        let device = rig.read("device-1")
        #expect(rig.device?.isRunning == true)
        #expect(device.components(separatedBy: "connected to").count == before, "the revoked device connected again: \(device)")
        rig.killDevice()
    }
}
