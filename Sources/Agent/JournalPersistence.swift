// The device's journal syncs and ack-cursor writes, off its loop. An SD card can take hundreds of
// milliseconds for one fsync (its own wear levelling and garbage collection); group commit syncs
// every 50 ms and the ack cursor (two fsyncs) is persisted every 200 ms while acks arrive. On the
// loop each of those stopped acquisition, uplink and OTA for as long. Here they run one after
// another on a `BackgroundSync` worker; the loop starts them and hears when each is done, and
// still decides everything: entries leave the device only once a finished sync covers them
// (`UplinkTask.journalSynced`), and the cursor advances only once its write returned.
import DAQCore
import JournalStore
import Runtime

final class JournalPersistence {
    private let journal: JournalWriter
    private let loop: EventLoop
    private let worker: BackgroundSync
    private var inFlight: [Int: Job] = [:]
    private var nextToken = 0
    private var syncing = false
    private var acknowledging = false
    /// After `finish()`: the worker is gone, and a cursor is written on the caller's thread.
    private var finished = false
    /// The newest cursor asked for while a write was under way: written next.
    private var wantedAck: UInt64?

    private enum Job {
        case sync(JournalWriter.SyncTicket)
        case acknowledge(JournalWriter.AckTicket)
    }

    /// A sync finished (or failed: the writer is then unusable).
    var synced: ((Result<Void, DAQError>) -> Void)?
    /// An ack cursor write finished: the cursor persisted, or why not.
    var acknowledged: ((Result<UInt64, DAQError>) -> Void)?

    init(journal: JournalWriter, loop: EventLoop) throws(DAQError) {
        self.journal = journal
        self.loop = loop
        worker = try BackgroundSync()
        loop.watch(worker.fileDescriptor, interest: .read) { [unowned self] _ in handleCompletions() }
    }

    /// A sync is under way.
    var isSyncing: Bool { syncing }

    /// Starts a sync of every entry appended so far; false when one is already under way (the
    /// caller asks again when it is done) or nothing is unsynced.
    func startSync() throws(DAQError) -> Bool {
        guard !syncing, !finished, let ticket = try journal.beginSync() else { return false }
        syncing = true
        worker.submit(token: token(for: .sync(ticket)), sync: ticket)
        return true
    }

    /// Persists the ack cursor at `sequence` (after the write under way, if any).
    func acknowledge(upTo sequence: UInt64) {
        guard !acknowledging else {
            wantedAck = max(wantedAck ?? 0, sequence)
            return
        }
        do throws(DAQError) {
            if finished {
                try journal.acknowledge(upTo: sequence)
                acknowledged?(.success(sequence))
                return
            }
            guard let ticket = try journal.beginAcknowledge(upTo: sequence) else { return }
            acknowledging = true
            worker.submit(token: token(for: .acknowledge(ticket)), ack: ticket)
        } catch {
            acknowledged?(.failure(error))
        }
    }

    /// Runs what is queued, then stops the worker and reports what finished; a cursor asked for
    /// meanwhile is written here. Call once, at the end, before the journal is closed.
    func finish() {
        guard !finished else { return }
        loop.unwatch(worker.fileDescriptor)
        worker.shutdown()
        finished = true
        handleCompletions()
    }

    private func token(for job: Job) -> Int {
        nextToken += 1
        inFlight[nextToken] = job
        return nextToken
    }

    private func handleCompletions() {
        for done in worker.takeCompletions() {
            switch inFlight.removeValue(forKey: done.token) {
            case .sync(let ticket):
                syncing = false
                do throws(DAQError) {
                    try journal.finishSync(ticket, errno: done.errno)
                    synced?(.success(()))
                } catch {
                    synced?(.failure(error))
                }
            case .acknowledge(let ticket):
                acknowledging = false
                do throws(DAQError) {
                    try journal.finishAcknowledge(ticket, errno: done.errno)
                    acknowledged?(.success(ticket.upTo))
                } catch {
                    acknowledged?(.failure(error))
                }
                if let sequence = wantedAck {
                    wantedAck = nil
                    acknowledge(upTo: sequence)
                }
            case nil:
                break
            }
        }
    }
}
