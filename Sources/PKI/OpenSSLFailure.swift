// Turns OpenSSL's per-thread error queue into a DAQError that also names the file involved.
internal import COpenSSL
import DAQCore

enum OpenSSLFailure {
    /// Forgets errors left by earlier calls so a failure is never blamed on stale queue entries.
    static func clearQueue() {
        ERR_clear_error()
    }

    /// Drains this thread's error queue, oldest first, into one line.
    static func drainQueue() -> String {
        var parts: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            parts.append(String(decoding: bytes, as: UTF8.self))
        }
        return parts.joined(separator: "; ")
    }

    /// A `.system` error for a failed OpenSSL call: what we tried, OpenSSL's own reasons, and the file.
    static func error(_ action: String, file: String? = nil) -> DAQError {
        let queue = drainQueue()
        let message = queue.isEmpty ? "OpenSSL: \(action) failed" : "OpenSSL: \(action) failed: \(queue)"
        return DAQError(.system, message, at: file.map { InputLocation(file: $0) })
    }
}
