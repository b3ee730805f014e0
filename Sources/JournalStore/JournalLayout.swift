// Where things live in a journal directory, and the ack cursor file.
import DAQCore
import Journal

/// Paths inside a journal directory: `<20-digit first seq>.jnl` segments, `ack`, `ack.tmp`, and
/// `segment.tmp` (a segment being created).
struct JournalLayout {
    let directory: String

    func segmentPath(firstSequence: UInt64) -> String {
        directory + "/" + SegmentName.name(firstSequence: firstSequence)
    }
    var ackPath: String { directory + "/ack" }
    var ackTemporaryPath: String { directory + "/ack.tmp" }
    var segmentTemporaryPath: String { directory + "/segment.tmp" }
    /// A segment of a deferred rotation until its sync renames it into place.
    static let deferredSegmentSuffix = SegmentName.suffix + ".new"
    static func temporaryPath(ofSegment path: String) -> String { path + ".new" }
    /// Segments of deferred rotations a crash left under their temporary names.
    func deferredSegments() throws(DAQError) -> [String] {
        do {
            return try FileOps.list(directory).filter { $0.hasSuffix(Self.deferredSegmentSuffix) }.sorted()
        } catch {
            throw error.daqError("list journal directory", path: directory)
        }
    }
    /// The uplink's note of what the broker took for the collector (UplinkTask), and its
    /// temporary name while it is written.
    static let queuedNoteName = "queued"
    static let queuedNoteTemporaryName = ".queued.tmp"
    /// The uplink's note of where the collector's copy and this journal diverged (UplinkTask).
    static let divergedNoteName = "diverged"
    static let divergedNoteTemporaryName = ".diverged.tmp"

    /// Files a journal directory never holds: a directory with these and no segment is no
    /// journal (a wrong path given), and is neither passed as an empty one nor written into.
    func foreignFiles() throws(DAQError) -> [String] {
        let known = ["ack", "ack.tmp", "segment.tmp", Self.queuedNoteName, Self.queuedNoteTemporaryName,
                     Self.divergedNoteName, Self.divergedNoteTemporaryName]
        do {
            return try FileOps.list(directory).filter {
                !$0.hasSuffix(SegmentName.suffix) && !$0.hasSuffix(Self.deferredSegmentSuffix) && !known.contains($0)
            }.sorted()
        } catch {
            throw error.daqError("list journal directory", path: directory)
        }
    }

    /// "N file(s) no journal holds (a, b, c, …)".
    static func describe(foreign: [String]) -> String {
        "\(foreign.count) file(s) no journal holds (\(foreign.prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", …" : ""))"
    }

    /// First sequence numbers of the segments present, ascending.
    func segmentFirstSequences() throws(DAQError) -> [UInt64] {
        do {
            return try FileOps.list(directory).compactMap { SegmentName.firstSequence(of: $0) }.sorted()
        } catch {
            throw error.daqError("list journal directory", path: directory)
        }
    }
}

/// The persisted "acknowledged up to" cursor (28 bytes, little-endian):
///
/// | offset | size | field                        |
/// |--------|------|------------------------------|
/// | 0      | 8    | magic `DAQJACK\0`            |
/// | 8      | 8    | stream epoch                 |
/// | 16     | 8    | acknowledged up to (seq)     |
/// | 24     | 4    | CRC32C of bytes 0 ..< 24     |
struct AckRecord: Equatable {
    static let length = 28
    static let magic: [UInt8] = Array("DAQJACK".utf8) + [0]

    var epoch: UInt64
    var acknowledgedUpTo: UInt64

    var bytes: [UInt8] {
        var out = AckRecord.magic
        out.reserveCapacity(AckRecord.length)
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: epoch >> UInt64(shift))) }
        for shift in stride(from: 0, to: 64, by: 8) {
            out.append(UInt8(truncatingIfNeeded: acknowledgedUpTo >> UInt64(shift)))
        }
        let crc = CRC32C.checksum(out)
        for shift in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: crc >> UInt32(shift))) }
        return out
    }

    static func parse(_ bytes: [UInt8]) -> AckRecord? {
        guard bytes.count == length, bytes[0..<8].elementsEqual(magic) else { return nil }
        func le(_ offset: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << UInt64(8 * $1) }
        }
        guard UInt32(le(24, 4)) == CRC32C.checksum(Array(bytes[0..<24])) else { return nil }
        return AckRecord(epoch: le(8, 8), acknowledgedUpTo: le(16, 8))
    }
}
