// The device's OTA status reports, kept on disk until the broker has taken them: every state
// change is appended (and fsynced) before anything depends on it, so a report made just before a
// "reboot" or a rollback is still sent by whichever slot runs next.
//
//   DIR/status/outbox   one UpdateStatus JSON object per line
//   DIR/status/sent     the highest sequence number the broker acknowledged (PUBACK success)
//   DIR/status/firmware-report   the report of the boot state about to be persisted
//   DIR/status/id       the outbox's random id, carried by its reports
//
// A firmware transition persists its boot state, then appends its report: a power cut between the
// two took the report (the collector's history then lacked, say, `committed`). So the shell first
// writes the report it is about to make, tagged with the new state's generation, then persists
// the state, then appends the report carrying that generation. At the next start the outbox
// appends the written report when the persisted state has its generation and no report of that
// generation is in the outbox yet: once, never for a state that was not persisted.
//
// Experiments and certificate bundles keep their state in their versions file, the staging
// area's `failed` mark and the pending link; each step is reported after it. A start compares
// what that state proves (`ProvenReport(kind:versions:failed:pendingInstalled:)`) with the newest report of the kind in the
// outbox, and appends the one a power cut took (`recoverStateReport`). Certificate renewals
// (version 0, their serial in the report) likewise: the `pending` and `current` links and the
// refused serials against each serial's newest report (`recoverRenewalReports`).
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
    private let firmwareReportPath: String
    /// This outbox's id (16 hex digits, in `DIR/status/id`).
    public let outboxID: String
    /// The newest line carrying a boot-state generation, and that generation (0: none).
    private var lastFirmwareLine: String?
    public private(set) var reportedBootGeneration: UInt64 = 0
    /// Per slot-less kind (experiment, certificates), the newest report of a state change (not a
    /// refusal): its version, status and line. Kept through a compaction.
    private var lastStateReports: [UpdateKind: (version: UInt64, status: String, line: String)] = [:]
    /// Per renewed certificate (serial), its newest report of a step (`renewalStatuses`) and the
    /// line. Kept through a compaction: one line per renewal, a year or so apart.
    private var renewalReports: [String: (status: String, line: String)] = [:]
    /// Size above which a fully sent outbox is emptied.
    static let compactionBytes = 256 << 10

    /// Opens (or creates) the outbox in `directory`.
    public init(directory: String) throws {
        try AtomicFile.makeDirectory(directory, mode: 0o755)
        outboxPath = directory + "/outbox"
        sentPath = directory + "/sent"
        firmwareReportPath = directory + "/firmware-report"
        // The outbox's own id, made once: its reports carry it (see `UpdateStatus.outbox`).
        let idPath = directory + "/id"
        if AtomicFile.exists(idPath), let text = try? AtomicFile.read(idPath),
           case let id = String(decoding: text, as: UTF8.self).trimmingSpaces, id.count == 16, id.allSatisfy(\.isHexDigit) {
            outboxID = id
        } else {
            var random = SystemRandomNumberGenerator()
            let value = random.next() as UInt64
            let id = String(repeating: "0", count: 16 - String(value, radix: 16).count) + String(value, radix: 16)
            try AtomicFile.write(Array((id + "\n").utf8), to: idPath, mode: AtomicFile.publicMode)
            outboxID = id
        }
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
                if let generation = Self.bootGeneration(of: line), generation >= reportedBootGeneration {
                    reportedBootGeneration = generation
                    lastFirmwareLine = String(line)
                }
                noteStateReport(line)
            }
        }
    }

    /// Appends a report durably; returns it.
    @discardableResult
    public func append(kind: UpdateKind, status: String, version: UInt64, slot: Slot? = nil, reason: String? = nil, time: Int64,
                       bootGeneration: UInt64? = nil, serial: String? = nil) throws -> UpdateStatus {
        let report = UpdateStatus(sequence: lastSequence + 1, kind: kind, status: status, version: version, slot: slot, reason: reason, time: time,
                                  bootGeneration: bootGeneration, outbox: outboxID, serial: serial)
        let json = report.json()
        let line = Array((json + "\n").utf8)
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
        pending.append((report.sequence, json))
        if let bootGeneration, bootGeneration >= reportedBootGeneration {
            reportedBootGeneration = bootGeneration
            lastFirmwareLine = json
        }
        noteStateReport(Substring(json))
        return report
    }

    /// The statuses that report a state change of a slot-less kind, in the order an update goes
    /// through them (`download-failed` and `rolled-back` end one).
    static let stateStatuses = ["downloading", "installed", "committed", "download-failed", "rolled-back"]

    private func noteStateReport(_ line: Substring) {
        if let status = Self.field("status", of: line), Self.renewalStatuses.contains(status) {
            // Lines of the daqlink before the "serial" key name it in their reason.
            if let serial = Self.field("serial", of: line) ?? Self.field("reason", of: line).flatMap(Self.serialNamed(in:)) {
                renewalReports[serial] = (status, String(line))
            }
            return
        }
        guard let kind = Self.field("kind", of: line).flatMap(UpdateKind.init(rawValue:)), kind != .firmware,
              let status = Self.field("status", of: line), Self.stateStatuses.contains(status),
              let version = Self.version(of: line) else { return }
        lastStateReports[kind] = (version, status, String(line))
    }

    /// At a start: appends the report of the state change of `kind` that `proven` says happened,
    /// when the outbox's newest report of that kind is of an older version or an earlier step (a
    /// power cut came between the state change and its report); returns it. `proven` comes from
    /// the kind's persisted state (`ProvenReport(kind:versions:failed:pendingInstalled:)`).
    @discardableResult
    public func recoverStateReport(of kind: UpdateKind, _ proven: ProvenReport, time: Int64) throws -> UpdateStatus? {
        if let last = lastStateReports[kind] {
            guard last.version <= proven.version else { return nil }
            if last.version == proven.version, proven.statuses.contains(last.status)
                || Self.rank(last.status) > Self.rank(proven.statuses[0]) { return nil }
        } else if proven.statuses[0] != "downloading" {
            // No state report of the kind on record: an outbox that an older daqlink emptied
            // (it kept only the firmware line), or a new one. One power cut takes one report, and
            // a later step's report means the first step's was made: only a `downloading` can be
            // the one missing here; anything else would report an update done long ago as new.
            return nil
        }
        // A failure after the bundle was installed is a rollback; before, a failed download.
        let status = proven.statuses.count > 1 && lastStateReports[kind].map({ $0.version == proven.version && $0.status == "installed" }) == true
            ? proven.statuses[1] : proven.statuses[0]
        return try append(kind: kind, status: status, version: proven.version,
                          reason: "recorded at start: a power cut came between this step and its report", time: time)
    }

    /// The hex serial after "serial " in a renewal report's reason (nil: none).
    static func serialNamed(in reason: String) -> String? {
        guard let start = reason.range(of: "serial ") else { return nil }
        let serial = reason[start.upperBound...].prefix { $0.isHexDigit }
        return serial.isEmpty ? nil : String(serial)
    }

    /// The statuses of a renewal's steps: armed, connected (promoted), rolled back.
    static let renewalStatuses = ["renewal-installed", "renewed", "renewal-rolled-back"]

    /// At a start: appends the renewal reports a power cut took between a step and its report, as
    /// the credentials on disk prove them: `pending`, the serial of a renewal armed and not
    /// refused (`renewal-installed`); `current`, that of the renewal in use (`renewed`, after its
    /// `renewal-installed`, or after a `renewal-rolled-back` when it was tried again); `rolledBack`,
    /// the serials recorded as refused or set aside (`renewal-rolled-back`, after a
    /// `renewal-installed`). Only
    /// `pending` is reported with no report of its serial on record: one cut takes one report,
    /// and an outbox an older daqlink emptied kept no renewal lines (a wiped status directory
    /// reports a pending renewal again). Returns what it appended.
    public func recoverRenewalReports(pending: String?, current: String?, rolledBack: Set<String>, time: Int64) throws -> [UpdateStatus] {
        var missing: [(serial: String, status: String)] = []
        if let pending, renewalReports[pending] == nil { missing.append((pending, "renewal-installed")) }
        if let current, let last = renewalReports[current]?.status, last != "renewed" { missing.append((current, "renewed")) }
        for serial in rolledBack.sorted() where serial != current && renewalReports[serial]?.status == "renewal-installed" {
            missing.append((serial, "renewal-rolled-back"))
        }
        return try missing.map { serial, status in
            try append(kind: .certificates, status: status, version: 0,
                       reason: "serial \(serial); recorded at start: a power cut came between this step and its report", time: time, serial: serial)
        }
    }

    /// A status's place in `stateStatuses`; `download-failed` and `rolled-back`, the two ends of a
    /// version, rank alike (and so does anything else).
    private static func rank(_ status: String) -> Int {
        min((stateStatuses.firstIndex(of: status) ?? 3) + 1, 4)
    }

    /// A JSON string field of a report line (our own lines: fixed keys, no escapes in these values).
    static func field(_ key: String, of line: Substring) -> String? {
        guard let start = line.range(of: "\"\(key)\":\"") else { return nil }
        let rest = line[start.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }

    static func version(of line: Substring) -> UInt64? {
        guard let start = line.range(of: "\"version\":") else { return nil }
        return UInt64(line[start.upperBound...].prefix { $0.isNumber })
    }

    /// Writes durably the report the transition to boot state `generation` makes, before that
    /// state is persisted.
    public func prepare(_ report: SlotReport, bootGeneration generation: UInt64) throws {
        var text = "\(Self.firmwareReportHeader)\n\(generation) \(report.version) \(report.slot.rawValue) \(report.status)\n"
        if let reason = report.reason { text += reason + "\n" }
        try AtomicFile.write(Array(text.utf8), to: firmwareReportPath, mode: AtomicFile.publicMode)
    }

    /// At a start: appends the prepared firmware report when boot state `generation` was persisted
    /// and its report was not appended (a power cut came between them); returns it. A prepared
    /// report of another generation (its state never persisted, or reported) is left alone.
    @discardableResult
    public func recoverFirmwareReport(persistedGeneration generation: UInt64, time: Int64) throws -> UpdateStatus? {
        guard generation > reportedBootGeneration, AtomicFile.exists(firmwareReportPath),
              let (prepared, report) = Self.parsePrepared(try AtomicFile.read(firmwareReportPath)), prepared == generation else { return nil }
        return try append(kind: .firmware, status: report.status, version: report.version, slot: report.slot, reason: report.reason,
                          time: time, bootGeneration: generation)
    }

    /// Persists boot state `state`, the `.persist` action at `index` of `actions`, into
    /// `directory`, after writing the report those actions make for it (`prepare`): the one step
    /// of every firmware transition, in `daqlink boot` and in the running agent alike.
    public func persist(_ state: BootState, action index: Int, of actions: [SlotAction], in directory: SlotDirectory) throws {
        if let report = SlotStore.report(ofPersistAt: index, in: actions) {
            try prepare(report, bootGeneration: state.generation)
        }
        try directory.persist(state)
    }

    static let firmwareReportHeader = "daqlink-firmware-report 1"

    /// (generation, report) from a prepared report's bytes; nil when torn or not one.
    static func parsePrepared(_ bytes: [UInt8]) -> (UInt64, SlotReport)? {
        guard bytes.last == UInt8(ascii: "\n") else { return nil }
        let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), maxSplits: 2, omittingEmptySubsequences: false)
        guard lines.count >= 2, String(decoding: lines[0], as: UTF8.self) == firmwareReportHeader else { return nil }
        let fields = String(decoding: lines[1], as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 4, let generation = UInt64(fields[0]), let version = UInt64(fields[1]),
              let slot = Slot(rawValue: String(fields[2])), !fields[3].isEmpty else { return nil }
        let reason = lines.count == 3 ? String(decoding: lines[2], as: UTF8.self) : nil
        return (generation, SlotReport(status: String(fields[3]), version: version, slot: slot, reason: reason))
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
            // The newest firmware report stays (sent): it keeps the generation reported; so does
            // each other kind's newest state report and each renewal's newest report (what a
            // start compares its state with).
            let kept = ([lastFirmwareLine].compactMap { $0 } + lastStateReports.values.map(\.line) + renewalReports.values.map(\.line))
                .sorted { (Self.sequence(of: Substring($0)) ?? 0) < (Self.sequence(of: Substring($1)) ?? 0) }
            try? AtomicFile.write(Array(kept.map { $0 + "\n" }.joined().utf8), to: outboxPath, mode: AtomicFile.publicMode)
        }
    }

    private static func truncate(_ path: String, to length: Int) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.posixError("cannot open", path) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(length)) == 0, fsync(fd) == 0 else { throw AtomicFile.posixError("cannot cut the torn line of", path) }
    }

    /// The `"boot"` generation a line ends with (the last key; a quoted reason cannot hold `"boot":`).
    static func bootGeneration(of line: Substring) -> UInt64? {
        guard line.hasSuffix("}") else { return nil }
        let body = line.dropLast()
        let digits = body.reversed().prefix { $0.isNumber }
        let key = ",\"boot\":"
        guard !digits.isEmpty, body.dropLast(digits.count).hasSuffix(key) else { return nil }
        return UInt64(String(digits.reversed()))
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

/// The report a slot-less kind's persisted state proves was made last: its version and the
/// statuses that say so (the first is the one to append when it is missing).
public struct ProvenReport: Sendable, Hashable {
    public var version: UInt64
    public var statuses: [String]

    public init(version: UInt64, statuses: [String]) {
        self.version = version
        self.statuses = statuses
    }

    /// From the kind's versions file, its failed mark and (certificates) whether a bundle waits
    /// for its first connection; nil when no update of the kind was ever accepted.
    public init?(kind: UpdateKind, versions: ArtifactVersions, failed: UInt64?, pendingInstalled: Bool) {
        guard kind != .firmware, versions.accepted > 0 else { return nil }
        version = versions.accepted
        if failed == versions.accepted, versions.accepted > versions.installed {
            statuses = kind == .certificates ? ["download-failed", "rolled-back"] : ["download-failed"]
        } else if versions.installed == versions.accepted {
            statuses = [kind == .certificates ? "committed" : "installed"]
        } else if pendingInstalled {
            statuses = ["installed"]
        } else {
            statuses = ["downloading"]
        }
    }
}
