// Format 2 of the batch transform (codec 3): a batch's columns continue from the records just
// before it. Small, low-latency batches otherwise pay for restarting every delta from zero (their
// first rows cost as much as raw values) — with ~20 entries per batch that is most of the batch.
// The receiver can always rebuild the same context: it commits strictly in order, so when it
// decodes a batch it already holds every entry before it. Format 2 also stores the coded columns
// as zigzag byte planes grouped by how large their values are, each group compressed on its own.
import Journal

extension BatchTransform {
    /// What a batch's columns continue from: for each group (record id + payload length), its
    /// last records among the context entries, and (for codec 4) the shape of every context entry.
    /// Built the same way from the same entries on both sides; a group absent from the context
    /// starts from zero as in format 1.
    public struct Context: Sendable, Equatable {
        /// Group key (payload length << 16 | record id) → its last records (`recentRowLimit` at
        /// most), oldest first. Codec 3 continues from the last two; codec 4 primes its models on all.
        private(set) var recentRows: [UInt64: RecentRows] = [:]
        /// Every context entry's kind, payload length and record id, in order: codec 4's index
        /// model learns how the groups interleave from them.
        private(set) var shapes: [EntryShape] = []

        /// A context with no records (every group starts from zero).
        public init() {}

        /// The context of the framed entries `entries` of `body` (consecutive, in order).
        public init(body: UnsafeRawBufferPointer, entries: [Range<Int>]) {
            shapes.reserveCapacity(entries.count)
            for range in entries { shapes.append(EntryShape(body: body, entry: range)) }
            // Newest first, so each group keeps its last rows; then stored oldest first.
            var picked: [UInt64: [Int]] = [:]
            for (index, shape) in zip(shapes.indices, shapes).reversed() where shape.isGrouped {
                guard (picked[shape.key]?.count ?? 0) < Context.recentRowLimit else { continue }
                picked[shape.key, default: []].append(entries[index].lowerBound + JournalFraming.headerLength + 2)
            }
            for (key, starts) in picked {
                let rowLength = Int(key >> 16) - 2
                var bytes: [UInt8] = []
                bytes.reserveCapacity(rowLength * starts.count)
                for start in starts.reversed() { bytes += body[start..<(start + rowLength)] }
                recentRows[key] = RecentRows(count: starts.count, bytes: bytes)
            }
        }

        /// Most records kept per group: enough to prime codec 4's models, bounded in memory and time.
        static let recentRowLimit = 64

        /// The rows of group `key` (payloads after the id, back to back), if the context holds any.
        func rows(key: UInt64) -> RecentRows? { recentRows[key] }

        /// The starting state of a group's columns: each word's last value and last first
        /// difference, and the last odd byte.
        func seed(id: UInt16, length: Int) -> Seed {
            let words = (length - 2) / 2
            guard let rows = recentRows[GroupTable.key(id: id, length: length)], rows.count > 0 else {
                return Seed(previous: Array(repeating: 0, count: words), previousDelta: Array(repeating: 0, count: words),
                            previousByte: 0)
            }
            let previous = (0..<words).map { rows.word($0, row: rows.count - 1) }
            let before = rows.count >= 2 ? (0..<words).map { rows.word($0, row: rows.count - 2) } : Array(repeating: 0, count: words)
            return Seed(previous: previous, previousDelta: zip(previous, before).map { $0 &- $1 },
                        previousByte: (length - 2) % 2 == 1 ? rows.bytes[rows.bytes.count - 1] : 0)
        }
    }

    /// A group's last records in a context: `count` payloads after the record id, oldest first.
    struct RecentRows: Sendable, Equatable {
        var count: Int
        var bytes: [UInt8]

        var rowLength: Int { count == 0 ? 0 : bytes.count / count }

        /// Word `index` (16-bit little-endian) of row `row`.
        func word(_ index: Int, row: Int) -> UInt16 {
            let at = row * rowLength + 2 * index
            return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
        }
    }

    /// What the index says about one entry: its kind, payload length and (grouped records) id.
    struct EntryShape: Sendable, Equatable {
        var kind: UInt8
        var length: Int
        var id: UInt16

        init(kind: UInt8, length: Int, id: UInt16) {
            self.kind = kind
            self.length = length
            self.id = id
        }

        init(body: UnsafeRawBufferPointer, entry range: Range<Int>) {
            kind = body[range.lowerBound + 4]
            length = range.count - JournalFraming.overhead
            id = BatchTransform.isGrouped(kind: kind, payloadLength: length)
                ? body.loadLE(UInt16.self, at: range.lowerBound + JournalFraming.headerLength) : 0
        }

        var isGrouped: Bool { BatchTransform.isGrouped(kind: kind, payloadLength: length) }
        /// The group of a grouped record (the `GroupTable` key).
        var key: UInt64 { GroupTable.key(id: id, length: length) }
    }

    struct Seed {
        var previous: [UInt16]
        var previousDelta: [UInt16]
        var previousByte: UInt8
    }

    /// Columns whose mean coded magnitude is below these bounds go to class 0, then 1; the rest
    /// (noisy signals) to class 2. Each class's planes are a section of their own, compressed in
    /// separate zstd blocks so that each gets entropy tables fitted to its own statistics.
    static let classBounds: (UInt64, UInt64) = (4, 40)
    static let classCount = 3

