// Codec 3: the transform continuing from the entries before a batch (its context). Exact round
// trips, smaller output than codec 2 on the reference workload's small batches, a wrong or
// mismatched context always detected, and malformed codec-3 headers rejected by field.
import DAQCore
import Journal
import Testing
@testable import Delivery

@Suite struct ContextCodecTests {
    /// A body split at `cut`: the first part is the context of the second.
    static func split(_ body: [UInt8], at cut: Int) -> (context: [UInt8], batch: [UInt8]) {
        let ranges = BatchTransformTests.ranges(body)
        let boundary = cut < ranges.count ? ranges[cut].lowerBound : body.count
        return (Array(body[..<boundary]), Array(body[boundary...]))
    }

    static func context(_ bytes: [UInt8]) -> BatchTransform.Context {
        bytes.withUnsafeBytes { BatchTransform.Context(body: $0, entries: BatchTransformTests.ranges(bytes)) }
    }

    @Test func randomBodiesRoundTripAgainstTheirContext() throws {
        for seed in 1...200 as ClosedRange<UInt64> {
            var random = Xorshift(seed: seed)
            let count = 2 + Int(random.next() % 80)
            let body = BatchTransformTests.randomBody(entries: count, first: seed, random: &random)
            let cut = 1 + Int(random.next() % UInt64(count - 1))
            let (before, batch) = Self.split(body, at: cut)
            let context = Self.context(before)
            let first = seed + UInt64(cut)
            let transformed = BatchTransform.encode(body: batch, entries: BatchTransformTests.ranges(batch), context: context)
            #expect(transformed.count <= BatchTransform.maxTransformedLength(bodyLength: batch.count))
            #expect(transformed.first == BatchTransform.contextFormatVersion)
            let back = try transformed.withUnsafeBytes {
                try BatchTransform.decode($0, firstSequence: first, maxBodyLength: batch.count, context: context, source: "t")
            }
            #expect(back == batch, "seed \(seed): round trip differs")
        }
    }

