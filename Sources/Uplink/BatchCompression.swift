// Zstandard compression of batch bodies (adapter over libzstd).
internal import CZstd
import DAQCore

/// Compresses and decompresses batch bodies with zstd.
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
}
