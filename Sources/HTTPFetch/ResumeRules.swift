// The download resume rules as pure functions (no I/O): what to ask for given the partial file on
// disk, and what to do with the answer's status and headers. docs/ota.md lists the same rules.

/// The response headers the resume rules look at (names matched case-insensitively).
struct ResponseHeaders: Sendable, Equatable {
    var contentLength: Int?
    var contentRange: String?
    var etag: String?
    var lastModified: String?

    init(contentLength: Int? = nil, contentRange: String? = nil, etag: String? = nil, lastModified: String? = nil) {
        self.contentLength = contentLength
        self.contentRange = contentRange
        self.etag = etag
        self.lastModified = lastModified
    }

    /// Records one header line (`Name: value`); other headers are ignored.
    mutating func record(line: String) {
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingWhitespace()
        switch name {
        case "content-length": contentLength = Int(value)
        case "content-range": contentRange = value
        case "etag": etag = value
        case "last-modified": lastModified = value
        default: break
        }
    }

    /// The value for a later `If-Range`: a strong ETag, else Last-Modified, else nil (then a
    /// partial file cannot be resumed safely and the next attempt starts from 0).
    var validator: String? {
        if let etag, !etag.hasPrefix("W/"), ResumeRules.isSafeValidator(etag) { return etag }
        if let lastModified, ResumeRules.isSafeValidator(lastModified) { return lastModified }
        return nil
    }
}

/// `Content-Range: bytes first-last/total`.
struct ContentRange: Sendable, Equatable {
    var first: Int
    var last: Int
    var total: Int

    init(first: Int, last: Int, total: Int) {
        self.first = first
        self.last = last
        self.total = total
    }

    /// Parses the satisfied-range form; nil for anything else (including `bytes */total`).
    init?(header: String) {
        guard header.hasPrefix("bytes ") else { return nil }
        let spec = header.dropFirst(6)
        guard let dash = spec.firstIndex(of: "-"), let slash = spec.firstIndex(of: "/"), dash < slash,
              let first = Int(spec[..<dash]), let last = Int(spec[spec.index(after: dash)..<slash]),
              let total = Int(spec[spec.index(after: slash)...]), first >= 0, first <= last, last < total
        else { return nil }
        self.init(first: first, last: last, total: total)
    }
}

/// What the first request asks for.
struct ResumeRequest: Sendable, Equatable {
    /// Bytes of the partial file to keep: sent as `Range: bytes=offset-`; 0 asks for everything.
    var offset: Int
    /// Sent as `If-Range` with a nonzero offset.
    var validator: String?
}

/// What to do when the response's headers are in.
enum ResponseDecision: Sendable, Equatable {
    /// 206 continuing the partial file: write the body from `offset`.
    case append(offset: Int)
    /// 200: start over, truncate, remember `validator` (if any), write from 0.
    case restart(validator: String?)
    /// Nothing to transfer: the file on disk is already complete.
    case alreadyComplete
    /// Abort; `discardPartial` when the partial file can no longer be trusted to resume.
    case fail(HTTPFailureReason, discardPartial: Bool, why: String)
}

enum ResumeRules {
    /// The request for a partial file of `existingBytes` whose first response carried `validator`.
    static func request(existingBytes: Int, expectedLength: Int, validator: String?) -> ResumeRequest {
        guard existingBytes > 0, existingBytes <= expectedLength, let validator, isSafeValidator(validator) else {
            return ResumeRequest(offset: 0, validator: nil)
        }
        return ResumeRequest(offset: existingBytes, validator: validator)
    }

    /// The decision for a response with `status` and `headers` to `request`.
    static func decide(status: Int, headers: ResponseHeaders, request: ResumeRequest, expectedLength: Int) -> ResponseDecision {
        switch status {
        case 206:
            guard request.offset > 0 else {
                return .fail(.rangeMismatch, discardPartial: true, why: "206 answer to a request without Range")
            }
            guard let header = headers.contentRange, let range = ContentRange(header: header) else {
                return .fail(.rangeMismatch, discardPartial: true, why: "206 without a usable Content-Range (\(headers.contentRange ?? "none"))")
            }
            guard range.first == request.offset, range.last == expectedLength - 1, range.total == expectedLength else {
                return .fail(.rangeMismatch, discardPartial: true,
                             why: "Content-Range \(header) does not continue \(request.offset) bytes of \(expectedLength)")
            }
            if let length = headers.contentLength, length != range.last - range.first + 1 {
                return .fail(.rangeMismatch, discardPartial: true, why: "Content-Length \(length) disagrees with Content-Range \(header)")
            }
            if let sent = request.validator, sent.hasPrefix("\""), let etag = headers.etag, etag != sent {
                return .fail(.rangeMismatch, discardPartial: true, why: "206 for ETag \(etag), but the partial file is \(sent)")
            }
            return .append(offset: request.offset)
        case 200:
            if let length = headers.contentLength, length > expectedLength {
                return .fail(.oversize, discardPartial: true, why: "Content-Length \(length) exceeds the expected \(expectedLength) bytes")
            }
            if let length = headers.contentLength, length < expectedLength {
                return .fail(.lengthMismatch, discardPartial: true, why: "Content-Length \(length), expected \(expectedLength) bytes")
            }
            return .restart(validator: headers.validator)
        case 416:
            if request.offset == expectedLength && request.offset > 0 { return .alreadyComplete }
            return .fail(.httpStatus(416), discardPartial: true, why: "range \(request.offset)- not satisfiable")
        default:
            // The partial file is untouched and still matches its validator: keep it to resume.
            return .fail(.httpStatus(status), discardPartial: false, why: "HTTP status \(status)")
        }
    }

    /// A validator goes into a request header: printable ASCII only, no CR/LF, bounded.
    static func isSafeValidator(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.count <= 256 && value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CR and LF.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
