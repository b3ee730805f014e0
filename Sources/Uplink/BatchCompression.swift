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

    /// zstd at `level` in one frame whose blocks end where `body`'s sections end
    /// (`BatchTransform.encodeSections`): each block gets entropy tables fitted to its own section
    /// (quiet columns, slow ones, noisy ones) instead of one table for their mixture. Any zstd
    /// decoder reads it as an ordinary frame; the frame states its content size.
    public static func compress(_ body: UnsafeRawBufferPointer, sectionEnds: [Int], level: Int32) -> [UInt8] {
        guard sectionEnds.count > 1 else { return compress(body, level: level) }
        precondition(sectionEnds.last == body.count, "sections must end at the body's end")
        guard let context = ZSTD_createCCtx() else { preconditionFailure("zstd cannot allocate a compression context") }
        defer { ZSTD_freeCCtx(context) }
        func check(_ code: Int) {
            precondition(ZSTD_isError(code) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(code)))")
        }
        check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level))
        check(ZSTD_CCtx_setPledgedSrcSize(context, UInt64(body.count)))
        // A flush ends a block: at most one more block header per section beyond the usual bound.
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(body.count) + 8 * sectionEnds.count)
        let written = out.withUnsafeMutableBytes { out -> Int in
            var output = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
            var start = 0
            for (index, end) in sectionEnds.enumerated() {
                var input = ZSTD_inBuffer(src: body.baseAddress.map { $0 + start }, size: end - start, pos: 0)
                let last = index == sectionEnds.count - 1
                var remaining = 0
                repeat {
                    remaining = ZSTD_compressStream2(context, &output, &input, last ? ZSTD_e_end : ZSTD_e_flush)
                    check(remaining)
                } while remaining != 0 || input.pos < input.size
                start = end
            }
            return output.pos
        }
        out.removeLast(out.count - written)
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
