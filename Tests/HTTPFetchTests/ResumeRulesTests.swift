// The resume rules as event → decision tables (pure: no server, no file).
@testable import HTTPFetch
import Testing

@Suite struct ResumeRulesTests {
    let etag = "\"65a1-30d40\""

    @Test func requestsResumeOnlyWithAValidatorAndAPlausibleLength() {
        #expect(ResumeRules.request(existingBytes: 100, expectedLength: 1000, validator: etag) == ResumeRequest(offset: 100, validator: etag))
        #expect(ResumeRules.request(existingBytes: 1000, expectedLength: 1000, validator: etag).offset == 1000)
        #expect(ResumeRules.request(existingBytes: 100, expectedLength: 1000, validator: nil).offset == 0, "no validator: never resume")
        #expect(ResumeRules.request(existingBytes: 1001, expectedLength: 1000, validator: etag).offset == 0, "longer than expected")
        #expect(ResumeRules.request(existingBytes: 0, expectedLength: 1000, validator: etag) == ResumeRequest(offset: 0, validator: nil))
        #expect(ResumeRules.request(existingBytes: 5, expectedLength: 9, validator: "a\r\nX-Evil: 1").offset == 0, "no header injection")
    }

    @Test func partialContentMustContinueExactly() {
        let request = ResumeRequest(offset: 100, validator: etag)
        func decide(_ range: String?, length: Int? = nil, etag responseTag: String? = nil) -> ResponseDecision {
            ResumeRules.decide(status: 206, headers: ResponseHeaders(contentLength: length, contentRange: range, etag: responseTag),
                               request: request, expectedLength: 1000)
        }
        #expect(decide("bytes 100-999/1000", length: 900, etag: etag) == .append(offset: 100))
        for bad in ["bytes 107-999/1000", "bytes 100-998/1000", "bytes 100-999/1010", "bytes */1000", "garbage", nil] as [String?] {
            guard case .fail(.rangeMismatch, discardPartial: true, _) = decide(bad) else {
                Issue.record("\(bad ?? "no Content-Range") accepted")
                continue
            }
        }
        guard case .fail(.rangeMismatch, true, _) = decide("bytes 100-999/1000", length: 899) else { Issue.record("length"); return }
        guard case .fail(.rangeMismatch, true, _) = decide("bytes 100-999/1000", etag: "\"other\"") else { Issue.record("etag"); return }
        let fresh = ResumeRules.decide(status: 206, headers: ResponseHeaders(contentRange: "bytes 0-999/1000"),
                                       request: ResumeRequest(offset: 0, validator: nil), expectedLength: 1000)
        guard case .fail(.rangeMismatch, true, _) = fresh else { Issue.record("206 without Range accepted"); return }
    }

    @Test func fullAnswersStartOverWithTheirValidator() {
        let request = ResumeRequest(offset: 100, validator: etag)
        let strong = ResponseHeaders(contentLength: 1000, etag: "\"new\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT")
        #expect(ResumeRules.decide(status: 200, headers: strong, request: request, expectedLength: 1000) == .restart(validator: "\"new\""))
        let weak = ResponseHeaders(etag: "W/\"new\"", lastModified: "Tue, 14 Nov 2023 22:13:20 GMT")
        #expect(ResumeRules.decide(status: 200, headers: weak, request: request, expectedLength: 1000)
                == .restart(validator: "Tue, 14 Nov 2023 22:13:20 GMT"), "weak ETags cannot be used with If-Range")
        #expect(ResumeRules.decide(status: 200, headers: ResponseHeaders(), request: request, expectedLength: 1000) == .restart(validator: nil))
        guard case .fail(.oversize, true, _) = ResumeRules.decide(status: 200, headers: ResponseHeaders(contentLength: 1001),
                                                                   request: request, expectedLength: 1000) else { Issue.record("oversize"); return }
        guard case .fail(.lengthMismatch, true, _) = ResumeRules.decide(status: 200, headers: ResponseHeaders(contentLength: 999),
                                                                         request: request, expectedLength: 1000) else { Issue.record("short"); return }
    }

    @Test func unsatisfiableAndErrorStatuses() {
        let complete = ResumeRequest(offset: 1000, validator: etag), partial = ResumeRequest(offset: 10, validator: etag)
        #expect(ResumeRules.decide(status: 416, headers: ResponseHeaders(), request: complete, expectedLength: 1000) == .alreadyComplete)
        guard case .fail(.httpStatus(416), true, _) = ResumeRules.decide(status: 416, headers: ResponseHeaders(), request: partial,
                                                                          expectedLength: 1000) else { Issue.record("416"); return }
        for status in [403, 404, 500, 503] {
            guard case .fail(.httpStatus(status), false, _) = ResumeRules.decide(status: status, headers: ResponseHeaders(), request: partial,
                                                                                  expectedLength: 1000) else { Issue.record("\(status)"); continue }
        }
    }

    @Test func parsesHeaderLinesCaseInsensitively() {
        var headers = ResponseHeaders()
        for line in ["Content-Length: 900", "content-range:bytes 100-999/1000", "ETAG:  \"x\"  ", "Last-Modified: Tue, 14 Nov 2023", "X-Other: 1"] {
            headers.record(line: line)
        }
        #expect(headers == ResponseHeaders(contentLength: 900, contentRange: "bytes 100-999/1000", etag: "\"x\"", lastModified: "Tue, 14 Nov 2023"))
        #expect(ContentRange(header: "bytes 5-4/10") == nil && ContentRange(header: "bytes 0-10/10") == nil)
        #expect(ContentRange(header: "bytes 0-9/10") == ContentRange(first: 0, last: 9, total: 10))
    }
}
