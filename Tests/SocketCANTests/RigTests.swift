// vcan-setup.sh itself: the guest's (or host's) command exit code reaches the caller.
import Testing

@Suite("vcan-setup.sh", .enabled(if: CANRig.isAvailable, "needs a kernel with CAN or linux.uml (user-mode-linux)"))
struct RigTests {
    @Test("--run passes the command's exit code through", arguments: [
        (["false"], Int32(1)),
        (["sh", "-c", "exit 7"], Int32(7)),
        (["sh", "-c", "ip link show vcan0 >/dev/null && echo up"], Int32(0)),
    ])
    func exitCodePassThrough(command: [String], status: Int32) throws {
        let result = try CANRig.setup(["--run", "--"] + command)
        #expect(result.status == status, "stdout: \(result.stdout) stderr: \(result.stderr)")
        if status == 0 { #expect(result.stdout == "up\n") }
    }

    @Test("--help explains both the host and the guest path")
    func help() throws {
        let result = try CANRig.setup(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("WITH CAN") && result.stdout.contains("WITHOUT CAN") && result.stdout.contains("--run"))
    }
}
