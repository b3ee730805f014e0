// Codec 4: the range-coded body against its context. Exact round trips (random bodies, edge
// shapes, the reference journal), smaller than codec 3 on the steady state's small batches,
// hostile or truncated streams rejected by field without large allocations (a wrong context is
// caught: ContextCodecTests.aMismatchedContextIsAlwaysDetected runs for codecs 3 and 4).
import DAQCore
import Journal
import Testing
@testable import Delivery

@Suite struct ContextCoderTests {
    static func roundTrip(_ body: [UInt8], first: UInt64, context: BatchTransform.Context,
                          comment: Comment? = nil) throws -> [UInt8] {
        let coded = ContextCoder.encode(body: body, entries: BatchTransformTests.ranges(body), context: context)
        let back = try coded.withUnsafeBytes {
            try ContextCoder.decode($0, firstSequence: first, maxBodyLength: body.count, context: context, source: "t")
        }
        #expect(back == body, comment)
        if !body.isEmpty {
            #expect(throws: DAQError.self, "a cap one byte short is refused") {
                try coded.withUnsafeBytes {
                    _ = try ContextCoder.decode($0, firstSequence: first, maxBodyLength: body.count - 1, context: context, source: "t")
                }
            }
        }
        return coded
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func randomBodiesRoundTripWithAndWithoutContext(seed: UInt64) throws {
        for trial in 0..<40 as Range<UInt64> {
            var random = Xorshift(seed: seed * 1000 + trial)
            let count = 1 + Int(random.next() % 120)
            let body = BatchTransformTests.randomBody(entries: count, first: 1, random: &random)
            let cut = Int(random.next() % UInt64(count))
            let (before, batch) = ContextCodecTests.split(body, at: cut)
            let first = 1 + UInt64(cut)
            _ = try Self.roundTrip(batch, first: first, context: ContextCodecTests.context(before), comment: "seed \(seed) trial \(trial)")
            _ = try Self.roundTrip(batch, first: first, context: BatchTransform.Context(), comment: "no context, seed \(seed)")
        }
    }

    @Test func edgeShapesRoundTrip() throws {
        var random = Xorshift(seed: 5)
        let contextBody = BatchTransformTests.randomBody(entries: 50, first: 1, random: &random)
        for (index, body) in BatchTransformTests.edgeShapeBodies(first: 51).enumerated() {
            _ = try Self.roundTrip(body, first: 51, context: ContextCodecTests.context(contextBody), comment: "shape \(index)")
            _ = try Self.roundTrip(body, first: 51, context: BatchTransform.Context(), comment: "shape \(index), no context")
        }
    }

