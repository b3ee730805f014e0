// HTTPS fetches for the OTA task on daqlink's single-threaded event loop: a libcurl multi handle
// whose socket and timer callbacks register descriptors and deadlines with the loop
// (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), and the loop's readiness and timer firings
// drive curl_multi_socket_action. No thread; outcomes are delivered as loop tasks.
internal import CCurl
import DAQCore
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// Fetches small resources into memory and downloads artifacts into resumable files over HTTPS
/// with mutual TLS. Bound to one `EventLoop` on the real clock (libcurl keeps its own time); use
/// it only from that loop's thread.
public final class HTTPFetcher {
    /// The loop every callback and completion runs on.
    public let loop: EventLoop
    /// TLS files and limits applied to every transfer.
    public let configuration: HTTPFetchConfiguration
    private let multi: UnsafeMutableRawPointer
    /// Transfers attached to the multi handle, by easy handle. This dictionary is what keeps each
    /// transfer (the unretained context of its callbacks) alive until curl_easy_cleanup.
    private var transfers: [UnsafeMutableRawPointer: HTTPTransfer] = [:]
    private var watched: Set<Int32> = []
    private var timer: EventLoop.TimerID?

    /// A fetcher on `loop` with `configuration`'s TLS files and limits.
    public init(loop: EventLoop, configuration: HTTPFetchConfiguration) throws(DAQError) {
        guard CurlLibrary.initialized == CURLE_OK else { throw DAQError(.system, "curl_global_init failed") }
        guard let multi = curl_multi_init() else { throw DAQError(.system, "curl_multi_init failed") }
        self.loop = loop
        self.configuration = configuration
        self.multi = multi
        // The context is this object, unretained: deinit clears it before the multi handle goes.
        let context = Unmanaged.passUnretained(self).toOpaque()
        let socketRC = daqlink_curl_multi_socket_callback(multi, { _, fd, what, context, _ in
            guard let context else { return 0 }
            Unmanaged<HTTPFetcher>.fromOpaque(context).takeUnretainedValue().socketChanged(fd, what: what)
            return 0
        }, context)
        let timerRC = daqlink_curl_multi_timer_callback(multi, { _, milliseconds, context in
            guard let context else { return 0 }
            Unmanaged<HTTPFetcher>.fromOpaque(context).takeUnretainedValue().timerChanged(milliseconds: milliseconds)
            return 0
        }, context)
        guard socketRC == CURLM_OK, timerRC == CURLM_OK else {
            curl_multi_cleanup(multi)
            throw DAQError(.system, "curl_multi_setopt (socket/timer callbacks) failed")
        }
    }

    deinit {
        // Callbacks fired by the removals below must not reach this object any more.
        _ = daqlink_curl_multi_socket_callback(multi, nil, nil)
        _ = daqlink_curl_multi_timer_callback(multi, nil, nil)
        for (easy, transfer) in transfers {
            curl_multi_remove_handle(multi, easy)
            curl_easy_cleanup(easy)
            _ = transfer.finish(result: CURLE_ABORTED_BY_CALLBACK) // fsyncs a partial file; completion dropped
        }
        for fd in watched { loop.unwatch(fd) }
        if let timer { loop.cancel(timer) }
        curl_multi_cleanup(multi)
    }

    /// Transfers not yet finished.
    public var activeTransfers: Int { transfers.count }
    /// How many times the loop handed libcurl a socket's readiness or its timer
    /// (curl_multi_socket_action calls): what a transfer costs the loop in wake-ups.
    public private(set) var wakeUps = 0

    /// GETs `url` into memory (manifests, signatures). A body over `maxBytes` (by Content-Length
    /// or as it arrives) aborts the transfer with `.oversize`; a non-2xx status fails with
    /// `.httpStatus`. The completion runs on the loop. Returns nil only when the transfer could not
    /// be set up (the completion then still runs, with the failure).
    @discardableResult
    public func get(_ url: String, maxBytes: Int, completion: @escaping (HTTPOutcome<[UInt8]>) -> Void) -> HTTPTransfer? {
        guard let easy = curl_easy_init() else {
            deliverLater { completion(.failed(HTTPFetchFailure(reason: .transport(curlCode: 0), url: url, file: nil, keptBytes: 0, message: "curl_easy_init failed"))) }
            return nil
        }
        let transfer = HTTPTransfer(url: url, easy: easy, sink: .memory(maxBytes: maxBytes, completion: completion), fetcher: self)
        start(transfer, extraHeaders: [])
        return transfer
    }

