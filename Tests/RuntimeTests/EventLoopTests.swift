// The cooperative loop: timers in deadline order under virtual time; real fds and real signals.
import Testing
import Glibc
@testable import Runtime

@Suite struct EventLoopTests {
    @Test func timersFireInDeadlineOrderUnderVirtualTime() throws {
        let clock = VirtualClock(start: 1_000)
        let loop = EventLoop(clock: clock, sleeps: false)
        var fired: [(String, Int64)] = []
        loop.schedule(at: 5_000) { fired.append(("b", clock.now())) }
        loop.schedule(at: 2_000) { fired.append(("a", clock.now())) }
        let c = loop.schedule(at: 3_000) { fired.append(("cancelled", clock.now())) }
        loop.schedule(at: 5_000) {
            fired.append(("b2", clock.now()))
            loop.schedule(at: 9_000) { fired.append(("chained", clock.now())) }
        }
        loop.cancel(c)
        try loop.run()
        #expect(fired.map(\.0) == ["a", "b", "b2", "chained"])
        #expect(fired.map(\.1) == [2_000, 5_000, 5_000, 9_000])
    }

    @Test func readableDescriptorIsDispatched() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let loop = EventLoop()
        var got: [UInt8] = []
        loop.watch(fds[0], interest: .read) { _ in
            var byte: UInt8 = 0
            _ = read(fds[0], &byte, 1)
            got.append(byte)
            if got.count == 2 { loop.stop() }
        }
        var a: UInt8 = 7, b: UInt8 = 9
        _ = write(fds[1], &a, 1)
        loop.schedule(at: loop.clock.now() + 2_000_000) { _ = write(fds[1], &b, 1) }
        try loop.run()
        #expect(got == [7, 9])
    }
    // SignalWatch is tested through the real daqlink binary (SIGTERM → clean shutdown): in this
    // multi-threaded test process a blocked signal would still kill it through another thread.
}
