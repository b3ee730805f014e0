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

    /// A broker (or a box on the way) that takes the TCP connection late (its connect still under
    /// way when the call returned) and never answers the TLS handshake: the device waits for the
    /// answer without polling. Before, libmosquitto's "wants to write" stayed set from the
    /// ClientHello's first, refused write (only a packet write clears it, and none can go during
    /// the handshake): the socket was polled for writing, always ready, at 100 % CPU until the
    /// connect timeout, at every attempt (a review; so, for one round trip, at every connection to
    /// a real broker). On loopback without the late connect that flag is never set.
    @Test func theDeviceDoesNotSpinWhileItsHandshakeWaitsForTheBroker() throws {
        let rig = try UplinkRig()
        let (silent, port) = try LoopbackTCP.listener()
        defer { close(silent) }
        let late = try TCPFaultProxy(targetPort: port, droppingSYNsFor: 0.5)
        defer { late.stop() }
        try rig.startDevice(speed: "0.1", extra: ["--connect-timeout", "30"], port: late.listenPort)
        defer { rig.killDevice() }
        #expect(UplinkRig.waitUntil(10) { late.connectionsAccepted >= 2 }, "the filler, then the device")
        UplinkRig.pause(0.5)
        let cpu = try rig.deviceCPUSeconds(pausing: 2)
        #expect(cpu < 0.5, "the device used \(cpu) s of CPU in 2 s while its handshake waited")
    }
}
