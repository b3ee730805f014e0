// Codec 4: the batch transform's content (index, record ids, verbatim payloads, per-group columns
// as residuals of a per-column predictor continuing from the context) written with an adaptive binary range
// coder instead of zstd. zstd spends most of a small batch on its own tables and codes bytes,
// not values; here every model starts primed on the context entries both sides already hold, so
// a 20-entry batch costs little more per value than a long stream.
import DAQCore
import Journal

/// Codec 4, "context-modelled" (`docs/uplink.md`): a body coded against its context's entries.
///
/// Layout: `u8 format = 3 | u32 entry count | range-coded stream`. The stream holds, per entry in
/// order, its shape (the group predicted from the three entries before it, or else: grouped or
/// not, then a slot number or a kind and length; a new group's id and length) and a verbatim
/// payload's bytes; then, per group in order of first appearance, per 16-bit word column its
/// predictor (`ColumnState.predictors`) and one zigzag residual per record, then its odd byte column (first
/// differences). Decoding needs the same `BatchTransform.Context`; a different one yields a body
/// the batch header's entries checksum rejects.
public enum ContextCoder {
    public static let formatVersion: UInt8 = 3
    /// How many entries before a batch its sender codes it against: enough for every group to
    /// have its recent rows in the context (the models are primed on them), few enough to cost
    /// little to keep and to prime on.
    public static let contextEntries = 256

    /// Codes `body`, whose framed entries occupy `entries` (consecutive, valid framing), against
    /// `context` (the entries just before them).
    public static func encode(body: [UInt8], entries: [Range<Int>], context: BatchTransform.Context) -> [UInt8] {
        body.withUnsafeBytes { encode(body: $0, entries: entries, context: context) }
    }

    /// Codes `body` (see `encode(body:entries:context:)`).
    public static func encode(body: UnsafeRawBufferPointer, entries: [Range<Int>], context: BatchTransform.Context) -> [UInt8] {
        var prefix = [formatVersion]
        withUnsafeBytes(of: UInt32(entries.count).littleEndian) { prefix += $0 }
        var encoder = RangeEncoder(prefix: prefix, capacity: body.count / 4 + 16)
        var models = CoderModels()
        var predictor = EntryPredictor(context: context)
        var groups = GroupTable()
        for range in entries {
            let shape = BatchTransform.EntryShape(body: body, entry: range)
            _ = code(&encoder, shape: shape, models: &models, predictor: &predictor)
            let payload = range.lowerBound + JournalFraming.headerLength
            if shape.isGrouped {
                groups.add(id: shape.id, length: shape.length, payloadStart: payload)
            } else {
                for byte in body[payload..<(payload + shape.length)] { _ = models.byte(&encoder, byte) }
            }
        }
        for group in groups.groups {
            let rows = context.rows(key: GroupTable.key(id: group.id, length: group.length))
            for column in Column.all(length: group.length) {
                var cost = column.contextCost(rows)
                let suggested = cost.count >= 3 ? cost.best : 1
                for row in group.payloadStarts { cost.add(column.value(body, row: row)) }
                let order = column.isWord ? models.order(&encoder, cost.best, suggested: suggested) : 1
                var state = column.primed(&models, rows: rows, order: order)
                for row in group.payloadStarts {
                    let coded = state.coded(column.value(body, row: row), order: order)
                    _ = models.value(&encoder, UInt32(BatchTransform.zigzag(coded)), &state)
                }
            }
        }
        return encoder.finish()
    }

