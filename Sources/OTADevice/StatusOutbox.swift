// The device's OTA status reports, kept on disk until the broker has taken them: every state
// change is appended (and fsynced) before anything depends on it, so a report made just before a
// "reboot" or a rollback is still sent by whichever slot runs next.
//
//   DIR/status/outbox   one UpdateStatus JSON object per line
//   DIR/status/sent     the highest sequence number the broker acknowledged (PUBACK success)
#if canImport(Glibc)
import Glibc
#endif
import DAQCore
import OTA
import PKI

/// Durable queue of status reports for `devices/<id>/ota/status`.
public final class StatusOutbox {
    private let outboxPath: String
    private let sentPath: String
    /// Reports not yet acknowledged by the broker, oldest first: (sequence, JSON).
    public private(set) var pending: [(sequence: UInt64, json: String)] = []
    private var lastSequence: UInt64 = 0
    private var sent: UInt64 = 0
    /// Size above which a fully sent outbox is emptied.
    static let compactionBytes = 256 << 10

    /// Opens (or creates) the outbox in `directory`.
    public init(directory: String) throws {
        try AtomicFile.makeDirectory(directory, mode: 0o755)
        outboxPath = directory + "/outbox"
        sentPath = directory + "/sent"
        if AtomicFile.exists(sentPath) {
            let text = String(decoding: try AtomicFile.read(sentPath), as: UTF8.self).trimmingSpaces
            guard let value = UInt64(text) else {
                throw DAQError(.malformedInput, "not a sequence number", at: InputLocation(file: sentPath, line: 1, field: "sent"))
            }
            sent = value
            lastSequence = value
        }
        if AtomicFile.exists(outboxPath) {
            // A line torn by a power cut is the last one and was never acknowledged: drop it, and
            // cut it from the file (the next report was appended onto it: one line of invalid
            // JSON that took the torn report's number, and the next report reused the number).
            let bytes = try AtomicFile.read(outboxPath)
            if let last = bytes.last, last != UInt8(ascii: "\n") {
                try Self.truncate(outboxPath, to: bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0)
            }
            let text = String(decoding: bytes, as: UTF8.self)
            for line in text.split(separator: "\n") {
                guard let sequence = Self.sequence(of: line), line.hasSuffix("}") else { continue }
                lastSequence = max(lastSequence, sequence)
                if sequence > sent { pending.append((sequence, String(line))) }
            }
        }
    }

    /// Appends a report durably; returns it.
    @discardableResult
    public func append(kind: UpdateKind, status: String, version: UInt64, slot: Slot? = nil, reason: String? = nil, time: Int64) throws -> UpdateStatus {
        let report = UpdateStatus(sequence: lastSequence + 1, kind: kind, status: status, version: version, slot: slot, reason: reason, time: time)
        let line = Array((report.json() + "\n").utf8)
        let fd = open(outboxPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw AtomicFile.posixError("cannot open", outboxPath) }
        defer { close(fd) }
        var info = stat()
        let before = fstat(fd, &info) == 0 ? info.st_size : -1
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count, fsync(fd) == 0 else {
            let failure = AtomicFile.posixError("cannot append to", outboxPath)
            // A part written (a full card) would be the start of the next report's line.
            if before >= 0 { _ = ftruncate(fd, before) }
            throw failure
        }
        lastSequence = report.sequence
        pending.append((report.sequence, report.json()))
        return report
    }

    /// The broker acknowledged every report up to `sequence`.
    public func acknowledge(upTo sequence: UInt64) {
        guard sequence > sent else { return }
        sent = sequence
        pending.removeAll { $0.sequence <= sequence }
        // Unwritten, the cursor cannot keep the numbering across an emptied outbox: keep the outbox.
        guard (try? AtomicFile.write(Array("\(sequence)\n".utf8), to: sentPath, mode: AtomicFile.publicMode)) != nil else { return }
        // Everything sent: start a new outbox once the old one has grown (the cursor keeps the numbering).
        var info = stat()
        if pending.isEmpty, stat(outboxPath, &info) == 0, info.st_size > Self.compactionBytes {
            try? AtomicFile.write([], to: outboxPath, mode: AtomicFile.publicMode)
        }
    }

    private static func truncate(_ path: String, to length: Int) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.posixError("cannot open", path) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(length)) == 0, fsync(fd) == 0 else { throw AtomicFile.posixError("cannot cut the torn line of", path) }
    }

    static func sequence(of line: Substring) -> UInt64? {
        let prefix = "{\"seq\":"
        guard line.hasPrefix(prefix) else { return nil }
        return UInt64(line.dropFirst(prefix.count).prefix { $0.isNumber })
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " || $0 == "\n" }.reversed().drop { $0 == " " || $0 == "\n" }.reversed())
    }
}
