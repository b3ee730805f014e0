// A reversible rearrangement of a batch body (framed journal entries) that a general-purpose
// compressor shrinks far better than the framing itself. Sampled records of one channel group have
// the same length and change slowly from one record to the next, but in the journal they are
// interleaved with other groups and separated by headers, sequence numbers and CRCs, which look
// random to zstd. The transform drops what the receiver can recompute (sequence numbers, reserved
// bytes, CRCs), splits the rest into an index and per-group column matrices, and delta-codes each
// column so slowly moving values become runs of small numbers.
import DAQCore
import Journal

/// The "transposed" body of codec 2 (`docs/uplink.md`); zstd is applied on top by the caller.
///
/// Layout (little-endian), for `n` entries of which `r` are grouped records:
///
/// | bytes | field |
/// |---|---|
/// | 1 | format version = 1 |
/// | 4 | entry count `n` |
/// | n | each entry's kind |
/// | 4 × n | each entry's payload length |
/// | 2 × r | record id of each grouped record (kind 0, payload ≥ 2 bytes), in entry order |
/// | … | payloads of the other entries (layouts, short records) verbatim, in entry order |
/// | … | per group, in order of first appearance: the payloads after the record id as a column-major matrix |
///
/// A group is every record with the same record id and payload length. Its matrix has one column
/// per 16-bit little-endian word of the payload after the id, then a byte column when that part has
/// odd length. A word column is an order byte `k` then one u16 per row: the word itself (`k` = 0),
/// its wrapping difference to the same word of the group's previous record (`k` = 1, the first row
/// against zero), or the difference of those differences (`k` = 2). The encoder picks `k` per
/// column. The byte column always holds first differences.
///
/// Sequence numbers are `firstSequence + i`, reserved bytes are zero and each entry's CRC32C is
/// recomputed, which reproduces any valid body exactly. The batch header's entries checksum (a
/// CRC32C over the original entries' CRC32Cs) catches anything else, including a corrupted matrix.
public enum BatchTransform {
    /// Format 1: codec 2, columns as u16 words, deltas start from zero.
    public static let formatVersion: UInt8 = 1
    /// Format 2: codec 3, deltas continue from a `Context` (the records just before the batch) and
    /// each group's columns are zigzag-coded and split into a low-byte and a high-byte plane.
    public static let contextFormatVersion: UInt8 = 2

    /// Bytes before the per-entry index: version and entry count.
    static let prefixLength = 5

    /// The largest transformed size of a body of `bodyLength` bytes: an entry costs 20 bytes of
    /// framing in the body but at most 7 in the index, and a group's order bytes are fewer than
    /// half its first record's payload. The receiver caps decompression with it before it trusts
    /// anything inside.
    public static func maxTransformedLength(bodyLength: Int) -> Int { prefixLength + bodyLength + bodyLength / 2 }

    /// Transforms `body`, whose framed entries occupy `entries` (consecutive, as returned by
    /// `UplinkBatch.validate` or gathered by the sender). The entries must be valid journal
    /// framing; anything a decode cannot reproduce (a non-zero reserved byte, a stale CRC) is
    /// caught by the receiver's body checksum, never silently accepted.
    /// With a `context` (format 2, codec 3) the columns continue the deltas of the records in it.
    public static func encode(body: [UInt8], entries: [Range<Int>], context: Context? = nil) -> [UInt8] {
        body.withUnsafeBytes { encode(body: $0, entries: entries, context: context) }
    }

    /// Transforms `body` (see `encode(body:entries:context:)`).
    public static func encode(body: UnsafeRawBufferPointer, entries: [Range<Int>], context: Context? = nil) -> [UInt8] {
        encodeSections(body: body, entries: entries, context: context).bytes
    }