    /// Rebuilds the exact framed body from `coded` (entry `i` gets sequence number
    /// `firstSequence + i`). The entry count, every length and the body (at most `maxBodyLength`
    /// bytes, the batch header's) are checked before anything is allocated for them, and reading
    /// past the stream's end is an error; anything inconsistent throws a malformed-input error
    /// naming the field.
    public static func decode(_ coded: UnsafeRawBufferPointer, firstSequence: UInt64, maxBodyLength: Int,
                              context: BatchTransform.Context, source: String) throws(DAQError) -> [UInt8] {
        func bad(_ text: String, _ field: String) -> DAQError {
            DAQError(.malformedInput, "context-modelled body: \(text)", at: InputLocation(file: source, field: field))
        }
        let count = try BatchTransform.entryCount(coded, version: formatVersion, fieldPrefix: "coder", firstSequence: firstSequence,
                                                  maxBodyLength: maxBodyLength, bad: bad)
        guard var decoder = RangeDecoder(coded, offset: BatchTransform.prefixLength) else { throw bad("the coded stream does not start as one", "coded stream") }
        var models = CoderModels()
        var predictor = EntryPredictor(context: context)
        var shapes: [BatchTransform.EntryShape] = []
        shapes.reserveCapacity(count)
        var verbatim: [UInt8] = []
        var bodyLength = 0
        let unknown = BatchTransform.EntryShape(kind: 0, length: 0, id: 0)
        for index in 0..<count {
            guard let shape = code(&decoder, shape: unknown, models: &models, predictor: &predictor), !models.malformed else {
                throw bad("entry \(index) names no group, kind or length an encoder writes", "entry index")
            }
            bodyLength += JournalFraming.framedLength(payloadLength: shape.length)
            guard bodyLength <= maxBodyLength else {
                throw bad("entries up to \(index) need more than the stated \(maxBodyLength) bytes", "payload length")
            }
            if !shape.isGrouped {
                for _ in 0..<shape.length { verbatim.append(models.byte(&decoder, 0)) }
            }
            guard !decoder.overran else { throw bad("the stream ends inside entry \(index)", "coded stream") }
            shapes.append(shape)
        }
        var body = [UInt8](repeating: 0, count: bodyLength)
        var groups = GroupTable()
        let failure: DAQError? = body.withUnsafeMutableBytes { body in
            var entryStart = 0, verbatimAt = 0
            for (index, shape) in shapes.enumerated() {
                let payload = entryStart + JournalFraming.headerLength
                JournalFraming.writeHeader(kind: JournalEntryKind(rawValue: shape.kind), sequence: firstSequence + UInt64(index),
                                           payloadLength: shape.length,
                                           into: UnsafeMutableRawBufferPointer(rebasing: body[entryStart...]))
                if shape.isGrouped {
                    body.storeBytes(of: shape.id.littleEndian, toByteOffset: payload, as: UInt16.self)
                    groups.add(id: shape.id, length: shape.length, payloadStart: payload)
                } else {
                    UnsafeMutableRawBufferPointer(rebasing: body[payload..<(payload + shape.length)])
                        .copyBytes(from: verbatim[verbatimAt..<(verbatimAt + shape.length)])
                    verbatimAt += shape.length
                }
                entryStart += JournalFraming.framedLength(payloadLength: shape.length)
            }
            for group in groups.groups {
                let rows = context.rows(key: GroupTable.key(id: group.id, length: group.length))
                for column in Column.all(length: group.length) {
                    let cost = column.contextCost(rows)
                    let suggested = cost.count >= 3 ? cost.best : 1
                    let order = column.isWord ? models.order(&decoder, 0, suggested: suggested) : 1
                    var state = column.primed(&models, rows: rows, order: order)
                    for row in group.payloadStarts {
                        let coded = BatchTransform.unzigzag(UInt16(truncatingIfNeeded: models.value(&decoder, 0, &state)))
                        column.store(state.value(coded, order: order), body, row: row)
                    }
                    guard !models.malformed else { return bad("a value of group \(group.id) is out of range", "column value") }
                    guard !decoder.overran else { return bad("the stream ends inside group \(group.id)", "coded stream") }
                }
            }
            BatchTransform.sealEntries(body)
            return nil
        }
        if let failure { throw failure }
        guard decoder.isExhaustedExactly else { throw bad("the stream does not end where the body does", "coded stream") }
        return body
    }

