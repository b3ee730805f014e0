// Codec 2's transform: exact round trips on generated bodies and on the reference workload's real
// journal, and hostile transformed streams (every truncation, random corruption, absurd counts)
// that must end in an error from the transform or from the batch header's body checks, never in a
// crash or a wrong body accepted.
import DAQCore
import Foundation
import Journal
import Testing
@testable import Delivery

@Suite struct BatchTransformTests {
    // MARK: generated bodies

    @Test func randomBodiesRoundTrip() throws {
        for seed in 1...300 as ClosedRange<UInt64> {
            var random = Xorshift(seed: seed)
            let body = Self.randomBody(entries: 1 + Int(random.next() % 80), first: seed, random: &random)
            try Self.expectRoundTrip(body, first: seed)
        }
    }

    @Test func edgeShapesRoundTrip() throws {
        for (index, body) in Self.edgeShapeBodies(first: 100).enumerated() {
            try Self.expectRoundTrip(body, first: 100, comment: "shape \(index)")
        }
    }

    /// Bodies of unusual shape, entries numbered from `first`.
    static func edgeShapeBodies(first: UInt64) -> [[UInt8]] {
        let layout: [UInt8] = Array(0..<200)
        let group: [(UInt8, [UInt8])] = (0..<40).map { (i: UInt8) in (0, [1, 0, i, 0x80, 0xFF - i]) }
        let shapes: [[(UInt8, [UInt8])]] = [
            [],                                                      // no entries at all
            [(0, [1, 0, 5, 6, 7])],                                  // single record, odd tail
            [(1, [])],                                               // single empty layout
            [(0, [])],                                               // empty record: verbatim
            [(0, [9])],                                              // 1-byte record: no id, verbatim
            [(0, [3, 0])],                                           // record that is only its id
            [(0, [1, 0, 1, 2]), (0, [1, 0, 1, 2, 3]), (0, [1, 0, 1, 2]), (7, [1, 0, 4, 4])],  // same id, two lengths; a reserved kind
            [(0, [0xFF, 0xFF] + Array(repeating: 0xFF, count: 9)), (0, [0xFF, 0xFF] + Array(repeating: 0, count: 9))],  // wrapping deltas
            [(1, layout)] + group,                                   // layout, then a group
        ]
        return shapes.map { shape in
            shape.enumerated().flatMap { offset, entry in
                JournalFraming.encode(kind: JournalEntryKind(rawValue: entry.0), sequence: first + UInt64(offset), payload: entry.1)
            }
        }
    }

    @Test func emptyBodyRoundTrips() throws {
        let transformed = BatchTransform.encode(body: [], entries: [])
        #expect(transformed.count == BatchTransform.maxTransformedLength(bodyLength: 0))
        let back = try transformed.withUnsafeBytes { try BatchTransform.decode($0, firstSequence: 1, maxBodyLength: 0, source: "t") }
        #expect(back.isEmpty)
    }

    // MARK: the reference journal

    /// The reference workload's journal, cut into batches of the sender's default size: each comes
    /// back byte for byte. Prints the sizes plain, zstd -3 and transposed + zstd -3 (the zstd CLI
    /// stands in for libzstd here; the ratio is reported, not asserted).
    @Test func referenceJournalRoundTripsAndShrinks() throws {
        let entries = try Self.referenceJournalEntries()
        #expect(entries.count > 3000)
        let batchSize = UplinkPolicy().maxBatchEntries
        var plain = 0, zstdPlain = 0, zstdTransposed = 0, first = 0
        while first < entries.count {
            let batch = entries[first..<min(first + batchSize, entries.count)]
            var body: [UInt8] = []
            var ranges: [Range<Int>] = []
            for entry in batch {
                ranges.append(body.count..<(body.count + entry.count))
                body += entry
            }
            let transformed = BatchTransform.encode(body: body, entries: ranges)
            #expect(transformed.count <= BatchTransform.maxTransformedLength(bodyLength: body.count))
            let back = try transformed.withUnsafeBytes {
                try BatchTransform.decode($0, firstSequence: UInt64(first + 1), maxBodyLength: body.count, source: "reference")
            }
            #expect(back == body, "batch from seq \(first + 1) does not round-trip")
            plain += body.count
            zstdPlain += try Self.zstdSize(body)
            zstdTransposed += try Self.zstdSize(transformed)
            first += batchSize
        }
        func ratio(_ bytes: Int) -> String { String(format: "%.3f×", Double(bytes) / Double(plain)) }
        print("reference journal, \(entries.count) entries in batches of \(batchSize): plain \(plain) B, "
              + "zstd -3 \(zstdPlain) B (\(ratio(zstdPlain))), transposed + zstd -3 \(zstdTransposed) B (\(ratio(zstdTransposed)))")
    }

