// Blocking calls off the event loop. Some calls have no non-blocking form: fdatasync and fsync
// (Linux has none short of io_uring), getaddrinfo (libmosquitto resolves a broker's name inside
// mosquitto_connect_async; a 4G dead spot makes that wait for the resolver's timeouts) and the
// blocking TCP connect of mosquitto_connect_bind_v5. And some work may trail the loop at idle
// priority (the collector's MDF files). One worker thread runs such jobs one after another;
// completions wake the loop through a pipe. The loop still decides everything: what to run, and
// what to do with each result.
import DAQCore
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// One worker thread running blocking jobs for the loop, in the order submitted. Unchecked
/// Sendable: the worker and the owner share only `jobs`, `completions` and `stopping`, each
/// touched under `mutex`; `running` and `thread` are the owner's alone.
public final class WorkerThread: @unchecked Sendable {
    /// A finished job: the token it was submitted with and what it returned.
    public struct Completion: Sendable, Equatable {
        public let token: Int
        public let result: Int32
    }

    /// Readable while completions wait for `takeCompletions()`: watch it with the event loop.
    public var fileDescriptor: Int32 { pipeFDs.read }
    private let pipeFDs: (read: Int32, write: Int32)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [(token: Int, job: @Sendable () -> Int32)] = []
    private var completions: [Completion] = []
    private var stopping = false
    private var thread = pthread_t()
    private var running = false
    private let priority: Priority
    private let name: String

    /// How the thread competes for the CPU.
    public enum Priority: Sendable {
        /// As the loop's thread does.
        case normal
        /// SCHED_IDLE: only on CPU time no thread of normal priority wants, so its jobs never slow
        /// the loop or the processes it exchanges data with; for derived work that may trail.
        case idle
    }

    /// Starts the thread; `what` names it in errors, `name` (at most 15 bytes) in `/proc/<pid>/task/*/comm`
    /// (`top -H`, and the tests that trace this thread alone).
    public init(_ what: String, name: String, priority: Priority = .normal) throws(DAQError) {
        precondition(name.utf8.count <= 15, "Linux keeps 15 bytes of a thread's name")
        self.priority = priority
        self.name = name
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fds.allSatisfy({ fcntl($0, F_SETFD, FD_CLOEXEC) == 0 && fcntl($0, F_SETFL, O_NONBLOCK) == 0 }) else {
            throw DAQError(.system, "cannot create a pipe for \(what): \(String(cString: strerror(errno)))")
        }
        pipeFDs = (fds[0], fds[1])
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        // The worker holds a reference until it returns (after `shutdown()`).
        let context = Unmanaged.passRetained(self).toOpaque()
        // The thread starts with every signal blocked (it inherits the mask of the thread that
        // creates it), so it never takes one meant for the loop's signalfd. A worker created
        // before `SignalWatch` blocked SIGINT would otherwise be picked for it by the kernel and,
        // where SIGINT is ignored (a job started with `&` by a script), swallow it: found as a
        // daqlink that did not stop on SIGINT, now and then, in the vcan test.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<WorkerThread>.fromOpaque(context!).takeRetainedValue().work()
            return nil
        }, context)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        guard started == 0 else {
            Unmanaged<WorkerThread>.fromOpaque(context).release()
            throw DAQError(.system, "cannot start the thread for \(what): \(String(cString: strerror(started)))")
        }
        running = true
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        wake.deallocate()
        mutex.deallocate()
        close(pipeFDs.read)
        close(pipeFDs.write)
    }

    /// Queues `job`; its result comes back from `takeCompletions()` with `token`.
    public func submit(token: Int, _ job: @escaping @Sendable () -> Int32) {
        locked {
            jobs.append((token, job))
            pthread_cond_signal(wake)
        }
    }

    /// The jobs finished since the last call, in the order they finished.
    public func takeCompletions() -> [Completion] {
        var drained = [UInt8](repeating: 0, count: 64)
        while read(pipeFDs.read, &drained, drained.count) == drained.count {}
        return locked {
            defer { completions.removeAll() }
            return completions
        }
    }

    /// Runs the jobs still queued, then stops the worker and, `waiting`, waits for it; otherwise
    /// the thread ends on its own once they are done (for a job that may block for minutes, in a
    /// process about to exit). Call once, from the owner's thread, before dropping the last
    /// reference (the worker holds one until then).
    public func shutdown(waiting: Bool = true) {
        guard running else { return }
        running = false
        locked {
            stopping = true
            pthread_cond_signal(wake)
        }
        if waiting { pthread_join(thread, nil) } else { pthread_detach(thread) }
    }

    private func work() {
        // Lowering a thread's own policy needs no privilege; where it is refused anyway (a
        // seccomp filter), the jobs run at normal priority, which is slower for others, not wrong.
        if priority == .idle { _ = daqlink_thread_to_idle_policy() }
        _ = daqlink_thread_set_name(name)
        while true {
            let next: (token: Int, job: @Sendable () -> Int32)? = locked {
                while jobs.isEmpty && !stopping { pthread_cond_wait(wake, mutex) }
                return jobs.isEmpty ? nil : jobs.removeFirst()
            }
            guard let (token, job) = next else { return }
            let result = job()
            locked { completions.append(Completion(token: token, result: result)) }
            var one: UInt8 = 1
            _ = write(pipeFDs.write, &one, 1)  // a full pipe already says "look"
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
