// A batch as the collector holds it: its checked header and, once decoded, the device's framed
// entries. Codec 3 and 4 bodies stay compressed until the entries they were coded against (their
// context) are committed; every other codec is decoded on arrival.
import DAQCore
import Delivery
import Journal
import Uplink

/// A batch whose header has been checked; `body` and `entries` are filled by `decode`.
struct ReceivedBatch {
    var header: UplinkBatch
    /// The framed entries `first...last` and each one's byte range (empty until decoded).
    var body: [UInt8] = []
    var entries: [Range<Int>] = []
    /// The wire body still to decode (codecs 3 and 4 before their context was committed).
    var encoded: [UInt8]?
    let source: String

    var isDecoded: Bool { encoded == nil }

    /// Checks the header of `payload`; decodes the body unless it needs a context (codecs 3, 4).
    init(payload: [UInt8], source: String) throws(DAQError) {
        self.source = source
        let (header, bodyStart) = try payload.withUnsafeBytes { raw in
            Result { () throws(DAQError) in try UplinkBatch.decodeHeader(raw, source: source) }
        }.get()
        self.header = header
        encoded = Array(payload[bodyStart...])
        if !header.codec.usesContext { try decode(context: nil) }
    }

    /// Decompresses, untransforms and validates the body; `context` is required for codecs 3 and 4
    /// and must be the one its header names. Both steps are capped by the header's body length; the
    /// body CRC32C then vouches for the rebuilt bytes.
    mutating func decode(context: BatchTransform.Context?) throws(DAQError) {
        guard let encoded else { return }
        let header = self.header, source = self.source
        let bodyLength = Int(header.bodyLength)
        let body: [UInt8] = try encoded.withUnsafeBytes { rest in
            Result { () throws(DAQError) -> [UInt8] in
                switch header.codec {
                case .none:
                    return Array(rest)
                case .zstd:
                    return try BatchCompression.decompress(rest, length: bodyLength, source: source)
                case .transposedZstd, .contextTransposedZstd:
                    let transposed = try BatchCompression.decompress(
                        rest, maxLength: BatchTransform.maxTransformedLength(bodyLength: bodyLength), source: source)
                    return try transposed.withUnsafeBytes { t in
                        Result { () throws(DAQError) in
                            try BatchTransform.decode(t, firstSequence: header.first, maxBodyLength: bodyLength,
                                                      context: context, source: source)
                        }
                    }.get()
                case .contextModelled:
                    guard let context else {
                        throw DAQError(.malformedInput, "codec 4 needs its context", at: InputLocation(file: source, field: "context"))
                    }
                    return try ContextCoder.decode(rest, firstSequence: header.first, maxBodyLength: bodyLength,
                                                   context: context, source: source)
                }
            }
        }.get()
        // Codecs 2, 3 and 4: the entries were framed and CRC'd here, so only their layout is walked.
        let sealed = header.codec != .none && header.codec != .zstd
        entries = try body.withUnsafeBytes { b in
            Result { () throws(DAQError) in try header.validate(body: b, entriesSealed: sealed, source: source) }
        }.get()
        self.body = body
        self.encoded = nil
    }
}
