// `daqctl journal …`: inspect a device journal directory. `verify` checks it byte by byte;
// the hidden `write-test` drives the real writer for crash tests. (`dump` joins once the record
// layout exists.)
import ArgumentParser
import DAQCore
import Journal
import JournalStore
#if canImport(Glibc)
import Glibc
#endif

struct JournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Inspect a device journal (append-only segments with CRC32C framing).",
        subcommands: [JournalVerifyCommand.self, JournalDumpCommand.self, JournalWriteTestCommand.self, JournalBenchCommand.self]
    )
}

struct JournalVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every segment header, entry frame, CRC32C, sequence continuity and the ack cursor.",
        discussion: """
            Reads every segment of the journal (a device's, or a collector's copy) and prints one \
            line: segments, entries, bytes, the sequence range, the stream epoch and the \
            acknowledged cursor, then notes (segments retention deleted, `lost` placeholders, \
            temporary files a crash left, which the next writer removes) and OK.

            Exit status: 0 the journal is sound (notes are not faults); 1 a fault (a damaged \
            entry or header, a gap in the sequence, an unreadable file, or a torn tail a crash \
            left: an entry cut short at the end, which daqlink cuts at its next start), each on \
            stderr as <directory>/<segment>: <problem>.

            Example:
              daqctl journal verify /data/journal
            """
    )

    @Argument(help: "The journal directory.")
    var directory: String

    func run() throws {
        let report = try JournalVerifier.verify(directory: directory)
        let range = report.firstSequence.map { "seq \($0)…\(report.lastSequence ?? $0)" } ?? "no entries"
        let unreadable = report.lostEntries > 0 ? " (and \(report.lostEntries) unreadable)" : ""
        print("journal \(directory): \(report.segments.count) segment(s), \(report.entries) entries\(unreadable), "
              + "\(report.bytes) bytes, \(range), epoch \(report.epoch.map(String.init) ?? "-"), "
              + "acknowledged up to \(report.acknowledgedUpTo.map(String.init) ?? "none")")
        for note in report.notes {
            print("note: \(note)")
        }
        for fault in report.faults {
            FileStream.standardError.write(fault.file.isEmpty ? "error: \(directory): \(fault.problem)\n" : "error: \(directory)/\(fault)\n")
        }
        if !report.isValid {
            FileStream.standardError.write("journal verify: \(report.faults.count) fault(s)\n")
            throw ExitCode(1)
        }
        print(report.segments.isEmpty ? "OK (empty journal: no segments yet)" : "OK")
    }
}

/// Appends deterministic payloads (`JournalTestPattern`) until the journal's last seq reaches
/// `--records`, printing each seq only after it is synced. Rerun after a kill and it continues.
struct JournalWriteTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-test",
        abstract: "Test helper: append pseudo-random payloads derived from (seed, seq); print synced seqs.",
        shouldDisplay: false
    )

    @Option(help: "The journal directory.") var dir: String
    @Option(help: "Append until the last seq reaches this number.") var records: UInt64
    @Option(name: .customLong("payload-min"), help: "Smallest payload in bytes.") var payloadMin: Int = 0
    @Option(name: .customLong("payload-max"), help: "Largest payload in bytes.") var payloadMax: Int = 256
    @Option(help: "Seed of the payload pattern.") var seed: UInt64 = 1
    @Option(name: .customLong("sync-every-bytes"), help: "Group commit: sync when this many bytes are pending.")
    var syncEveryBytes: Int = 64 << 10
    @Option(name: .customLong("segment-bytes"), help: "Segment size limit.") var segmentBytes: Int = 8 << 20
    @Option(name: .customLong("quota-bytes"), help: "Journal quota.") var quotaBytes: Int = 1 << 30
    @Option(help: "Stream epoch for a new journal.") var epoch: UInt64 = 1

    func validate() throws {
        guard payloadMin >= 0, payloadMax >= payloadMin, payloadMax <= JournalFraming.maxPayloadLength else {
            throw ValidationError("need 0 ≤ --payload-min ≤ --payload-max ≤ \(JournalFraming.maxPayloadLength)")
        }
        guard syncEveryBytes > 0 else { throw ValidationError("--sync-every-bytes must be positive") }
        let smallest = SegmentHeader.length + JournalFraming.overhead
        guard segmentBytes >= smallest else { throw ValidationError("--segment-bytes must be at least \(smallest) (a header and one empty entry)") }
        guard quotaBytes >= 2 * segmentBytes else { throw ValidationError("--quota-bytes must hold at least two segments (2 × --segment-bytes)") }
    }

    func run() throws {
        let writer = try JournalWriter(
            directory: dir,
            configuration: JournalConfiguration(epoch: epoch, segmentSizeLimit: segmentBytes, quotaBytes: quotaBytes))
        // Byte threshold only: this helper has no timer loop, so the delay is effectively never.
        var policy = GroupCommitPolicy(.init(maxPendingBytes: syncEveryBytes, maxDelayNanoseconds: .max / 2))
        var reported = writer.lastSyncedSequence
        func syncAndReport() throws {
            try writer.sync()
            _ = policy.on(.synced)
            var text = ""
            while reported < writer.lastSyncedSequence {
                reported += 1
                text += "\(reported)\n"
            }
            if !text.isEmpty {
                FileStream.standardOutput.write(text)
            }
        }
        while writer.lastSequence < records {
            let sequence = writer.nextSequence
            let payload = JournalTestPattern.payload(sequence: sequence, seed: seed, minLength: payloadMin, maxLength: payloadMax)
            try writer.append(kind: .record, payload: payload)
            if policy.on(.appended(bytes: JournalFraming.framedLength(payloadLength: payload.count), now: 0)) == .syncNow {
                try syncAndReport()
            }
        }
        try syncAndReport()
        try writer.close()
    }
}

