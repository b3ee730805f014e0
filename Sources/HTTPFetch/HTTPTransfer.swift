// One fetch (a libcurl easy handle) and where its body goes: memory (with a size cap) or a
// resumable file. libcurl's header and write callbacks call in here synchronously from inside
// curl_multi_socket_action, which only the fetcher calls, on the loop's thread.
internal import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// A running fetch: progress for logs, and `cancel()`. Confined to the fetcher's event loop.
public final class HTTPTransfer {
    public let url: String
    /// The download's file; nil for `get`.
    public let file: String?
    /// Body bytes received by this transfer so far.
    public private(set) var bytesReceived = 0
    /// Bytes held so far: the file's length (partial prefix included) or the in-memory body's.
    public var bytesSoFar: Int {
        switch sink {
        case .memory: return body.count
        case .file(let partial, _, _, _): return partial.length
        }
    }
    /// True once the outcome is decided (the completion is then queued on the loop).
    public private(set) var isFinished = false

    /// Stops the transfer: a download keeps (and fsyncs) what it has for the next resume. The
    /// completion gets `.failed(.cancelled)`. Nothing happens after the outcome is decided.
    public func cancel() { fetcher?.cancel(self) }

    enum Sink {
        case memory(maxBytes: Int, completion: (HTTPOutcome<[UInt8]>) -> Void)
        case file(PartialDownloadFile, request: ResumeRequest, expectedLength: Int, completion: (HTTPOutcome<Int>) -> Void)
    }

    /// The outcome decided by a callback (or cancel) before libcurl finished; it wins over
    /// libcurl's own result (which is then just "write error").
    private enum Stop {
        case failed(HTTPFailureReason, discardPartial: Bool, message: String)
        case alreadyComplete
    }

    let easy: UnsafeMutableRawPointer
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    var requestHeaders: UnsafeMutablePointer<curl_slist>?
    weak var fetcher: HTTPFetcher?
    private let sink: Sink
    private var body: [UInt8] = []
    private var headers = ResponseHeaders()
    private var started = false
    private var stop: Stop?

    init(url: String, easy: UnsafeMutableRawPointer, sink: Sink, fetcher: HTTPFetcher) {
        self.url = url
        self.easy = easy
        self.sink = sink
        self.fetcher = fetcher
        if case .file(let partial, _, _, _) = sink { file = partial.path } else { file = nil }
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        errorBuffer.deallocate()
        curl_slist_free_all(requestHeaders)
    }

    // MARK: libcurl callbacks (synchronous, on the loop's thread)

    /// One header line; a status line starts a new response (after a 1xx, say).
    func received(headerLine: String) {
        if headerLine.hasPrefix("HTTP/") {
            headers = ResponseHeaders()
        } else {
            headers.record(line: headerLine)
        }
    }

    /// A piece of body; false aborts the transfer.
    func received(body bytes: UnsafeRawBufferPointer) -> Bool {
        if stop != nil { return false }
        if !started {
            started = true
            begin()
            if stop != nil { return false }
        }
        switch sink {
        case .memory(let maxBytes, _):
            guard body.count + bytes.count <= maxBytes else {
                stop = .failed(.oversize, discardPartial: true, message: "body exceeds the limit of \(maxBytes) bytes")
                return false
            }
            body.append(contentsOf: bytes)
        case .file(let partial, _, let expectedLength, _):
            guard partial.length + bytes.count <= expectedLength else {
                stop = .failed(.oversize, discardPartial: true,
                               message: "server sent more than the expected \(expectedLength) bytes")
                return false
            }
            do {
                try partial.append(bytes)
            } catch {
                stop = .failed(.io(errno: error.errno), discardPartial: false, message: error.message)
                return false
            }
        }
        bytesReceived += bytes.count
        return true
    }

