// The worker for blocking calls: jobs run on another thread, one after another in the order
// submitted, their results come back with their tokens once the pipe says so, and shutdown runs
// what is still queued before it returns.
import Foundation
import Testing
import Runtime
#if canImport(Glibc)
import Glibc
#endif

@Suite struct WorkerThreadTests {
    /// Records which thread ran each job and in what order.
    final class Log: @unchecked Sendable {
        // Confinement: appended to by the worker only, read by the test after the worker is done.
        var entries: [(token: Int, onCaller: Bool)] = []
    }

    @Test func jobsRunOffTheCallerInOrderAndReportTheirResults() throws {
        let worker = try WorkerThread("test jobs", name: "test-jobs")
        let log = Log()
        let caller = pthread_self()
        for token in 1...10 {
            worker.submit(token: token) {
                usleep(2_000)  // a blocking call
                log.entries.append((token, pthread_equal(pthread_self(), caller) != 0))
                return Int32(token * 10)
            }
        }
        var done: [WorkerThread.Completion] = []
        let deadline = Date().addingTimeInterval(10)
        while done.count < 10 && Date() < deadline {
            var fd = pollfd(fd: worker.fileDescriptor, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, 1000)
            done += worker.takeCompletions()
        }
        // The thread carries its name, set before its first job (`top -H`, and tests that trace it alone).
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        #expect(names.contains("test-jobs\n"), "\(names)")
        worker.shutdown()
        #expect(done.map(\.token) == Array(1...10))
        #expect(done.map(\.result) == (1...10).map { Int32($0 * 10) })
        #expect(log.entries.map(\.token) == Array(1...10))
        #expect(log.entries.allSatisfy { !$0.onCaller }, "every job ran on the worker thread")
    }

    @Test func shutdownRunsTheQueuedJobsFirst() throws {
        let worker = try WorkerThread("test jobs", name: "test-jobs")
        let log = Log()
        for token in 1...5 {
            worker.submit(token: token) {
                usleep(5_000)
                log.entries.append((token, false))
                return 0
            }
        }
        worker.shutdown()
        #expect(log.entries.map(\.token) == Array(1...5))
        #expect(worker.takeCompletions().map(\.token) == Array(1...5))
    }
}

extension WorkerThreadTests {
    /// The kernel's policy of the thread a job runs on: SCHED_IDLE (5) for an idle worker,
    /// SCHED_OTHER (0) otherwise — and the caller's own policy is left as it was.
    @Test func anIdleWorkerRunsItsJobsAtIdlePolicy() throws {
        for (priority, policy) in [(WorkerThread.Priority.idle, Int32(5)), (.normal, 0)] {
            let worker = try WorkerThread("policy probe", name: "policy-probe", priority: priority)
            worker.submit(token: 1) { sched_getscheduler(0) }
            worker.shutdown()
            #expect(worker.takeCompletions().map(\.result) == [policy], "\(priority)")
        }
        #expect(sched_getscheduler(0) == 0)
    }
}

extension WorkerThreadTests {
    /// A worker never takes a signal meant for the loop: SIGINT and SIGTERM are blocked in it
    /// even when the thread creating it had them unblocked (as before `SignalWatch`), and the
    /// creator's own mask is left as it was.
    @Test func aWorkerBlocksEverySignal() throws {
        @Sendable func blocked(_ signal: Int32) -> Int32 {
            var mask = sigset_t()
            pthread_sigmask(SIG_BLOCK, nil, &mask)
            return sigismember(&mask, signal)
        }
        // The creating thread with SIGINT and SIGTERM unblocked, as a program's main thread is
        // before `SignalWatch` (restored afterwards).
        var unblock = sigset_t(), saved = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        let before = (blocked(SIGINT), blocked(SIGTERM))
        #expect(before == (0, 0))
        let worker = try WorkerThread("mask probe", name: "mask-probe")
        worker.submit(token: 1) { blocked(SIGINT) + 2 * blocked(SIGTERM) }
        worker.shutdown()
        #expect(worker.takeCompletions().map(\.result) == [3], "SIGINT and SIGTERM blocked in the worker")
        #expect(blocked(SIGINT) == before.0 && blocked(SIGTERM) == before.1)
    }
}
