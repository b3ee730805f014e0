// fdatasync off the event loop. Linux has no asynchronous fdatasync short of io_uring, and one
// takes milliseconds: in a 50 MB backlog drain the collector spent 87 ms of a 0.25 s drain in 54
// of them (0.3–5 ms each), during which it could neither read the next batches nor write them.
// One worker thread runs the syncs. It touches nothing but the descriptors it is handed (each a
// dup, so the owner may close its own meanwhile) and a locked queue; completions wake the loop
// through a pipe. The loop still decides everything: what to sync, and that no ack leaves
// before the sync covering it returned.
import DAQCore
#if canImport(Glibc)
internal import Glibc
#endif

/// One worker thread running fdatasync for the loop. Unchecked Sendable: the worker and the owner
/// share only `requests`, `completions` and `stopping`, each touched under `mutex`; `running` and
/// `thread` are the owner's alone.
public final class BackgroundSync: @unchecked Sendable {
    /// A finished sync: the token it was submitted with and 0, or the errno fdatasync failed with.
    public struct Completion: Sendable, Equatable {
        public let token: Int
        public let errno: Int32
    }

    /// Readable while completions wait for `takeCompletions()`: watch it with the event loop.
    public var fileDescriptor: Int32 { pipeFDs.read }
    private let pipeFDs: (read: Int32, write: Int32)
    // The only state shared with the worker, guarded by `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var requests: [(token: Int, fd: Int32)] = []
    private var completions: [Completion] = []
    private var stopping = false
    private var thread = pthread_t()
    private var running = false

    public init() throws(DAQError) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0, fds.allSatisfy({ fcntl($0, F_SETFD, FD_CLOEXEC) == 0 && fcntl($0, F_SETFL, O_NONBLOCK) == 0 }) else {
            throw DAQError(.io, "cannot create a pipe for background syncs: \(String(cString: strerror(errno)))")
        }
        pipeFDs = (fds[0], fds[1])
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        // The worker holds a reference until it returns (after `shutdown()`).
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<BackgroundSync>.fromOpaque(context!).takeRetainedValue().work()
            return nil
        }, context)
        guard started == 0 else {
            Unmanaged<BackgroundSync>.fromOpaque(context).release()
            throw DAQError(.io, "cannot start the background sync thread: \(String(cString: strerror(started)))")
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

    /// Queues fdatasync(`fd`); the worker closes `fd` afterwards. Syncs run one after another in
    /// the order submitted.
    public func submit(token: Int, fd: Int32) {
        locked {
            requests.append((token, fd))
            pthread_cond_signal(wake)
        }
    }

    /// The syncs finished since the last call, in the order they finished.
    public func takeCompletions() -> [Completion] {
        var drained = [UInt8](repeating: 0, count: 64)
        while read(pipeFDs.read, &drained, drained.count) == drained.count {}
        return locked {
            defer { completions.removeAll() }
            return completions
        }
    }

    /// Runs the syncs still queued, then stops the worker and waits for it. Call once, from the
    /// owner's thread, before dropping the last reference (the worker holds one until then).
    public func shutdown() {
        guard running else { return }
        running = false
        locked {
            stopping = true
            pthread_cond_signal(wake)
        }
        pthread_join(thread, nil)
    }

    private func work() {
        while true {
            let next: (token: Int, fd: Int32)? = locked {
                while requests.isEmpty && !stopping { pthread_cond_wait(wake, mutex) }
                return requests.isEmpty ? nil : requests.removeFirst()
            }
            guard let (token, fd) = next else { return }
            var code: Int32 = 0
            while fdatasync(fd) != 0 {
                if errno == EINTR { continue }
                code = errno
                break
            }
            close(fd)
            locked { completions.append(Completion(token: token, errno: code)) }
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