    /// One word column of a group: which group and word, its difference order and its class.
    struct Column {
        var group: Int
        var word: Int
        var order: UInt8
        var columnClass: Int
    }

    /// Format 2's matrices. Per group, in order of first appearance: one byte per word column
    /// (`order | class << 2`), then the odd byte column as first differences. Then, per class
    /// 0…2, the low bytes of every coded word of that class's columns (group after group, column
    /// after column), then their high bytes. Coded words are zigzag-mapped (0, −1, 1, −2 … →
    /// 0, 1, 2, 3 …) so small differences of either sign leave a high-byte plane of zeros.
    /// Returns where each section ends (the caller compresses each in blocks of its own).
    static func encodeClassPlanes(body: UnsafeRawBufferPointer, groups: [GroupTable.Group], context: Context,
                                  into writer: inout ByteWriter) -> [Int] {
        var columns: [Column] = []
        var seeds: [Seed] = []
        var classRows = Array(repeating: 0, count: classCount)
        for (index, group) in groups.enumerated() {
            let seed = context.seed(id: group.id, length: group.length)
            seeds.append(seed)
            let rows = group.payloadStarts
            for word in 0..<group.wordColumns {
                let (order, cost) = chooseOrderAndCost(body: body, rows: rows, offset: 2 + 2 * word,
                                                      previous: seed.previous[word], previousDelta: seed.previousDelta[word])
                let mean = cost / UInt64(max(1, rows.count))
                let columnClass = mean < classBounds.0 ? 0 : mean < classBounds.1 ? 1 : 2
                columns.append(Column(group: index, word: word, order: order, columnClass: columnClass))
                classRows[columnClass] += rows.count
                writer.put(order | UInt8(columnClass) << 2)
            }
            if (group.length - 2) % 2 == 1 {
                var previous = seed.previousByte
                for row in rows {
                    let value = body[row + group.length - 1]
                    writer.put(value &- previous)
                    previous = value
                }
            }
        }
        var sectionEnds = [writer.offset]
        var cursor: [(low: Int, high: Int)] = []
        var start = writer.offset
        for rows in classRows {
            cursor.append((start, start + rows))
            start += 2 * rows
            if rows > 0 { sectionEnds += [start - rows, start] }
        }
        for column in columns {
            let group = groups[column.group], seed = seeds[column.group]
            let offset = 2 + 2 * column.word
            var previous = seed.previous[column.word], previousDelta = seed.previousDelta[column.word]
            var (low, high) = cursor[column.columnClass]
            for row in group.payloadStarts {
                let value = body.loadLE(UInt16.self, at: row + offset)
                let delta = value &- previous
                let coded = zigzag(column.order == 0 ? value : column.order == 1 ? delta : delta &- previousDelta)
                writer.buffer[low] = UInt8(truncatingIfNeeded: coded)
                writer.buffer[high] = UInt8(truncatingIfNeeded: coded >> 8)
                low += 1
                high += 1
                previous = value
                previousDelta = delta
            }
            cursor[column.columnClass] = (low, high)
        }
        writer.skip(start - writer.offset)
        return sectionEnds
    }

    /// Undoes `encodeClassPlanes`; the caller has checked that the reader holds exactly the bytes
    /// the matrices need. Returns an order byte whose order or class is out of range (the body
    /// must then be dropped).
    static func decodeClassPlanes(from reader: inout ByteReader, groups: [GroupTable.Group], context: Context,
                                  into body: UnsafeMutableRawBufferPointer) -> UInt8? {
        var columns: [Column] = []
        var seeds: [Seed] = []
        var classRows = Array(repeating: 0, count: classCount)
        for (index, group) in groups.enumerated() {
            let seed = context.seed(id: group.id, length: group.length)
            seeds.append(seed)
            for word in 0..<group.wordColumns {
                let byte: UInt8 = reader.take()
                guard byte & 3 <= 2, Int(byte >> 2) < classCount else { return byte }
                columns.append(Column(group: index, word: word, order: byte & 3, columnClass: Int(byte >> 2)))
                classRows[Int(byte >> 2)] += group.payloadStarts.count
            }
            if (group.length - 2) % 2 == 1 {
                var value = seed.previousByte
                for row in group.payloadStarts {
                    let difference: UInt8 = reader.take()
                    value &+= difference
                    body[row + group.length - 1] = value
                }
            }
        }
        var planes: [(low: UnsafeRawBufferPointer, high: UnsafeRawBufferPointer)] = []
        for rows in classRows { planes.append((reader.take(rows), reader.take(rows))) }
        var cursor = Array(repeating: 0, count: classCount)
        for column in columns {
            let group = groups[column.group], seed = seeds[column.group]
            let offset = 2 + 2 * column.word
            let (low, high) = planes[column.columnClass]
            var index = cursor[column.columnClass]
            var value = seed.previous[column.word], delta = seed.previousDelta[column.word]
            for row in group.payloadStarts {
                let coded = unzigzag(UInt16(low[index]) | UInt16(high[index]) << 8)
                index += 1
                switch column.order {
                case 0: value = coded
                case 1: value &+= coded
                default:
                    delta &+= coded
                    value &+= delta
                }
                body.storeBytes(of: value.littleEndian, toByteOffset: row + offset, as: UInt16.self)
            }
            cursor[column.columnClass] = index
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
