// fdatasync (and the device's ack cursor writes: two fsyncs each) off the event loop. Linux has
// no asynchronous fdatasync short of io_uring, and one takes milliseconds — on an SD card busy
// with its own housekeeping, hundreds of them. In a 50 MB backlog drain the collector spent 87 ms
// of a 0.25 s drain in 54 of them (0.3–5 ms each), during which it could neither read the next
// batches nor write them. The jobs run on a `WorkerThread` and touch nothing but what they are
// handed: a duplicated descriptor (so the owner may close its own meanwhile), or an ack ticket.
// The loop still decides everything: what to sync, and that no ack leaves before the sync
// covering it returned.
import DAQCore
import Runtime
#if canImport(Glibc)
internal import Glibc
#endif

public final class BackgroundSync: Sendable {
    /// A finished sync: the token it was submitted with and 0, or the errno fdatasync failed with.
    public struct Completion: Sendable, Equatable {
        public let token: Int
        public let errno: Int32
    }

    private let worker: WorkerThread

    /// Readable while completions wait for `takeCompletions()`: watch it with the event loop.
    public var fileDescriptor: Int32 { worker.fileDescriptor }

    public init() throws(DAQError) {
        worker = try WorkerThread("background syncs", name: "journal-sync")
    }

    /// Queues fdatasync(`fd`); the worker closes `fd` afterwards.
    public func submit(token: Int, fd: Int32) {
        worker.submit(token: token) {
            defer { FileOps.close(fd) }
            do throws(SystemCallError) { try FileOps.dataSync(fd) } catch { return error.errno }
            return 0
        }
    }

    /// Queues `ticket.perform()` (fdatasync of the ticket's descriptor, and the syncs and renames
    /// of the rotations it completes), which closes the ticket's descriptors afterwards. Syncs run
    /// one after another in the order submitted.
    public func submit(token: Int, sync ticket: JournalWriter.SyncTicket) {
        worker.submit(token: token) { ticket.perform() }
    }

    /// Queues `ticket.persist()` (an ack cursor write), in order with the syncs.
    public func submit(token: Int, ack ticket: JournalWriter.AckTicket) {
        worker.submit(token: token) { ticket.persist() }
    }

    /// The syncs finished since the last call, in the order they finished.
    public func takeCompletions() -> [Completion] {
        worker.takeCompletions().map { Completion(token: $0.token, errno: $0.result) }
    }

    /// Runs the syncs still queued, then stops the worker and waits for it. Call once, from the
    /// owner's thread, before dropping the last reference.
    public func shutdown() { worker.shutdown() }
}
