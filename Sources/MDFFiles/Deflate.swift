// zlib deflate (RFC 1950 stream, as MDF4 ##DZ blocks hold it) for the pure MDF writer.
internal import CZlib

/// Compresses bytes for ##DZ blocks.
public enum Deflate {
    /// A zlib stream of `bytes` at `level` (6 is zlib's default).
    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32 = 6) -> [UInt8] {
        var bound = compressBound(uLong(bytes.count))
        var out = [UInt8](repeating: 0, count: Int(bound))
        let status = out.withUnsafeMutableBufferPointer { target in
            compress2(target.baseAddress, &bound, bytes.bindMemory(to: Bytef.self).baseAddress, uLong(bytes.count), level)
        }
        precondition(status == Z_OK, "zlib compress2 failed with status \(status)")
        out.removeLast(out.count - Int(bound))
        return out
    }
}
