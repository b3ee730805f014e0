// Starting a connection without blocking the loop. mosquitto_connect_async does not block for an
// IP literal, but for a name it calls getaddrinfo first, and in a 4G dead spot that waits out the
// resolver's timeouts (5 s per try by default): the whole loop, acquisition included, waited
// with it. So a name is resolved on a worker thread: the new connection is handed over there for
// its connectAsync and handed back when that returns. One attempt at a time; one the loop gave up
// on (connect timeout, lost link, stop) is dropped when it comes back.
import DAQCore
import Runtime
import Uplink
#if canImport(Glibc)
import Glibc
#endif

final class BrokerConnector {
    /// A connection on its way through the worker. Unchecked Sendable: confined by hand-over —
    /// the loop does not touch it from `start` until the worker's completion comes back.
    private final class Handoff: @unchecked Sendable {
        let connection: MQTTConnection
        var failure: DAQError?
        init(_ connection: MQTTConnection) { self.connection = connection }
    }

    private let loop: EventLoop
    private var worker: WorkerThread?
    private var pending: (token: Int, handoff: Handoff, abandoned: Bool)?
    private var nextToken = 0
    private var whenFree: (() -> Void)?
    /// Called on the loop when the attempt `start` began has its socket (or failed to get one);
    /// never for an abandoned attempt.
    var started: ((Result<MQTTConnection, DAQError>) -> Void)?

    init(loop: EventLoop) { self.loop = loop }

    /// Whether connecting to `host` may block: anything but an IPv4 or IPv6 literal is resolved.
    static func mustResolve(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, host, &address) != 1 && inet_pton(AF_INET6, host, &address) != 1
    }

    /// True while an attempt (perhaps abandoned) is still on the worker.
    var isBusy: Bool { pending != nil }

    /// Runs `action` once the worker is free (at once if it is).
    func whenFree(_ action: @escaping () -> Void) {
        guard isBusy else { return action() }
        whenFree = action
    }

    /// Starts `connection.connectAsync` on the worker; the outcome comes to `started`.
    func start(_ connection: MQTTConnection, host: String, port: Int, keepalive: Int) throws(DAQError) {
        precondition(!isBusy, "one connect attempt at a time")
        let worker: WorkerThread
        if let existing = self.worker { worker = existing } else { worker = try makeWorker() }
        nextToken += 1
        let handoff = Handoff(connection)
        pending = (nextToken, handoff, false)
        worker.submit(token: nextToken) {
            do throws(DAQError) {
                try handoff.connection.connectAsync(host: host, port: port, keepalive: keepalive)
                return 0
            } catch {
                handoff.failure = error
                return 1
            }
        }
    }

    /// The loop gave up on the attempt under way: when it comes back, it is dropped.
    func abandon() { pending?.abandoned = true }

    /// Waits for an attempt still resolving (as long as its lookup takes), then ends the worker.
    func stop() {
        abandon()
        whenFree = nil
        guard let worker else { return }
        loop.unwatch(worker.fileDescriptor)
        worker.shutdown()
        self.worker = nil
    }

    private func makeWorker() throws(DAQError) -> WorkerThread {
        let worker = try WorkerThread("resolving the broker's name")
        loop.watch(worker.fileDescriptor, interest: .read) { [weak self] _ in self?.workerFinished() }
        self.worker = worker
        return worker
    }

    private func workerFinished() {
        guard let worker else { return }
        for done in worker.takeCompletions() {
            guard let attempt = pending, attempt.token == done.token else { continue }
            pending = nil
            if !attempt.abandoned {
                started?(attempt.handoff.failure.map { .failure($0) } ?? .success(attempt.handoff.connection))
            }
            if let action = whenFree {
                whenFree = nil
                action()
            }
        }
    }
}