    /// The reference workload in the steady state's small batches and in the drain's 512-entry
    /// ones, each against the batch before it: byte-identical, and at 20 entries well below codec 3
    /// (zstd CLI at level 12 stands in for libzstd). Prints the sizes.
    @Test func referenceJournalRoundTripsAndBeatsCodec3() throws {
        let entries = try BatchTransformTests.referenceJournalEntries()
        for batchSize in [20, 512] {
            var plain = 0, codec3 = 0, codec4 = 0
            var previous: [UInt8]?
            var first = 0
            while first < entries.count {
                let batch = entries[first..<min(first + batchSize, entries.count)].flatMap { $0 }
                let context = previous.map { ContextCodecTests.context($0) } ?? BatchTransform.Context()
                codec4 += try Self.roundTrip(batch, first: UInt64(first + 1), context: context, comment: "batch from \(first + 1)").count
                if batchSize == 20 {
                    codec3 += try BatchTransformTests.zstdSize(BatchTransform.encode(body: batch, entries: BatchTransformTests.ranges(batch),
                                                                                     context: context), level: 12)
                }
                plain += batch.count
                previous = batch
                first += batchSize
            }
            print("reference journal in batches of \(batchSize): plain \(plain) B, codec 4 \(codec4) B"
                  + (batchSize == 20 ? ", codec 3 (zstd -12 CLI, one frame) \(codec3) B" : ""))
            if batchSize == 20 { #expect(Double(codec4) < 0.85 * Double(codec3), "codec 4 \(codec4) B, codec 3 \(codec3) B") }
        }
    }

    // MARK: hostile input

    static func decodeError(_ bytes: [UInt8], maxBody: Int, context: BatchTransform.Context) -> DAQError? {
        do throws(DAQError) {
            _ = try bytes.withUnsafeBytes { raw in
                Result { () throws(DAQError) in
                    try ContextCoder.decode(raw, firstSequence: 1, maxBodyLength: maxBody, context: context, source: "t")
                }
            }.get()
            return nil
        } catch {
            return error
        }
    }

    @Test func everyTruncationIsAnErrorNamingTheStream() throws {
        var random = Xorshift(seed: 77)
        let body = BatchTransformTests.randomBody(entries: 60, first: 1, random: &random)
        let (before, batch) = ContextCodecTests.split(body, at: 20)
        let context = ContextCodecTests.context(before)
        let coded = ContextCoder.encode(body: batch, entries: BatchTransformTests.ranges(batch), context: context)
        for length in 0..<coded.count {
            let error = Self.decodeError(Array(coded[0..<length]), maxBody: batch.count, context: context)
            #expect(error?.code == .malformedInput, "truncated to \(length)")
        }
        // Trailing bytes are refused too: the stream must end where the body does.
        #expect(Self.decodeError(coded + [0], maxBody: batch.count, context: context)?.location?.field == "coded stream")
    }

    /// Random corruption either fails the decoder's checks or rebuilds a body that the header's
    /// entries checksum rejects; random garbage with a generous cap never allocates beyond it.
    @Test func corruptAndRandomStreamsAreCaught() throws {
        var random = Xorshift(seed: 99)
        let body = BatchTransformTests.randomBody(entries: 120, first: 1, random: &random)
        let (before, batch) = ContextCodecTests.split(body, at: 40)
        let context = ContextCodecTests.context(before)
        let ranges = BatchTransformTests.ranges(batch)
        let coded = ContextCoder.encode(body: batch, entries: ranges, context: context)
        let header = UplinkBatch(deviceID: "ecu", epoch: 1, first: 41, last: 40 + UInt64(ranges.count), segmentStarts: [],
                                 codec: .contextModelled, bodyLength: UInt32(batch.count),
                                 bodyChecksum: UplinkBatch.entriesChecksum(body: batch, entries: ranges),
                                 context: .init(first: 1, checksum: 0))
        var outcomes = (decoder: 0, checksum: 0, same: 0)
        for trial in 0..<3000 {
            var bad = coded
            for _ in 0...(random.next() % 4) {
                let index = Int(random.next() % UInt64(bad.count))
                bad[index] ^= UInt8(1 + random.next() % 255)
            }
            do {
                let rebuilt = try bad.withUnsafeBytes {
                    try ContextCoder.decode($0, firstSequence: 41, maxBodyLength: batch.count, context: context, source: "t")
                }
                #expect(rebuilt.count <= batch.count)
                // The coder's last bytes carry more precision than the last bits need: a change
                // there can decode to the very same body, which is then the right one.
                if rebuilt == batch {
                    outcomes.same += 1
                    continue
                }
                #expect(throws: DAQError.self, "trial \(trial) was accepted") {
                    try rebuilt.withUnsafeBytes { _ = try header.validate(body: $0, entriesSealed: true, source: "t") }
                }
                outcomes.checksum += 1
            } catch {
                outcomes.decoder += 1
            }
        }
        print("codec 4 corruption: \(outcomes.decoder) rejected by the decoder, \(outcomes.checksum) by the entries checksum, "
              + "\(outcomes.same) decoded to the same body")
        #expect(outcomes.decoder > 1000)
        // Garbage after a valid prefix, with a 1 MiB cap: an error or a body within the cap.
        for trial in 0..<500 {
            var garbage: [UInt8] = [ContextCoder.formatVersion]
            withUnsafeBytes(of: UInt32(random.next() % 60_000).littleEndian) { garbage += $0 }
            garbage += [0] + (0..<Int(random.next() % 3000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            do {
                let rebuilt = try garbage.withUnsafeBytes {
                    try ContextCoder.decode($0, firstSequence: 1, maxBodyLength: 1 << 20, context: context, source: "t")
                }
                #expect(rebuilt.count <= 1 << 20, "trial \(trial)")
            } catch let error as DAQError {
                #expect(error.code == .malformedInput)
            }
        }
    }

    @Test func absurdPrefixFieldsAreRejectedByName() {
        let context = BatchTransform.Context()
        #expect(Self.decodeError([], maxBody: 100, context: context)?.location?.field == "coder prefix")
        #expect(Self.decodeError([2, 0, 0, 0, 0, 0], maxBody: 100, context: context)?.location?.field == "coder version")
        #expect(Self.decodeError([3, 0xFF, 0xFF, 0xFF, 0x7F, 0], maxBody: 100, context: context)?.location?.field == "entry count")
        #expect(Self.decodeError([3, 0, 0, 0, 0, 7, 0, 0, 0, 0], maxBody: 100, context: context)?.location?.field == "coded stream")
    }

    @Test func codec4HeaderCarriesItsContextAndNeedsOne() throws {
        let batch = UplinkBatch(deviceID: "ecu-07", epoch: 42, first: 10_000, last: 10_020, segmentStarts: [], codec: .contextModelled,
                                bodyLength: 999, bodyChecksum: 0xABCD, context: .init(first: 9_980, checksum: 0x1234_5678))
        let bytes = batch.encodedHeader()
        let (decoded, length) = try bytes.withUnsafeBytes { try UplinkBatch.decodeHeader($0, source: "t") }
        #expect(decoded == batch)
        #expect(length == bytes.count)
        // Codec 2 bytes relabelled as codec 4 (no context fields): the lengths do not add up.
        var forged = UplinkBatch(deviceID: "ecu-07", epoch: 42, first: 10_000, last: 10_020, segmentStarts: [], codec: .transposedZstd,
                                 bodyLength: 999, bodyChecksum: 0xABCD).encodedHeader()
        forged[5] = UplinkBatch.Codec.contextModelled.rawValue
        ContextCodecTests.reseal(&forged)
        #expect(throws: DAQError.self) { try forged.withUnsafeBytes { _ = try UplinkBatch.decodeHeader($0, source: "t") } }
    }
}