    /// Codes one entry's shape. The encoder passes the entry's; the decoder passes any and gets
    /// the entry's, or nil when the stream names a group that does not exist or a length out of range.
    static func code<C: BitCoding>(_ coder: inout C, shape: BatchTransform.EntryShape, models: inout CoderModels,
                                   predictor: inout EntryPredictor) -> BatchTransform.EntryShape? {
        let slot = shape.isGrouped ? predictor.slot(of: shape) ?? predictor.slotCount : -1
        var decoded: BatchTransform.EntryShape?
        if let predicted = predictor.predicted {
            let miss = models.miss(&coder, slot == predicted ? 0 : 1, history: predictor.outcomes)
            predictor.outcomes = (predictor.outcomes << 1 | Int(miss)) & 3
            if miss == 0 { decoded = predictor.shapes[predicted] }
        }
        if decoded == nil {
            if models.grouped(&coder, shape.isGrouped) {
                guard let coded = models.slot(&coder, slot), coded <= predictor.slotCount else { return nil }
                if coded < predictor.slotCount {
                    decoded = predictor.shapes[coded]
                } else {
                    let id = UInt16(coder.direct(UInt32(shape.id), count: 16))
                    guard let length = models.length(&coder, shape.length), length >= 2,
                          length <= JournalFraming.maxPayloadLength else { return nil }
                    decoded = BatchTransform.EntryShape(kind: JournalEntryKind.record.rawValue, length: length, id: id)
                }
            } else {
                let kind = models.kind(&coder, shape.kind)
                guard let length = models.length(&coder, shape.length), length <= JournalFraming.maxPayloadLength else { return nil }
                decoded = BatchTransform.EntryShape(kind: kind, length: length, id: 0)
                // An entry the transform would group is never sent as a verbatim one.
                guard !decoded!.isGrouped else { return nil }
            }
        }
        guard let decoded else { return nil }
        predictor.observe(decoded)
        return decoded
    }
}

/// One column of a group: a 16-bit word or the odd last byte of its payloads.
struct Column {
    /// Byte offset in the payload (the record id takes bytes 0 and 1).
    var offset: Int
    var isWord: Bool

    /// The word columns of a group with payloads of `length` bytes, then its odd byte column
    /// (made one at a time: a hostile stream's group may be megabytes long).
    static func all(length: Int) -> some Sequence<Column> {
        let words = (length - 2) / 2, count = length - 2 - words
        return (0..<count).lazy.map { index in
            index < words ? Column(offset: 2 + 2 * index, isWord: true) : Column(offset: length - 1, isWord: false)
        }
    }

    @inline(__always)
    func value(_ body: UnsafeRawBufferPointer, row: Int) -> UInt16 {
        isWord ? body.loadLE(UInt16.self, at: row + offset) : UInt16(body[row + offset])
    }

    @inline(__always)
    func store(_ value: UInt16, _ body: UnsafeMutableRawBufferPointer, row: Int) {
        if isWord {
            body.storeBytes(of: value.littleEndian, toByteOffset: row + offset, as: UInt16.self)
        } else {
            body[row + offset] = UInt8(truncatingIfNeeded: value)
        }
    }

    /// This column's value in context row `row`.
    func value(_ rows: BatchTransform.RecentRows, row: Int) -> UInt16 {
        isWord ? rows.word((offset - 2) / 2, row: row) : UInt16(rows.bytes[row * rows.rowLength + offset - 2])
    }

    /// What the column's context rows cost with each predictor (from the third of them on).
    func contextCost(_ rows: BatchTransform.RecentRows?) -> PredictorCost {
        var cost = PredictorCost()
        for row in 0..<(rows?.count ?? 0) { cost.add(value(rows!, row: row)) }
        return cost
    }

    /// Runs the models over the column's context rows with predictor `order` (without coding anything) and
    /// returns the column's state after them: both sides start the batch's values from there.
    func primed(_ models: inout CoderModels, rows: BatchTransform.RecentRows?, order: UInt8) -> ColumnState {
        var state = ColumnState()
        guard let rows else { return state }
        var primer = ModelPrimer()
        for row in 0..<rows.count {
            // The first two rows have too few predecessors in the context: their residuals mean nothing.
            let learns = state.seen == 2
            let coded = state.coded(value(rows, row: row), order: order)
            if learns { _ = models.value(&primer, UInt32(BatchTransform.zigzag(coded)), &state) }
        }
        return state
    }
}
