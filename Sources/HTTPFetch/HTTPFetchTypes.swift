// The download adapter's public vocabulary: TLS files, limits, and typed outcomes with stable codes.

/// Files for mutual TLS against the update server. The peer certificate and the host name are
/// always verified (there is no opt-out); curl allows TLS 1.2 and later, the server decides (our
/// nginx accepts only TLS 1.3).
public struct HTTPClientTLS: Sendable, Hashable {
    /// PEM CA certificate(s) the server certificate must chain to (the system store is not used).
    public var caFile: String
    /// PEM client certificate; nil only to probe that a server refuses anonymous clients.
    public var certificateFile: String?
    /// PEM private key of `certificateFile`.
    public var keyFile: String?
    /// PEM CRL of the CA, checked against the server certificate when given.
    public var revocationListFile: String?

    public init(caFile: String, certificateFile: String, keyFile: String, revocationListFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.revocationListFile = revocationListFile
    }

    /// Server verification only, without a client certificate: what an unenrolled client
    /// presents. Useful to check that a server refuses it; devices always use the full init.
    public static func withoutClientCertificate(caFile: String) -> HTTPClientTLS {
        var tls = HTTPClientTLS(caFile: caFile, certificateFile: "", keyFile: "")
        tls.certificateFile = nil
        tls.keyFile = nil
        return tls
    }
}

/// Limits that keep a slow or stalled server from hanging the OTA task.
public struct HTTPFetchConfiguration: Sendable, Hashable {
    public var tls: HTTPClientTLS
    /// TCP connect plus TLS handshake, in milliseconds.
    public var connectTimeoutMilliseconds: Int
    /// A transfer slower than this many bytes per second ...
    public var lowSpeedBytesPerSecond: Int
    /// ... for this many seconds is aborted with `timeout`.
    public var lowSpeedSeconds: Int
    /// Receive-rate cap (bytes per second) so an update does not starve the uplink; nil: none.
    public var maxReceiveBytesPerSecond: Int?
    /// HTTPS proxy URL; nil connects directly (proxy environment variables are ignored).
    public var proxy: String?

    public init(tls: HTTPClientTLS, connectTimeoutMilliseconds: Int = 15_000, lowSpeedBytesPerSecond: Int = 1,
                lowSpeedSeconds: Int = 30, maxReceiveBytesPerSecond: Int? = nil, proxy: String? = nil) {
        self.tls = tls
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.lowSpeedBytesPerSecond = lowSpeedBytesPerSecond
        self.lowSpeedSeconds = lowSpeedSeconds
        self.maxReceiveBytesPerSecond = maxReceiveBytesPerSecond
        self.proxy = proxy
    }
}

/// Why a fetch failed. `code` is stable (logs, status reports); the message says the details.
public enum HTTPFailureReason: Sendable, Hashable, CustomStringConvertible {
    /// The server answered with a status this request cannot use (404, 500, 416 ...).
    case httpStatus(Int)
    /// The connection ended before the body was complete (drop, reset, truncated body).
    case interrupted
    /// The body is larger than the caller allows (`maxBytes`, or the download's expected length).
    case oversize
    /// A 206 answer whose range does not continue the partial file (start, end, total or ETag).
    case rangeMismatch
    /// A complete 200 answer whose length differs from the expected length.
    case lengthMismatch
    /// TLS handshake or verification failed (either side refused the other).
    case tls
    /// Connect timeout, or the low-speed limit was hit (a stalled server).
    case timeout
    /// No connection: name resolution or TCP connect failed.
    case unreachable
    /// `HTTPTransfer.cancel()` was called.
    case cancelled
    /// A local file operation failed (errno).
    case io(errno: Int32)
    /// Any other libcurl failure (its CURLcode).
    case transport(curlCode: Int)

    public var code: String {
        switch self {
        case .httpStatus(let status): return "http-status(\(status))"
        case .interrupted: return "interrupted"
        case .oversize: return "oversize"
        case .rangeMismatch: return "range-mismatch"
        case .lengthMismatch: return "length-mismatch"
        case .tls: return "tls"
        case .timeout: return "timeout"
        case .unreachable: return "unreachable"
        case .cancelled: return "cancelled"
        case .io(let errno): return "io(\(errno))"
        case .transport(let curlCode): return "transport(\(curlCode))"
        }
    }

    public var description: String { code }
}

/// A failed fetch: the reason, a message naming the URL (and file), and what stays on disk.
public struct HTTPFetchFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: HTTPFailureReason
    public var url: String
    /// The download's file, nil for in-memory `get`.
    public var file: String?
    /// Bytes of the partial file kept on disk (fsynced) for the next `download` to resume from;
    /// 0 when the partial file was discarded, there is none, or it has no validator to resume with.
    public var keptBytes: Int
    public var message: String

    public init(reason: HTTPFailureReason, url: String, file: String?, keptBytes: Int, message: String) {
        self.reason = reason
        self.url = url
        self.file = file
        self.keptBytes = keptBytes
        self.message = message
    }

    public var description: String {
        "\(reason.code): \(url)\(file.map { " → \($0)" } ?? ""): \(message)"
    }
}

/// How a fetch ended, delivered on the event loop.
public enum HTTPOutcome<Value: Sendable>: Sendable {
    /// `get`: the body. `download`: the file's length (= the expected length).
    case complete(Value)
    case failed(HTTPFetchFailure)

    /// The failure, or nil when complete.
    public var failure: HTTPFetchFailure? {
        if case .failed(let failure) = self { return failure }
        return nil
    }
}

extension HTTPOutcome: Equatable where Value: Equatable {}