    /// Transforms `body` and says where its sections end: format 1 is one section; format 2 ends
    /// one after the index and the order bytes, then after each class plane. A compressor that
    /// starts a new block at each end fits its entropy tables to each (`BatchCompression`).
    public static func encodeSections(body: UnsafeRawBufferPointer, entries: [Range<Int>],
                                      context: Context?) -> (bytes: [UInt8], sectionEnds: [Int]) {
        let headerLength = JournalFraming.headerLength
        var payloadTotal = 0
        var groups = GroupTable()
        for range in entries {
            let length = range.count - JournalFraming.overhead
            precondition(length >= 0 && Int(body.loadLE(UInt32.self, at: range.lowerBound)) == length,
                         "entry range does not match its framing")
            payloadTotal += length
            if isGrouped(kind: body[range.lowerBound + 4], payloadLength: length) {
                let payloadStart = range.lowerBound + headerLength
                groups.add(id: body.loadLE(UInt16.self, at: payloadStart), length: length, payloadStart: payloadStart)
            }
        }
        let orderBytes = groups.groups.reduce(0) { $0 + $1.wordColumns }
        var out = [UInt8](repeating: 0, count: prefixLength + 5 * entries.count + payloadTotal + orderBytes)
        var sectionEnds = [out.count]
        out.withUnsafeMutableBytes { out in
            var writer = ByteWriter(out)
            writer.put(context == nil ? formatVersion : contextFormatVersion)
            writer.put(UInt32(entries.count))
            for range in entries { writer.put(body[range.lowerBound + 4]) }
            for range in entries { writer.put(UInt32(range.count - JournalFraming.overhead)) }
            for range in entries where isGrouped(body: body, entry: range) {
                writer.put(body.loadLE(UInt16.self, at: range.lowerBound + headerLength))
            }
            for range in entries where !isGrouped(body: body, entry: range) {
                writer.copy(UnsafeRawBufferPointer(rebasing: body[(range.lowerBound + headerLength)..<(range.upperBound - 4)]))
            }
            if let context {
                sectionEnds = encodeClassPlanes(body: body, groups: groups.groups, context: context, into: &writer)
            } else {
                for group in groups.groups {
                    encodeMatrix(body: body, rows: group.payloadStarts, length: group.length, into: &writer)
                }
            }
            precondition(writer.offset == out.count, "transform size miscounted")
        }
        return (out, sectionEnds)
    }

    /// Rebuilds the exact framed body from `transformed`. Entry `i` gets sequence number
    /// `firstSequence + i`. Every length is checked before use and the rebuilt body may not exceed
    /// `maxBodyLength` (the batch header's stated body length), so hostile input costs at most
    /// that much memory; anything inconsistent throws a malformed-input error naming the field.
    /// Format 2 needs the `context` the encoder used (a different one yields a body whose entries checksum
    /// does not match the batch header's).
    public static func decode(_ transformed: UnsafeRawBufferPointer, firstSequence: UInt64, maxBodyLength: Int,
                              context: Context? = nil, source: String) throws(DAQError) -> [UInt8] {
        func bad(_ text: String, _ field: String) -> DAQError {
            DAQError(.malformedInput, "transposed body: \(text)", at: InputLocation(file: source, field: field))
        }
        let count = try entryCount(transformed, version: context == nil ? formatVersion : contextFormatVersion,
                                   fieldPrefix: "transform", firstSequence: firstSequence, maxBodyLength: maxBodyLength, bad: bad)
        guard transformed.count >= prefixLength + 5 * count else {
            throw bad("\(transformed.count) bytes cannot hold the index of \(count) entries", "index")
        }
        let kinds = prefixLength, lengths = prefixLength + count
        var bodyLength = 0, payloadTotal = 0, grouped = 0
        for index in 0..<count {
            let length = Int(transformed.loadLE(UInt32.self, at: lengths + 4 * index))
            guard length <= JournalFraming.maxPayloadLength else {
                throw bad("entry \(index) has a payload of \(length) bytes", "payload length")
            }
            bodyLength += JournalFraming.framedLength(payloadLength: length)
            guard bodyLength <= maxBodyLength else {
                throw bad("entries up to \(index) need more than the stated \(maxBodyLength) bytes", "payload length")
            }
            payloadTotal += length
            if isGrouped(kind: transformed[kinds + index], payloadLength: length) { grouped += 1 }
        }
        let recordIDs = lengths + 4 * count
        guard transformed.count >= recordIDs + 2 * grouped else {
            throw bad("\(transformed.count) bytes cannot hold the ids of \(grouped) records", "record ids")
        }
        // Where every payload goes in the body, and which group each record joins: all known from
        // the index and the ids, before the body is allocated.
        var groups = GroupTable()
        var verbatim: [(start: Int, length: Int)] = []
        var idRows: [Int] = []
        var entryStart = 0
        for index in 0..<count {
            let length = Int(transformed.loadLE(UInt32.self, at: lengths + 4 * index))
            let payloadStart = entryStart + JournalFraming.headerLength
            if isGrouped(kind: transformed[kinds + index], payloadLength: length) {
                groups.add(id: transformed.loadLE(UInt16.self, at: recordIDs + 2 * idRows.count), length: length,
                           payloadStart: payloadStart)
                idRows.append(payloadStart)
            } else {
                verbatim.append((payloadStart, length))
            }
            entryStart += JournalFraming.framedLength(payloadLength: length)
        }
        // The ids take the first two payload bytes of each grouped record out of its matrix, so
        // the sections add up to the index, the payloads and one order byte per word column.
        let expected = recordIDs + payloadTotal + groups.groups.reduce(0) { $0 + $1.wordColumns }
        guard transformed.count == expected else {
            throw bad("\(transformed.count) bytes, the index describes \(expected)", "transform length")
        }
        var body = [UInt8](repeating: 0, count: bodyLength)
        let badOrder: UInt8? = body.withUnsafeMutableBytes { body in
            var entryStart = 0
            for index in 0..<count {
                let length = Int(transformed.loadLE(UInt32.self, at: lengths + 4 * index))
                JournalFraming.writeHeader(kind: JournalEntryKind(rawValue: transformed[kinds + index]),
                                           sequence: firstSequence + UInt64(index), payloadLength: length,
                                           into: UnsafeMutableRawBufferPointer(rebasing: body[entryStart...]))
                entryStart += JournalFraming.framedLength(payloadLength: length)
            }
            var reader = ByteReader(transformed, offset: recordIDs)
            for row in idRows {
                UnsafeMutableRawBufferPointer(rebasing: body[row..<(row + 2)]).copyMemory(from: reader.take(2))
            }
            for (start, length) in verbatim {
                UnsafeMutableRawBufferPointer(rebasing: body[start..<(start + length)]).copyMemory(from: reader.take(length))
            }
            if let context {
                if let order = decodeClassPlanes(from: &reader, groups: groups.groups, context: context, into: body) {
                    return order
                }
            } else {
                for group in groups.groups {
                    if let order = decodeMatrix(from: &reader, rows: group.payloadStarts, length: group.length, into: body) {
                        return order
                    }
                }
            }
            sealEntries(body)
            return nil
        }
        if let badOrder { throw bad("column order byte \(badOrder) names no order (0, 1, 2) or class", "column order") }
        return body
    }

