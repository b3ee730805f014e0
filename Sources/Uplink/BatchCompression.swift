// Zstandard compression of batch bodies (adapter over libzstd).
internal import CZstd
import DAQCore

/// Compresses and decompresses batch bodies with zstd (codecs 1 and 2; `BatchTransform` does
/// codec 2's rearrangement before compression and after decompression).
public enum BatchCompression {
    /// zstd at `level` (3 is zstd's default: fast, good on repetitive sampled records).
    public static func compress(_ body: UnsafeRawBufferPointer, level: Int32 = 3) -> [UInt8] {
        let bound = ZSTD_compressBound(body.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { ZSTD_compress($0.baseAddress, bound, body.baseAddress, body.count, level) }
        precondition(ZSTD_isError(written) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        out.removeLast(bound - written)
        return out
    }

    /// Decompresses exactly `length` bytes; anything else is a malformed batch.
    public static func decompress(_ data: UnsafeRawBufferPointer, length: Int, source: String) throws(DAQError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let got = out.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, length, data.baseAddress, data.count) }
        guard ZSTD_isError(got) == 0, got == length else {
            let reason = ZSTD_isError(got) != 0 ? String(cString: ZSTD_getErrorName(got)) : "\(got) bytes, expected \(length)"
            throw DAQError(.malformedInput, "batch body does not decompress: \(reason)", at: InputLocation(file: source, field: "body"))
        }
        return out
    }

    /// Decompresses one zstd frame whose decompressed size is unknown to the caller but at most
    /// `maxLength` (codec 2: the transformed body's size is not in the batch header). The size is
    /// taken from the frame header and checked against the cap before anything is allocated, so a
    /// hostile frame cannot make the collector allocate more than the batch header allows.
    public static func decompress(_ data: UnsafeRawBufferPointer, maxLength: Int, source: String) throws(DAQError) -> [UInt8] {
        func bad(_ reason: String) -> DAQError {
            DAQError(.malformedInput, "batch body does not decompress: \(reason)", at: InputLocation(file: source, field: "body"))
        }
        let stated = ZSTD_getFrameContentSize(data.baseAddress, data.count)
        // ZSTD_CONTENTSIZE_UNKNOWN and _ERROR are the two largest UInt64 values, above any cap.
        guard stated <= UInt64(maxLength) else {
            throw bad(stated >= contentSizeError ? "no frame content size" : "frame says \(stated) bytes, at most \(maxLength) allowed")
        }
        return try decompress(data, length: Int(stated), source: source)
    }

    /// `ZSTD_CONTENTSIZE_UNKNOWN` is (0ULL - 1), `ZSTD_CONTENTSIZE_ERROR` is (0ULL - 2); the C
    /// macros are not imported into Swift.
    private static let contentSizeError: UInt64 = UInt64.max - 1
}
