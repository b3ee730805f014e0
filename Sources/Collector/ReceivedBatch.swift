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
    /// Bytes holding the framed entries `first...last` at `entries` (empty until decoded). For
    /// codec 0 this is the received message itself, wire header included: never copied.
    private(set) var body: [UInt8] = []
    private(set) var entries: [Range<Int>] = []
    /// The received message and where its wire body starts, until decoded (codecs 3 and 4 wait for
    /// their context to be committed).
    private var encoded: (message: [UInt8], bodyStart: Int)?
    let source: String

    var isDecoded: Bool { encoded == nil }
    /// Bytes it holds in memory (its body once decoded, else the message as received).
    var heldBytes: Int { encoded?.message.count ?? body.count }

    /// Checks the header of `payload`; decodes the body unless it needs a context (codecs 3, 4).
    init(payload: [UInt8], source: String) throws(DAQError) {
        self.source = source
        let (header, bodyStart) = try payload.withUnsafeBytes { raw in
            Result { () throws(DAQError) in try UplinkBatch.decodeHeader(raw, source: source) }
        }.get()
        self.header = header
        encoded = (payload, bodyStart)
        if !header.codec.usesContext { try decode(context: nil) }
    }

    /// Decompresses, untransforms and validates the body; `context` is required for codecs 3 and 4
    /// and must be the one its header names. Both steps are capped by the header's body length; the
    /// body CRC32C then vouches for the rebuilt bytes. Afterwards every entry's CRC32C is known
    /// to match its bytes (checked here, or computed by `BatchTransform.decode`), which is what
    /// lets the journal writer skip checking them again (`checksumsVerifiedByCaller`).
    mutating func decode(context: BatchTransform.Context?) throws(DAQError) {
        guard let (message, bodyStart) = encoded else { return }
        let header = self.header, source = self.source
        let bodyLength = Int(header.bodyLength)
        // Codec 0 (nil): the entries are validated where they arrived, at `bodyStart` of the message.
        let decoded = try message.withUnsafeBytes { raw in
            Result { () throws(DAQError) -> [UInt8]? in
                let rest = UnsafeRawBufferPointer(rebasing: raw[bodyStart...])
                switch header.codec {
                case .none:
                    return nil
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
        let body = decoded ?? message
        let start = decoded == nil ? bodyStart : 0
        // Codecs 2, 3 and 4: the entries were framed and CRC'd here, so only their layout is walked.
        let sealed = header.codec != .none && header.codec != .zstd
        var entries = try body.withUnsafeBytes { raw in
            Result { () throws(DAQError) in
                try header.validate(body: UnsafeRawBufferPointer(rebasing: raw[start...]), entriesSealed: sealed, source: source)
            }
        }.get()
        if start > 0 {
            for index in entries.indices { entries[index] = (entries[index].lowerBound + start)..<(entries[index].upperBound + start) }
        }
        self.body = body
        self.entries = entries
        self.encoded = nil
    }
}