    /// Downloads `url` into `path`, resuming a partial file (see docs/ota.md, "Download adapter"):
    /// a partial file of k bytes with a `path.validator` sidecar is continued with
    /// `Range: bytes=k-` and `If-Range`; a 206 must continue exactly at k up to `expectedLength`,
    /// a 200 starts over, more than `expectedLength` bytes fail with `.oversize`. The completion
    /// (on the loop) gets the file's length, or a failure saying what stays on disk. Returns nil
    /// when the file cannot be opened (the completion then runs with `.io`).
    @discardableResult
    public func download(_ url: String, to path: String, expectedLength: Int,
                         completion: @escaping (HTTPOutcome<Int>) -> Void) -> HTTPTransfer? {
        let partial: PartialDownloadFile
        do {
            partial = try PartialDownloadFile(path: path)
        } catch {
            deliverLater { completion(.failed(HTTPFetchFailure(reason: .io(errno: error.errno), url: url, file: path, keptBytes: 0, message: error.message))) }
            return nil
        }
        guard let easy = curl_easy_init() else {
            deliverLater { completion(.failed(HTTPFetchFailure(reason: .transport(curlCode: 0), url: url, file: path, keptBytes: partial.length, message: "curl_easy_init failed"))) }
            return nil
        }
        let request = ResumeRules.request(existingBytes: partial.length, expectedLength: expectedLength, validator: partial.validator)
        var headers: [String] = []
        if request.offset > 0, let validator = request.validator {
            headers = ["Range: bytes=\(request.offset)-", "If-Range: \(validator)"]
        }
        let sink = HTTPTransfer.Sink.file(partial, request: request, expectedLength: expectedLength, completion: completion)
        let transfer = HTTPTransfer(url: url, easy: easy, sink: sink, fetcher: self)
        start(transfer, extraHeaders: headers)
        return transfer
    }

    // MARK: Transfers

    private func start(_ transfer: HTTPTransfer, extraHeaders: [String]) {
        for header in extraHeaders { transfer.requestHeaders = curl_slist_append(transfer.requestHeaders, header) }
        let setup = CurlEasyOptions.apply(configuration, url: transfer.url, headers: transfer.requestHeaders, to: transfer)
        let added = setup == CURLE_OK ? curl_multi_add_handle(multi, transfer.easy) : CURLM_OK
        guard setup == CURLE_OK, added == CURLM_OK else {
            curl_easy_cleanup(transfer.easy)
            let failed = transfer.finish(result: setup != CURLE_OK ? setup : CURLE_FAILED_INIT)
            deliverLater(failed)
            return
        }
        transfers[transfer.easy] = transfer
    }

    func cancel(_ transfer: HTTPTransfer) {
        guard !transfer.isFinished, transfers[transfer.easy] != nil else { return }
        transfer.markCancelled()
        complete(transfer, result: CURLE_ABORTED_BY_CALLBACK)
    }

    private func complete(_ transfer: HTTPTransfer, result: CURLcode) {
        curl_multi_remove_handle(multi, transfer.easy)
        curl_easy_cleanup(transfer.easy)
        transfers[transfer.easy] = nil
        deliverLater(transfer.finish(result: result))
    }

    /// Runs `action` on the loop as its own task, never inside a libcurl call or the caller's.
    private func deliverLater(_ action: @escaping () -> Void) {
        loop.schedule(at: loop.clock.now(), action)
    }

    // MARK: Loop integration

    /// CURLMOPT_SOCKETFUNCTION: libcurl wants `fd` watched for `what` (or no longer).
    private func socketChanged(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            loop.unwatch(fd)
            watched.remove(fd)
            return
        }
        var interest: PollInterest = []
        if what == CURL_POLL_IN || what == CURL_POLL_INOUT { interest.insert(.read) }
        if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { interest.insert(.write) }
        if watched.contains(fd) {
            loop.update(fd, interest: interest)
        } else {
            watched.insert(fd)
            loop.watch(fd, interest: interest) { [weak self] ready in self?.socketReady(fd, ready) }
        }
    }

    /// CURLMOPT_TIMERFUNCTION: one deadline for the whole multi handle; -1 removes it.
    private func timerChanged(milliseconds: Int) {
        if let timer { loop.cancel(timer) }
        timer = nil
        guard milliseconds >= 0 else { return }
        timer = loop.schedule(at: loop.clock.now() + Int64(milliseconds) * 1_000_000) { [weak self] in
            guard let self else { return }
            self.timer = nil
            self.act(on: CURL_SOCKET_TIMEOUT, events: 0)
        }
    }

    private func socketReady(_ fd: Int32, _ ready: PollInterest) {
        var events: Int32 = 0
        if ready.contains(.read) { events |= CURL_CSELECT_IN }
        if ready.contains(.write) { events |= CURL_CSELECT_OUT }
        act(on: fd, events: events)
    }

    private func act(on fd: Int32, events: Int32) {
        var running: Int32 = 0
        wakeUps += 1
        _ = curl_multi_socket_action(multi, fd, events, &running)
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                  let transfer = transfers[easy] else { continue }
            complete(transfer, result: message.pointee.data.result)
        }
    }
}

/// Process-wide curl_global_init, once (swift_once makes the first use thread-safe).
enum CurlLibrary {
    static let initialized: CURLcode = daqlink_curl_global_init()
}
