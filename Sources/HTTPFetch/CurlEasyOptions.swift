// The libcurl options every fetch runs with: HTTPS only, verified mutual TLS, our CA only, no
// redirects, connect and low-speed limits, and the header/body callbacks into the transfer.
internal import CCurl

enum CurlEasyOptions {
    /// Sets all options on `transfer.easy`; returns the first failure (CURLE_OK when all took).
    static func apply(_ configuration: HTTPFetchConfiguration, url: String, headers: UnsafeMutablePointer<curl_slist>?,
                      to transfer: HTTPTransfer) -> CURLcode {
        let easy = transfer.easy
        let tls = configuration.tls
        // The transfer is the callbacks' context, unretained: HTTPFetcher.transfers holds it
        // until after curl_easy_cleanup.
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        var results: [CURLcode] = [
            daqlink_curl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, transfer.errorBuffer),
            daqlink_curl_setopt_string(easy, CURLOPT_URL, url),
            daqlink_curl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "https"),
            daqlink_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1),
            daqlink_curl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0),
            daqlink_curl_setopt_string(easy, CURLOPT_PROXY, configuration.proxy ?? ""),
            // Verification is never optional: peer chain against our CA only, and the host name.
            daqlink_curl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1),
            daqlink_curl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2),
            daqlink_curl_setopt_long(easy, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2),
            daqlink_curl_setopt_string(easy, CURLOPT_CAINFO, tls.caFile),
            daqlink_curl_setopt_string(easy, CURLOPT_CAPATH, nil),
            daqlink_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, configuration.connectTimeoutMilliseconds),
            daqlink_curl_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, configuration.lowSpeedBytesPerSecond),
            daqlink_curl_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, configuration.lowSpeedSeconds),
            daqlink_curl_setopt_list(easy, CURLOPT_HTTPHEADER, headers),
            daqlink_curl_setopt_pointer(easy, CURLOPT_HEADERDATA, context),
            daqlink_curl_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION) { buffer, size, count, context in
                let length = size * count
                guard let buffer, let context else { return length }
                let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: length), as: UTF8.self)
                Unmanaged<HTTPTransfer>.fromOpaque(context).takeUnretainedValue().received(headerLine: line.trimmingWhitespace())
                return length
            },
            daqlink_curl_setopt_pointer(easy, CURLOPT_WRITEDATA, context),
            daqlink_curl_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION) { buffer, size, count, context in
                let length = size * count
                guard let context else { return 0 }
                let bytes = UnsafeRawBufferPointer(start: buffer, count: buffer == nil ? 0 : length)
                // Returning anything but `length` makes libcurl abort with CURLE_WRITE_ERROR.
                return Unmanaged<HTTPTransfer>.fromOpaque(context).takeUnretainedValue().received(body: bytes) ? length : 0
            },
        ]
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            results.append(daqlink_curl_setopt_string(easy, CURLOPT_SSLCERT, certificate))
            results.append(daqlink_curl_setopt_string(easy, CURLOPT_SSLKEY, key))
        }
        if let revocationList = tls.revocationListFile {
            results.append(daqlink_curl_setopt_string(easy, CURLOPT_CRLFILE, revocationList))
        }
        if let rate = configuration.maxReceiveBytesPerSecond {
            results.append(daqlink_curl_setopt_offset(easy, CURLOPT_MAX_RECV_SPEED_LARGE, curl_off_t(rate)))
        }
        return results.first { $0 != CURLE_OK } ?? CURLE_OK
    }
}