    /// Reads the prefix every coded body starts with, `u8 format | u32 entry count`, and checks
    /// the count before anything is allocated for it: every entry occupies at least its framing
    /// in the body, and the sequence numbers must not overflow. Errors name "<fieldPrefix> prefix",
    /// "<fieldPrefix> version" or "entry count".
    static func entryCount(_ coded: UnsafeRawBufferPointer, version: UInt8, fieldPrefix: String, firstSequence: UInt64,
                           maxBodyLength: Int, bad: (String, String) -> DAQError) throws(DAQError) -> Int {
        guard coded.count >= prefixLength else { throw bad("\(coded.count) bytes, shorter than its prefix", "\(fieldPrefix) prefix") }
        guard coded[0] == version else {
            throw bad("format version \(coded[0]), expected \(version)", "\(fieldPrefix) version")
        }
        let count = Int(coded.loadLE(UInt32.self, at: 1))
        guard count <= maxBodyLength / JournalFraming.overhead else {
            throw bad("\(count) entries cannot fit in a body of \(maxBodyLength) bytes", "entry count")
        }
        guard count == 0 || firstSequence <= UInt64.max - UInt64(count - 1) else {
            throw bad("\(count) entries from sequence \(firstSequence) overflow", "entry count")
        }
        return count
    }

    // MARK: matrices

    /// Writes the columns of one group (rows are payload starts in `body`): per word column an
    /// order byte and the column coded at that order, then the odd byte column if any.
    private static func encodeMatrix(body: UnsafeRawBufferPointer, rows: [Int], length: Int, into writer: inout ByteWriter) {
        for word in 0..<((length - 2) / 2) {
            let offset = 2 + 2 * word
            let order = chooseOrder(body: body, rows: rows, offset: offset)
            writer.put(order)
            var previous: UInt16 = 0, previousDelta: UInt16 = 0
            for row in rows {
                let value = body.loadLE(UInt16.self, at: row + offset)
                let delta = value &- previous
                writer.put(order == 0 ? value : order == 1 ? delta : delta &- previousDelta)
                previous = value
                previousDelta = delta
            }
        }
        if (length - 2) % 2 == 1 {
            var previous: UInt8 = 0
            for row in rows {
                let value = body[row + length - 1]
                writer.put(value &- previous)
                previous = value
            }
        }
    }

    /// The difference order that makes a word column smallest. Noisy channels and counters are
    /// best as first differences, smooth waveforms (sine, ramps) as second differences, which
    /// are near zero; values that jump around a level may be best as they are. The estimate is
    /// the sum of signed magnitudes (order 0 taken relative to the first row), a fair stand-in
    /// for what the entropy coder will pay, at one pass over the column.
    static func chooseOrder(body: UnsafeRawBufferPointer, rows: [Int], offset: Int) -> UInt8 {
        chooseOrderAndCost(body: body, rows: rows, offset: offset, previous: 0, previousDelta: 0).order
    }

