// daqlink under systemd (Type=notify, WatchdogSec=): the real binary tells a notification socket
// it is ready, pings the watchdog at half its timeout for as long as its loop turns, and says
// when it stops. The socket here is the test's own, bound where $NOTIFY_SOCKET points.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ServiceNotifyTests {
    /// Binds an AF_UNIX datagram socket at `path`; returns its descriptor.
    static func bind(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        return fd
    }

    /// Runs daqlink with `arguments` and `environment`, reading the socket `fd` while it runs (it
    /// holds 10 datagrams); returns its exit status and the messages in order.
    static func run(_ arguments: [String], environment: [String: String], reading fd: Int32) throws -> (Int32, [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Agent.daqlink)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var found: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let running = process.isRunning
            while true {
                let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard count > 0 else { break }
                found.append(String(decoding: buffer[0..<count], as: UTF8.self))
            }
            if !running { break }
            _ = poll(&poller, 1, 20)
        }
        return (process.terminationStatus, found)
    }

    static func arguments(journal: URL, speed: String) -> [String] {
        ["run", "--experiment", PackagePaths.fixtures.appendingPathComponent("reference/reference.toml").path,
         "--source", "replay:" + PackagePaths.fixtures.appendingPathComponent("reference/engine-10s.log").path,
         "--speed", speed, "--duration", "2", "--journal", journal.path, "--quiet"]
    }

    @Test func daqlinkSaysReadyPingsTheWatchdogWhileItRunsAndSaysWhenItStops() throws {
        let work = try PackagePaths.temporaryDirectory("notify")
        let path = work.appendingPathComponent("notify").path
        let fd = try Self.bind(path)
        defer { close(fd) }
        let (status, messages) = try Self.run(Self.arguments(journal: work.appendingPathComponent("journal"), speed: "1"),
                                              environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"], reading: fd)
        #expect(status == 0)
        // 2 s of replay at a 100 ms ping: about 20 pings between READY and STOPPING.
        #expect(messages.first == "READY=1" && messages.last == "STOPPING=1", "\(messages)")
        let pings = messages.filter { $0 == "WATCHDOG=1" }.count
        #expect(pings >= 12 && pings <= 40, "\(pings) pings: \(messages)")

        // Another process's watchdog ($WATCHDOG_PID names someone else): ready, but no pings.
        let (otherStatus, other) = try Self.run(Self.arguments(journal: work.appendingPathComponent("journal-2"), speed: "max"),
                                                environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"],
                                                reading: fd)
        #expect(otherStatus == 0)
        #expect(other == ["READY=1", "STOPPING=1"])
    }

    /// A supervisor that does not read its socket (10 datagrams queued) never holds daqlink: the
    /// sends do not wait. It hung at the eleventh ping, acquisition with it.
    @Test func aSupervisorThatDoesNotReadNeverHoldsTheLoop() throws {
        let work = try PackagePaths.temporaryDirectory("notify-full")
        let path = work.appendingPathComponent("notify").path
        let fd = try Self.bind(path)
        defer { close(fd) }
        let run = try runProcess(Agent.daqlink, Self.arguments(journal: work.appendingPathComponent("journal"), speed: "1"),
                                 environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("stopped: duration"), "\(run.stderr)")
    }
}
