// The device's TLS handshake over a TCP connect that is still under way when connect() returns,
// as over any real network (Wi-Fi, 4G, a LAN). On loopback the kernel completes a connect inside
// the call, and every other test connects over loopback: this one drops the first SYN
// (`TCPFaultProxy(targetPort:droppingSYNsFor:)`), so the connect completes a second later, on
// the SYN the device's kernel sends again.
import FaultInjection
import Foundation
import Testing
import TestSupport

@Suite struct PendingTCPConnectTests {
    /// libmosquitto 2.0.11 writes the ClientHello right after its non-blocking connect; with the
    /// connect still under way that write waits for the socket to be writable, and only
    /// `mosquitto_loop_read` goes on with it. Before, daqlink answered writability with
    /// `mosquitto_loop_write` alone, which writes nothing while the handshake is pending: the
    /// device polled a writable socket at 100 % CPU until its 5-s connect timeout, at every
    /// attempt, and reached no broker that was not on its own host. (Here the second attempt
    /// got through, its SYN no longer dropped.)
    @Test func theDeviceConnectsAtItsFirstAttemptWhenTheTCPConnectIsStillUnderWay() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        let slow = try TCPFaultProxy(targetPort: rig.broker.port, droppingSYNsFor: 0.5)
        defer { slow.stop() }
        try rig.startDevice(speed: "4", port: slow.listenPort)
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        let connected = log.split(separator: "\n").first { $0.contains("connected to 127.0.0.1:\(slow.listenPort)") }.map(String.init) ?? ""
        #expect(connected.hasSuffix("sending from 1") && !connected.contains("failed attempt"), "the first attempt connects (about a second, for the SYN sent again): \(log)")
        #expect(!log.contains("cannot connect"), "\(log)")
        rig.stopCollector()
        let verify = try rig.verify(within: 0)
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)")
    }
}