    // MARK: hostile input

    @Test func everyTruncationIsAnError() throws {
        var random = Xorshift(seed: 77)
        let body = Self.randomBody(entries: 40, first: 1, random: &random)
        let transformed = BatchTransform.encode(body: body, entries: Self.ranges(body))
        for length in 0..<transformed.count {
            let cut = Array(transformed[0..<length])
            #expect(throws: DAQError.self, "truncated to \(length)") {
                try cut.withUnsafeBytes { _ = try BatchTransform.decode($0, firstSequence: 1, maxBodyLength: body.count, source: "t") }
            }
        }
    }

    /// Random corruption either fails the transform's own checks or rebuilds a body that the batch
    /// header's length and CRC32C reject: what the collector does with every codec-2 batch.
    @Test func randomCorruptionIsAlwaysCaught() throws {
        var random = Xorshift(seed: 4242)
        let body = Self.randomBody(entries: 60, first: 9, random: &random)
        let transformed = BatchTransform.encode(body: body, entries: Self.ranges(body))
        let header = UplinkBatch(deviceID: "ecu", epoch: 1, first: 9, last: 68, segmentStarts: [], codec: .transposedZstd,
                                 bodyLength: UInt32(body.count), bodyChecksum: UplinkBatch.entriesChecksum(body: body, entries: Self.ranges(body)))
        var outcomes = (transform: 0, header: 0)
        for trial in 0..<3000 {
            var bad = transformed
            for _ in 0...(random.next() % 4) {
                let index = Int(random.next() % UInt64(bad.count))
                bad[index] ^= UInt8(1 + random.next() % 255)
            }
            if trial % 10 == 0 { bad.removeLast(Int(random.next() % 8)) }
            do {
                let rebuilt = try bad.withUnsafeBytes {
                    try BatchTransform.decode($0, firstSequence: 9, maxBodyLength: body.count, source: "t")
                }
                #expect(throws: DAQError.self, "trial \(trial) was accepted") {
                    try rebuilt.withUnsafeBytes { _ = try header.validate(body: $0, source: "t") }
                }
                outcomes.header += 1
            } catch {
                outcomes.transform += 1
            }
        }
        print("corruption: \(outcomes.transform) rejected by the transform, \(outcomes.header) by the body checks")
    }

    @Test func absurdIndexFieldsAreRejectedByName() {
        func field(_ bytes: [UInt8], maxBody: Int = 1 << 20, first: UInt64 = 1) -> String? {
            do {
                _ = try bytes.withUnsafeBytes { try BatchTransform.decode($0, firstSequence: first, maxBodyLength: maxBody, source: "t") }
                return nil
            } catch let error as DAQError {
                return error.location?.field
            } catch {
                return "not a DAQError: \(error)"
            }
        }
        #expect(field([]) == "transform prefix")
        #expect(field([2, 0, 0, 0, 0]) == "transform version")
        #expect(field([1, 0xFF, 0xFF, 0xFF, 0xFF]) == "entry count")               // 4 G entries
        #expect(field([1, 2, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], first: .max) == "entry count")
        #expect(field([1, 2, 0, 0, 0, 1]) == "index")
        #expect(field([1, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0x7F]) == "payload length")   // 2 GiB payload
        #expect(field([1, 1, 0, 0, 0, 1, 0x10, 0, 0, 0], maxBody: 30) == "payload length")  // over the stated body
        #expect(field([1, 1, 0, 0, 0, 1, 4, 0, 0, 0, 1, 2, 3]) == "transform length")
        #expect(field([1, 1, 0, 0, 0, 1, 4, 0, 0, 0, 1, 2, 3, 4, 5]) == "transform length")
        #expect(field([1, 1, 0, 0, 0, 1, 4, 0, 0, 0, 1, 2, 3, 4]) == nil)
        #expect(field([1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 1]) == "record ids")
        #expect(field([1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 3, 7, 0]) == "column order")
        for order: UInt8 in 0...2 { #expect(field([1, 1, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, order, 7, 0]) == nil) }
    }

    // MARK: helpers

    static func expectRoundTrip(_ body: [UInt8], first: UInt64, comment: String = "") throws {
        let transformed = BatchTransform.encode(body: body, entries: ranges(body))
        #expect(transformed.count <= BatchTransform.maxTransformedLength(bodyLength: body.count))
        let back = try transformed.withUnsafeBytes {
            try BatchTransform.decode($0, firstSequence: first, maxBodyLength: body.count, source: "t")
        }
        #expect(back == body, "round trip differs \(comment)")
        // A cap one byte short of the real body is refused rather than overrun.
        if !body.isEmpty {
            #expect(throws: DAQError.self) {
                try transformed.withUnsafeBytes { _ = try BatchTransform.decode($0, firstSequence: first, maxBodyLength: body.count - 1, source: "t") }
            }
        }
    }

    /// The framed entries' ranges in a well-formed body.
    static func ranges(_ body: [UInt8]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var offset = 0
        while offset < body.count {
            let length = Int(body[offset]) | Int(body[offset + 1]) << 8 | Int(body[offset + 2]) << 16 | Int(body[offset + 3]) << 24
            result.append(offset..<(offset + JournalFraming.framedLength(payloadLength: length)))
            offset = result.last!.upperBound
        }
        return result
    }

    /// Records of a few groups (including odd lengths and a shared id with two lengths) with slowly
    /// drifting values, mixed with layouts, reserved kinds and empty or id-less payloads.
    static func randomBody(entries: Int, first: UInt64, random: inout Xorshift) -> [UInt8] {
        let groups: [(id: UInt16, length: Int)] = [(1, 2 + 8 + 12 + 1), (2, 2 + 8 + 7 + 1), (3, 2 + 8 + 4), (2, 2 + 8 + 20 + 3)]
        var state = groups.map { group in (0..<group.length).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
        var body: [UInt8] = []
        for index in 0..<entries {
            let roll = random.next() % 20
            var kind: UInt8 = 0
            var payload: [UInt8]
            switch roll {
            case 0: kind = 1; payload = (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            case 1: payload = []
            case 2: payload = [UInt8(truncatingIfNeeded: random.next())]
            case 3: kind = UInt8(2 + random.next() % 200); payload = [1, 0, 5]
            default:
                let g = Int(random.next() % UInt64(groups.count))
                for byte in 2..<groups[g].length where random.next() % 3 == 0 {
                    state[g][byte] &+= UInt8(truncatingIfNeeded: random.next() % 5)
                }
                payload = [UInt8(groups[g].id & 0xFF), UInt8(groups[g].id >> 8)] + state[g][2...]
            }
            body += JournalFraming.encode(kind: JournalEntryKind(rawValue: kind), sequence: first + UInt64(index), payload: payload)
        }
        return body
    }

    /// Runs daqlink on the reference workload into a fresh journal and returns every entry's
    /// framed bytes in sequence order (segments parsed here: header, then back-to-back entries).
    static func referenceJournalEntries() throws -> [[UInt8]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("batch-transform-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = daqlinkExecutable(root: root)
        process.currentDirectoryURL = root
        process.arguments = ["run", "--experiment", "Fixtures/reference/reference.toml",
                             "--source", "replay:Fixtures/reference/engine-10s.log", "--speed", "max",
                             "--journal", directory.path, "--quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "daqlink run failed")
        let segments = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".jnl") }.sorted()
        var entries: [[UInt8]] = []
        for name in segments {
            let bytes = [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
            try bytes.withUnsafeBytes { raw in
                var offset = 40
                while offset < raw.count {
                    guard case .entry(_, _, _, let length) = JournalFraming.decode(raw, at: offset, expectedSequence: UInt64(entries.count + 1)) else {
                        throw DAQError(.malformedInput, "\(name) offset \(offset) is not the next entry")
                    }
                    entries.append(Array(raw[offset..<(offset + length)]))
                    offset += length
                }
            }
        }
        return entries
    }

    /// The built daqlink beside this test binary (`.build/<triple>/debug/`), or `.build/debug/`.
    static func daqlinkExecutable(root: URL) -> URL {
        let own = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        let candidates = [own.deletingLastPathComponent().appendingPathComponent("daqlink"),
                          root.appendingPathComponent(".build/debug/daqlink")]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[1]
    }

    /// Compressed size with the zstd CLI at `level` (input from a file, so no pipe can deadlock).
    static func zstdSize(_ bytes: [UInt8], level: Int = 3) throws -> Int {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("batch-transform-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(bytes).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["zstd", "-\(level)", "-c", "-q", file.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let compressed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "zstd failed")
        return compressed.count
    }
}

/// A small seeded generator so every failure reproduces.
struct Xorshift {
    private var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