    @Test func emptyContextRoundTripsAndFormatsAreNotInterchangeable() throws {
        var random = Xorshift(seed: 7)
        let body = BatchTransformTests.randomBody(entries: 40, first: 1, random: &random)
        let ranges = BatchTransformTests.ranges(body)
        let transformed = BatchTransform.encode(body: body, entries: ranges, context: BatchTransform.Context())
        let back = try transformed.withUnsafeBytes {
            try BatchTransform.decode($0, firstSequence: 1, maxBodyLength: body.count, context: BatchTransform.Context(), source: "t")
        }
        #expect(back == body)
        // Format 2 read as format 1 (codec 2), and format 1 read with a context, are refused by version.
        #expect(throws: DAQError.self) {
            try transformed.withUnsafeBytes { _ = try BatchTransform.decode($0, firstSequence: 1, maxBodyLength: body.count, source: "t") }
        }
        let plain = BatchTransform.encode(body: body, entries: ranges)
        #expect(throws: DAQError.self) {
            try plain.withUnsafeBytes {
                _ = try BatchTransform.decode($0, firstSequence: 1, maxBodyLength: body.count, context: BatchTransform.Context(), source: "t")
            }
        }
    }

    /// Decoding against other context entries than the encoder's never yields the batch: the
    /// context checksum differs, and the rebuilt body fails the header's body checksum. For both
    /// context codecs: the transform (codec 3) and the context-modelled coder (codec 4).
    @Test(arguments: [UplinkBatch.Codec.contextTransposedZstd, .contextModelled])
    func aMismatchedContextIsAlwaysDetected(codec: UplinkBatch.Codec) throws {
        func encode(_ batch: [UInt8], _ context: BatchTransform.Context) -> [UInt8] {
            let ranges = BatchTransformTests.ranges(batch)
            return codec == .contextModelled ? ContextCoder.encode(body: batch, entries: ranges, context: context)
                : BatchTransform.encode(body: batch, entries: ranges, context: context)
        }
        func decode(_ coded: [UInt8], maxBody: Int, _ context: BatchTransform.Context) throws -> [UInt8] {
            try coded.withUnsafeBytes {
                codec == .contextModelled
                    ? try ContextCoder.decode($0, firstSequence: 31, maxBodyLength: maxBody, context: context, source: "t")
                    : try BatchTransform.decode($0, firstSequence: 31, maxBodyLength: maxBody, context: context, source: "t")
            }
        }
        var detectedByChecksum = 0, detectedByBody = 0
        for seed in 1...100 as ClosedRange<UInt64> {
            var random = Xorshift(seed: seed)
            let body = BatchTransformTests.randomBody(entries: 60, first: 1, random: &random)
            let (before, batch) = Self.split(body, at: 30)
            var other = Xorshift(seed: seed + 1000)
            let (otherBefore, _) = Self.split(BatchTransformTests.randomBody(entries: 60, first: 1, random: &other), at: 30)
            let checksum = { (bytes: [UInt8]) in
                bytes.withUnsafeBytes { UplinkBatch.ContextReference.checksum(body: $0, entries: BatchTransformTests.ranges(bytes)) }
            }
            if checksum(before) != checksum(otherBefore) { detectedByChecksum += 1 }
            let ranges = BatchTransformTests.ranges(batch)
            let coded = encode(batch, Self.context(before))
            let header = UplinkBatch(deviceID: "d", epoch: 1, first: 31, last: 30 + UInt64(ranges.count), segmentStarts: [],
                                     codec: codec, bodyLength: UInt32(batch.count),
                                     bodyChecksum: UplinkBatch.entriesChecksum(body: batch, entries: ranges), context: .init(first: 1, checksum: checksum(before)))
            do {
                let wrong = try decode(coded, maxBody: batch.count, Self.context(otherBefore))
                #expect(wrong != batch)
                _ = try wrong.withUnsafeBytes { try header.validate(body: $0, entriesSealed: true, source: "t") }
                Issue.record("seed \(seed): a body decoded against the wrong context passed validation")
            } catch {
                detectedByBody += 1
            }
        }
        #expect(detectedByChecksum == 100)
        #expect(detectedByBody == 100)
    }

    /// Random corruption of a format-2 stream either fails the transform's checks or rebuilds a
    /// body that the header's entries checksum rejects (the collector walks such a body without
    /// re-checking entry CRCs it made itself: `entriesSealed`).
    @Test func randomCorruptionOfFormat2IsAlwaysCaught() throws {
        var random = Xorshift(seed: 99)
        let body = BatchTransformTests.randomBody(entries: 90, first: 1, random: &random)
        let (before, batch) = Self.split(body, at: 30)
        let context = Self.context(before)
        let ranges = BatchTransformTests.ranges(batch)
        let transformed = BatchTransform.encode(body: batch, entries: ranges, context: context)
        let header = UplinkBatch(deviceID: "ecu", epoch: 1, first: 31, last: 30 + UInt64(ranges.count), segmentStarts: [],
                                 codec: .contextTransposedZstd, bodyLength: UInt32(batch.count),
                                 bodyChecksum: UplinkBatch.entriesChecksum(body: batch, entries: ranges),
                                 context: .init(first: 1, checksum: 0))
        var outcomes = (transform: 0, checksum: 0)
        for trial in 0..<3000 {
            var bad = transformed
            for _ in 0...(random.next() % 4) {
                let index = Int(random.next() % UInt64(bad.count))
                bad[index] ^= UInt8(1 + random.next() % 255)
            }
            do {
                let rebuilt = try bad.withUnsafeBytes {
                    try BatchTransform.decode($0, firstSequence: 31, maxBodyLength: batch.count, context: context, source: "t")
                }
                #expect(throws: DAQError.self, "trial \(trial) was accepted") {
                    try rebuilt.withUnsafeBytes { _ = try header.validate(body: $0, entriesSealed: true, source: "t") }
                }
                outcomes.checksum += 1
            } catch {
                outcomes.transform += 1
            }
        }
        #expect(outcomes.checksum > 100, "the entries checksum is exercised")
        print("format 2 corruption: \(outcomes.transform) rejected by the transform, \(outcomes.checksum) by the entries checksum")
    }

    /// The reference workload in the steady state's small batches (20 entries): codec 3 (each
    /// batch against the one before) is far smaller than codec 2 (each batch on its own).
    @Test func referenceJournalSmallBatchesShrinkWithTheirContext() throws {
        let entries = try BatchTransformTests.referenceJournalEntries()
        let batchSize = 20
        var plain = 0, codec2 = 0, codec3 = 0
        var previous: [UInt8]?
        var first = 0
        while first < entries.count {
            let batch = entries[first..<min(first + batchSize, entries.count)].flatMap { $0 }
            let ranges = BatchTransformTests.ranges(batch)
            let context = previous.map { Self.context($0) } ?? BatchTransform.Context()
            let transformed = BatchTransform.encode(body: batch, entries: ranges, context: context)
            let back = try transformed.withUnsafeBytes {
                try BatchTransform.decode($0, firstSequence: UInt64(first + 1), maxBodyLength: batch.count, context: context, source: "reference")
            }
            #expect(back == batch, "batch from seq \(first + 1) does not round-trip")
            plain += batch.count
            codec2 += try BatchTransformTests.zstdSize(BatchTransform.encode(body: batch, entries: ranges))
            codec3 += try BatchTransformTests.zstdSize(transformed)
            previous = batch
            first += batchSize
        }
        print("reference journal in batches of \(batchSize): plain \(plain) B, codec 2 \(codec2) B, codec 3 \(codec3) B")
        #expect(Double(codec3) < 0.7 * Double(codec2), "codec 3 \(codec3) B is not well below codec 2 \(codec2) B")
    }

    // MARK: header

    func header(context: UplinkBatch.ContextReference?, codec: UplinkBatch.Codec = .contextTransposedZstd) -> UplinkBatch {
        UplinkBatch(deviceID: "ecu-07", epoch: 42, first: 10_000, last: 10_020, segmentStarts: [10_010], codec: codec,
                    bodyLength: 999, bodyChecksum: 0xABCD, context: context)
    }

    @Test func codec3HeaderRoundTripsAndEveryFlippedByteIsCaught() throws {
        let original = header(context: .init(first: 9_980, checksum: 0x1234_5678))
        let bytes = original.encodedHeader()
        let (decoded, length) = try bytes.withUnsafeBytes { try UplinkBatch.decodeHeader($0, source: "t") }
        #expect(decoded == original)
        #expect(length == bytes.count)
        for index in bytes.indices {
            var bad = bytes
            bad[index] ^= 0x40
            #expect(throws: (any Error).self) { try bad.withUnsafeBytes { _ = try UplinkBatch.decodeHeader($0, source: "t") } }
        }
    }

    /// Headers whose CRC is right but whose context is impossible: each refused by field.
    @Test func forgedContextFieldsAreRejectedByName() {
        func field(_ batch: UplinkBatch) -> String? {
            do throws(DAQError) {
                _ = try batch.encodedHeader().withUnsafeBytes { raw in
                    Result { () throws(DAQError) in try UplinkBatch.decodeHeader(raw, source: "t") }
                }.get()
                return nil
            } catch {
                return error.location?.field
            }
        }
        #expect(field(header(context: .init(first: 10_000, checksum: 1))) == "context", "context not before the batch")
        #expect(field(header(context: .init(first: 10_001, checksum: 1))) == "context", "context after the batch's start")
        #expect(field(header(context: .init(first: 0, checksum: 1))) == "context", "sequence 0 does not exist")
        #expect(field(header(context: .init(first: 10_000 - UplinkBatch.maxContextEntries - 1, checksum: 1))) == "context", "too long")
        #expect(field(header(context: .init(first: 10_000 - UplinkBatch.maxContextEntries, checksum: 1))) == nil)
        // Codec 2 bytes with a context appended, or codec 3 without one: the lengths do not add up.
        var codec2 = header(context: .init(first: 9_980, checksum: 1)).encodedHeader()
        codec2[5] = UplinkBatch.Codec.transposedZstd.rawValue
        Self.reseal(&codec2)
        var codec3 = header(context: nil, codec: .transposedZstd).encodedHeader()
        codec3[5] = UplinkBatch.Codec.contextTransposedZstd.rawValue
        Self.reseal(&codec3)
        for forged in [codec2, codec3] {
            #expect(throws: DAQError.self) { try forged.withUnsafeBytes { _ = try UplinkBatch.decodeHeader($0, source: "t") } }
        }
    }

    /// Recomputes a header's trailing CRC32C after a deliberate edit (a forger would).
    static func reseal(_ header: inout [UInt8]) {
        let crc = CRC32C.checksum(Array(header[..<(header.count - 4)]))
        withUnsafeBytes(of: crc.littleEndian) { header.replaceSubrange((header.count - 4)..., with: $0) }
    }
}
