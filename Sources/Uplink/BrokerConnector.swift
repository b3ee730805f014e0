// Starting a connection without blocking the loop. mosquitto_connect_async does not block for an
// IP literal, but for a name it calls getaddrinfo first, and in a 4G dead spot that waits out the
// resolver's timeouts (5 s per try by default): the whole loop, acquisition included, waited
// with it. And the collector's durable connect (mosquitto_connect_bind_v5, the only call that
// sends a session expiry) connects its TCP socket blocking: to a host that drops the SYN that is
// the kernel's two minutes of retries, with the loop deaf to signals. So such a connect runs on a
// worker thread: the new connection is handed over there and handed back when the call returns.
// One attempt at a time; one the loop gave up on (connect timeout, lost link, stop) is dropped
// when it comes back.
import DAQCore
import Runtime
#if canImport(Glibc)
import Glibc
#endif

public final class BrokerConnector {
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
    public var started: ((Result<MQTTConnection, DAQError>) -> Void)?

    public init(loop: EventLoop) { self.loop = loop }

    /// Whether connecting to `host` may block: anything but an IPv4 or IPv6 literal is resolved.
    public static func mustResolve(_ host: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET, host, &address) != 1 && inet_pton(AF_INET6, host, &address) != 1
    }

    /// True while an attempt (perhaps abandoned) is still on the worker.
    public var isBusy: Bool { pending != nil }

    /// Runs `action` once the worker is free (at once if it is).
    public func whenFree(_ action: @escaping () -> Void) {
        guard isBusy else { return action() }
        whenFree = action
    }

    /// Starts `connection.connectAsync` on the worker; the outcome comes to `started`.
    public func start(_ connection: MQTTConnection, host: String, port: Int, keepalive: Int) throws(DAQError) {
        try start(connection) { (connection: MQTTConnection) throws(DAQError) in
            try connection.connectAsync(host: host, port: port, keepalive: keepalive)
        }
    }

    /// Runs `connect` with `connection` on the worker; the outcome comes to `started`.
    public func start(_ connection: MQTTConnection,
                      connect: @escaping @Sendable (MQTTConnection) throws(DAQError) -> Void) throws(DAQError) {
        precondition(!isBusy, "one connect attempt at a time")
        let worker: WorkerThread
        if let existing = self.worker { worker = existing } else { worker = try makeWorker() }
        nextToken += 1
        let handoff = Handoff(connection)
        pending = (nextToken, handoff, false)
        worker.submit(token: nextToken) {
            do throws(DAQError) {
                try connect(handoff.connection)
                return 0
            } catch {
                handoff.failure = error
                return 1
            }
        }
    }

    /// The loop gave up on the attempt under way: when it comes back, it is dropped.
    public func abandon() { pending?.abandoned = true }

    /// Ends the worker. `waiting`: first lets an attempt under way finish (as long as its lookup
    /// or connect takes); otherwise the worker is left to end on its own after it, and the
    /// connection is dropped there (for a process about to exit).
    public func stop(waiting: Bool = true) {
        abandon()
        whenFree = nil
        guard let worker else { return }
        loop.unwatch(worker.fileDescriptor)
        worker.shutdown(waiting: waiting)
        self.worker = nil
    }

    private func makeWorker() throws(DAQError) -> WorkerThread {
        let worker = try WorkerThread("connecting to the broker", name: "broker-connect")
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
