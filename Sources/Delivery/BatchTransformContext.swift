// Format 2 of the batch transform (codec 3): a batch's columns continue from the records just
// before it. Small, low-latency batches otherwise pay for restarting every delta from zero (their
// first rows cost as much as raw values) — with ~20 entries per batch that is most of the batch.
// The receiver can always rebuild the same context: it commits strictly in order, so when it
// decodes a batch it already holds every entry before it.
import Journal

extension BatchTransform {
    /// What a batch's columns continue from: for each group (record id + payload length), the last
    /// two records of it among the context entries. Built the same way from the same entries on
    /// both sides; a group absent from the context starts from zero as in format 1.
    public struct Context: Sendable, Equatable {
        /// Group key (payload length << 16 | record id) → payloads after the id of its last two
        /// records, older first (one when the context holds only one).
        private var history: [UInt64: [[UInt8]]] = [:]

        /// A context with no records (every group starts from zero).
        public init() {}

        /// The context of the framed entries `entries` of `body` (consecutive, in order).
        public init(body: UnsafeRawBufferPointer, entries: [Range<Int>]) {
            for range in entries.reversed() where BatchTransform.isGrouped(body: body, entry: range) {
                let payload = range.lowerBound + JournalFraming.headerLength
                let length = range.count - JournalFraming.overhead
                let key = UInt64(length) << 16 | UInt64(body.loadLE(UInt16.self, at: payload))
                guard (history[key]?.count ?? 0) < 2 else { continue }
                history[key, default: []].insert(Array(body[(payload + 2)..<(payload + length)]), at: 0)
            }
        }

        /// The starting state of a group's columns: each word's last value and last first
        /// difference, and the last odd byte.
        func seed(id: UInt16, length: Int) -> Seed {
            let words = (length - 2) / 2
            guard let rows = history[UInt64(length) << 16 | UInt64(id)], let last = rows.last else {
                return Seed(previous: Array(repeating: 0, count: words), previousDelta: Array(repeating: 0, count: words),
                            previousByte: 0)
            }
            func word(_ row: [UInt8], _ index: Int) -> UInt16 { UInt16(row[2 * index]) | UInt16(row[2 * index + 1]) << 8 }
            let previous = (0..<words).map { word(last, $0) }
            let before = rows.count == 2 ? (0..<words).map { word(rows[0], $0) } : Array(repeating: 0, count: words)
            return Seed(previous: previous, previousDelta: zip(previous, before).map { $0 &- $1 },
                        previousByte: (length - 2) % 2 == 1 ? last[length - 3] : 0)
        }
    }

    struct Seed {
        var previous: [UInt16]
        var previousDelta: [UInt16]
        var previousByte: UInt8
    }

    /// One group's columns in format 2: the order byte of every word column, then every coded word's
    /// low byte (column after column), then every high byte, then the odd byte column as first
    /// differences. Coded words are zigzag-mapped (0, −1, 1, −2 … → 0, 1, 2, 3 …) so that small
    /// differences of either sign leave a high-byte plane of zeros.
    static func encodePlanes(body: UnsafeRawBufferPointer, rows: [Int], length: Int, seed: Seed,
                             into writer: inout ByteWriter) {
        let words = (length - 2) / 2
        var orders: [UInt8] = []
        orders.reserveCapacity(words)
        for word in 0..<words {
            orders.append(chooseOrder(body: body, rows: rows, offset: 2 + 2 * word,
                                      previous: seed.previous[word], previousDelta: seed.previousDelta[word]))
        }
        for order in orders { writer.put(order) }
        let planeLength = words * rows.count
        let low = writer.offset, high = writer.offset + planeLength
        var index = 0
        for word in 0..<words {
            let offset = 2 + 2 * word, order = orders[word]
            var previous = seed.previous[word], previousDelta = seed.previousDelta[word]
            for row in rows {
                let value = body.loadLE(UInt16.self, at: row + offset)
                let delta = value &- previous
                let coded = zigzag(order == 0 ? value : order == 1 ? delta : delta &- previousDelta)
                writer.buffer[low + index] = UInt8(truncatingIfNeeded: coded)
                writer.buffer[high + index] = UInt8(truncatingIfNeeded: coded >> 8)
                index += 1
                previous = value
                previousDelta = delta
            }
        }
        writer.skip(2 * planeLength)
        if (length - 2) % 2 == 1 {
            var previous = seed.previousByte
            for row in rows {
                let value = body[row + length - 1]
                writer.put(value &- previous)
                previous = value
            }
        }
    }

    /// Undoes `encodePlanes`; the caller has checked that the reader holds exactly the bytes the
    /// group needs. Returns an order byte that is not 0, 1 or 2 (the body must then be dropped).
    static func decodePlanes(from reader: inout ByteReader, rows: [Int], length: Int, seed: Seed,
                             into body: UnsafeMutableRawBufferPointer) -> UInt8? {
        let words = (length - 2) / 2
        let orders = reader.take(words)
        if let bad = orders.first(where: { $0 > 2 }) { return bad }
        let low = reader.take(words * rows.count), high = reader.take(words * rows.count)
        var index = 0
        for word in 0..<words {
            let offset = 2 + 2 * word, order = orders[word]
            var value = seed.previous[word], delta = seed.previousDelta[word]
            for row in rows {
                let coded = unzigzag(UInt16(low[index]) | UInt16(high[index]) << 8)
                index += 1
                switch order {
                case 0: delta = coded &- value; value = coded
                case 1: delta = coded; value &+= coded
                default:
                    delta &+= coded
                    value &+= delta
                }
                body.storeBytes(of: value.littleEndian, toByteOffset: row + offset, as: UInt16.self)
            }
        }
        if (length - 2) % 2 == 1 {
            var value = seed.previousByte
            for row in rows {
                let difference: UInt8 = reader.take()
                value &+= difference
                body[row + length - 1] = value
            }
        }
        return nil
    }

    static func zigzag(_ value: UInt16) -> UInt16 {
        let signed = Int16(bitPattern: value)
        return UInt16(bitPattern: (signed << 1) ^ (signed >> 15))
    }

    static func unzigzag(_ value: UInt16) -> UInt16 {
        (value >> 1) ^ (0 &- (value & 1))
    }
}