    /// The response's headers are complete: decide from status and headers what the body is for.
    private func begin() {
        var status = 0
        _ = daqlink_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        switch sink {
        case .memory(let maxBytes, _):
            if !(200..<300).contains(status) {
                stop = .failed(.httpStatus(status), discardPartial: true, message: "HTTP status \(status)")
            } else if let length = headers.contentLength, length > maxBytes {
                stop = .failed(.oversize, discardPartial: true, message: "Content-Length \(length) exceeds the limit of \(maxBytes) bytes")
            }
        case .file(let partial, let request, let expectedLength, _):
            switch ResumeRules.decide(status: status, headers: headers, request: request, expectedLength: expectedLength) {
            case .append(let offset):
                if partial.length != offset {
                    stop = .failed(.rangeMismatch, discardPartial: true, message: "file changed under the download: \(partial.length) bytes, resuming at \(offset)")
                }
            case .restart(let validator):
                do {
                    try partial.restart(validator: validator)
                } catch {
                    stop = .failed(.io(errno: error.errno), discardPartial: false, message: error.message)
                }
            case .alreadyComplete:
                stop = .alreadyComplete
            case .fail(let reason, let discardPartial, let why):
                stop = .failed(reason, discardPartial: discardPartial, message: why)
            }
        }
    }

    // MARK: Outcome

    func markCancelled() {
        if stop == nil { stop = .failed(.cancelled, discardPartial: false, message: "cancelled") }
    }

    /// Decides the outcome once libcurl is done with `result`; returns the completion to queue.
    func finish(result: CURLcode) -> () -> Void {
        isFinished = true
        if !started && stop == nil && result == CURLE_OK {
            started = true
            begin() // a response without a body (416, 500, an empty 200 ...)
        }
        switch sink {
        case .memory(_, let completion):
            let outcome: HTTPOutcome<[UInt8]>
            switch stop {
            case .failed(let reason, _, let message)?:
                outcome = .failed(HTTPFetchFailure(reason: reason, url: url, file: nil, keptBytes: 0, message: message))
            case .alreadyComplete?, nil:
                if result == CURLE_OK {
                    outcome = .complete(body)
                } else {
                    let (reason, message) = transportFailure(result)
                    outcome = .failed(HTTPFetchFailure(reason: reason, url: url, file: nil, keptBytes: 0, message: message))
                }
            }
            return { completion(outcome) }
        case .file(let partial, _, let expectedLength, let completion):
            var reason: HTTPFailureReason?, message = "", discard = false
            switch stop {
            case .failed(let stopReason, let discardPartial, let why)?:
                (reason, discard, message) = (stopReason, discardPartial, why)
            case .alreadyComplete?:
                break
            case nil where result != CURLE_OK:
                (reason, message) = transportFailure(result)
            case nil:
                if partial.length != expectedLength {
                    // Only a body without Content-Length can end "successfully" short.
                    (reason, message) = (.interrupted, "connection closed after \(partial.length) of \(expectedLength) bytes")
                }
            }
            if discard {
                partial.discard()
            } else {
                do {
                    try partial.sync()
                } catch {
                    (reason, message) = (.io(errno: error.errno), error.message)
                }
            }
            // Without a validator the bytes stay on disk but the next call starts over from 0.
            let resumable = discard || partial.validator == nil ? 0 : partial.length
            let outcome: HTTPOutcome<Int> = reason.map {
                .failed(HTTPFetchFailure(reason: $0, url: url, file: partial.path, keptBytes: resumable, message: message))
            } ?? .complete(partial.length)
            return { completion(outcome) }
        }
    }

    /// libcurl's result as a failure reason, with curl's own explanation.
    private func transportFailure(_ result: CURLcode) -> (HTTPFailureReason, String) {
        let detail = errorBuffer.pointee != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(result))
        let reason: HTTPFailureReason
        switch result {
        case CURLE_OPERATION_TIMEDOUT:
            reason = .timeout
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_PROXY:
            reason = .unreachable
        case CURLE_SSL_CONNECT_ERROR where !detail.contains(" alert "):
            // A connection reset or cut during the handshake (4G): no refusal. A peer refusing
            // us sends an alert, which curl names ("tlsv1 alert unknown ca"; spaced: a host
            // name in the text cannot hold one).
            reason = .interrupted
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CLIENTCERT,
             CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_USE_SSL_FAILED:
            reason = .tls
        case CURLE_RECV_ERROR where detail.contains(" alert "), CURLE_SEND_ERROR where detail.contains(" alert "):
            // TLS 1.3: a server refusing our certificate sends its alert after the handshake,
            // so the client sees it on its first read.
            reason = .tls
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            reason = .interrupted
        default:
            reason = .transport(curlCode: Int(result.rawValue))
        }
        return (reason, "curl error \(result.rawValue): \(detail)")
    }
}