    /// `chooseOrder` starting from a group's previous value and difference, with the chosen
    /// order's cost (the sum of the coded values' signed magnitudes).
    static func chooseOrderAndCost(body: UnsafeRawBufferPointer, rows: [Int], offset: Int,
                                   previous start: UInt16, previousDelta startDelta: UInt16) -> (order: UInt8, cost: UInt64) {
        guard let firstRow = rows.first else { return (1, 0) }
        let level = body.loadLE(UInt16.self, at: firstRow + offset)
        var cost: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var previous = start, previousDelta = startDelta
        for row in rows {
            let value = body.loadLE(UInt16.self, at: row + offset)
            let delta = value &- previous
            cost.0 += UInt64(Int16(bitPattern: value &- level).magnitude)
            cost.1 += UInt64(Int16(bitPattern: delta).magnitude)
            cost.2 += UInt64(Int16(bitPattern: delta &- previousDelta).magnitude)
            previous = value
            previousDelta = delta
        }
        if cost.1 <= cost.0 && cost.1 <= cost.2 { return (1, cost.1) }
        return cost.2 < cost.0 ? (2, cost.2) : (0, cost.0)
    }

    /// Undoes `encodeMatrix`, writing each record's payload after its id. The caller has checked
    /// that the reader holds exactly the bytes the matrices need; returns an order byte that is
    /// not 0, 1 or 2 (the body is then incomplete and must be dropped).
    private static func decodeMatrix(from reader: inout ByteReader, rows: [Int], length: Int,
                                     into body: UnsafeMutableRawBufferPointer) -> UInt8? {
        for word in 0..<((length - 2) / 2) {
            let offset = 2 + 2 * word
            let order: UInt8 = reader.take()
            guard order <= 2 else { return order }
            var value: UInt16 = 0, delta: UInt16 = 0
            for row in rows {
                let coded: UInt16 = reader.take()
                switch order {
                case 0: value = coded
                case 1: value &+= coded
                default:
                    delta &+= coded
                    value &+= delta
                }
                body.storeBytes(of: value.littleEndian, toByteOffset: row + offset, as: UInt16.self)
            }
        }
        if (length - 2) % 2 == 1 {
            var value: UInt8 = 0
            for row in rows {
                let delta: UInt8 = reader.take()
                value &+= delta
                body[row + length - 1] = value
            }
        }
        return nil
    }

    /// Appends each entry's CRC32C over its header and payload (the body's framing is complete).
    static func sealEntries(_ body: UnsafeMutableRawBufferPointer) {
        var offset = 0
        while offset < body.count {
            let length = Int(UnsafeRawBufferPointer(body).loadLE(UInt32.self, at: offset))
            let covered = offset + JournalFraming.headerLength + length
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(body)[offset..<covered]))
            body.storeBytes(of: crc.littleEndian, toByteOffset: covered, as: UInt32.self)
            offset = covered + JournalFraming.trailerLength
        }
    }

    /// Whether an entry goes into a group matrix: records long enough to carry a record id.
    /// Everything else (layouts, reserved kinds, degenerate records) travels verbatim.
    static func isGrouped(kind: UInt8, payloadLength: Int) -> Bool {
        kind == JournalEntryKind.record.rawValue && payloadLength >= 2
    }

    static func isGrouped(body: UnsafeRawBufferPointer, entry: Range<Int>) -> Bool {
        isGrouped(kind: body[entry.lowerBound + 4], payloadLength: entry.count - JournalFraming.overhead)
    }
}

/// Groups of records keyed by record id and payload length, in order of first appearance.
struct GroupTable {
    struct Group {
        var id: UInt16
        var length: Int
        var payloadStarts: [Int] = []
        /// 16-bit columns after the record id: each costs one order byte in the matrix.
        var wordColumns: Int { (length - 2) / 2 }
    }

    private(set) var groups: [Group] = []
    private var index: [UInt64: Int] = [:]

    /// A group's key: payload length and record id.
    static func key(id: UInt16, length: Int) -> UInt64 { UInt64(length) << 16 | UInt64(id) }

    mutating func add(id: UInt16, length: Int, payloadStart: Int) {
        let key = GroupTable.key(id: id, length: length)
        if let existing = index[key] {
            groups[existing].payloadStarts.append(payloadStart)
        } else {
            index[key] = groups.count
            groups.append(Group(id: id, length: length, payloadStarts: [payloadStart]))
        }
    }
}

/// Sequential little-endian writes into a buffer sized in advance.
struct ByteWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    /// Moves past `count` bytes the caller filled in directly.
    mutating func skip(_ count: Int) { offset += count }

    mutating func copy(_ bytes: UnsafeRawBufferPointer) {
        UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + bytes.count)]).copyMemory(from: bytes)
        offset += bytes.count
    }
}

/// Sequential little-endian reads; bounds are checked by the caller before reading starts.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ buffer: UnsafeRawBufferPointer, offset: Int) {
        self.buffer = buffer
        self.offset = offset
    }

    mutating func take<T: FixedWidthInteger>() -> T {
        let value = buffer.loadLE(T.self, at: offset)
        offset += MemoryLayout<T>.size
        return value
    }

    mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + count)])
    }
}

extension UnsafeRawBufferPointer {
    /// A little-endian integer at a byte offset (no alignment needed).
    func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