/// Measures CRC32C and append throughput with the real writer (release builds only mean anything).
struct JournalBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure CRC32C and append(+fdatasync) throughput into a scratch journal directory.",
        shouldDisplay: false
    )

    @Option(help: "Scratch journal directory (must not exist).") var dir: String
    @Option(help: "Payload size in bytes.") var payload: Int = 200
    @Option(name: .customLong("total-mib"), help: "Payload MiB to append.") var totalMiB: Int = 256
    @Option(name: .customLong("sync-every-bytes"), help: "fdatasync when this many bytes are pending (0 = only at the end).")
    var syncEveryBytes: Int = 0

    func run() throws {
        let bytes = JournalTestPattern.payload(sequence: 1, seed: 1, minLength: payload, maxLength: payload)
        let total = totalMiB << 20
        let count = max(1, total / max(payload, 1))
        var crcSink: UInt32 = 0
        let crcSeconds = elapsed {
            let block = JournalTestPattern.payload(sequence: 2, seed: 2, minLength: 1 << 20, maxLength: 1 << 20)
            for _ in 0..<totalMiB { crcSink ^= CRC32C.checksum(block) }
        }
        print("crc32c: \(totalMiB) MiB in \(format(crcSeconds)) s = \(format(Double(totalMiB) / crcSeconds)) MiB/s (\(crcSink & 1))")

        let writer = try JournalWriter(directory: dir,
                                       configuration: JournalConfiguration(epoch: 1, quotaBytes: Int.max / 4))
        var pending = 0
        var syncs = 0
        var failure: (any Error)?
        let seconds = elapsed {
            do {
                for _ in 0..<count {
                    try writer.append(kind: .record, payload: bytes)
                    pending += JournalFraming.framedLength(payloadLength: bytes.count)
                    if syncEveryBytes > 0 && pending >= syncEveryBytes {
                        try writer.sync()
                        pending = 0
                        syncs += 1
                    }
                }
                try writer.sync()
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try writer.close()
        let mib = Double(count * payload) / Double(1 << 20)
        print("append \(payload) B payloads, \(syncEveryBytes > 0 ? "fdatasync every \(syncEveryBytes) B (\(syncs) syncs)" : "one sync at the end"): "
              + "\(count) entries in \(format(seconds)) s = \(format(Double(count) / seconds / 1e3)) k entries/s, "
              + "\(format(mib / seconds)) MiB/s of payload")
    }

    private func elapsed(_ body: () -> Void) -> Double {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        body()
        clock_gettime(CLOCK_MONOTONIC, &end)
        return Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    }

    private func format(_ value: Double) -> String {
        let scaled = (value * 100).rounded() / 100
        return String(scaled)
    }
}

/// Writes to stdout / stderr flushed at once, so a reader sees each line as soon as it is
/// written (a crash test kills this process at random moments).
enum FileStream {
    case standardOutput, standardError

    func write(_ text: String) {
        switch self {
        case .standardOutput:
            print(text, terminator: "")
            fflush(nil)
        case .standardError:
            // This process installs no signal handlers, so write(2) cannot fail with EINTR here.
            var bytes = Array(text.utf8)
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + done, $0.count - done) }
                guard n > 0 else { return }
                done += n
            }
        }
    }
}
