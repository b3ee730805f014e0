// What `daqlink run` was asked to do, and what it reports at the end.
import DAQCore
import Experiment
import Journal
import OTADevice
#if canImport(Glibc)
import Glibc
#endif

/// Where frames come from.
public enum FrameSourceSpec: Sendable, Hashable {
    /// A recorded log, at original timing, ×N, or as fast as possible.
    case replay(path: String, speed: ReplaySpeed)
    /// Live SocketCAN interfaces.
    case socketCAN(interfaces: [String])

    /// Parses `replay:LOG` or `socketcan:IFACE[,IFACE…]`.
    public init?(argument: String, speed: ReplaySpeed) {
        if argument.hasPrefix("replay:") {
            let path = String(argument.dropFirst("replay:".count))
            guard !path.isEmpty else { return nil }
            self = .replay(path: path, speed: speed)
        } else if argument.hasPrefix("socketcan:") {
            let names = argument.dropFirst("socketcan:".count).split(separator: ",").map(String.init)
            guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else { return nil }
            self = .socketCAN(interfaces: names)
        } else {
            return nil
        }
    }
}

/// Settings of one acquisition run.
public struct AcquisitionOptions: Sendable {
    public var source: FrameSourceSpec
    public var journalDirectory: String
    /// Stop after this many seconds of source time (log time for replays, wall time live).
    public var duration: Double?
    /// The stream epoch of a new journal (an existing one keeps its own). Nil: a fresh one
    /// (`freshEpoch`), so a journal started afresh is never taken for the one before; set it to
    /// make replays byte-reproducible.
    public var epoch: UInt64?
    public var commit = GroupCommitPolicy.Configuration(maxPendingBytes: 256 << 10, maxDelayNanoseconds: 50_000_000)
    public var segmentSizeLimit = 8 << 20
    public var quotaBytes = 512 << 20
    /// SO_RCVBUF of each CAN socket.
    public var receiveBufferBytes = 4 << 20
    /// Bytes of recent records kept in RAM for the uplink.
    public var ringCapacity = 4 << 20
    /// Print a progress line on standard error (replays).
    public var progress = true
    /// Skip malformed log lines instead of stopping.
    public var lenient = false
    /// Also write each measurement as a streaming MDF4 file into this directory.
    public var mdfDirectory: String?
    /// Send the journal to a broker (nil: acquisition only).
    public var uplink: UplinkOptions?
    /// At the end of a replay or duration, wait up to this long for the collector to acknowledge
    /// everything (seconds).
    public var drainTimeout: Double = 0
    /// The OTA task (nil: no updates, no health check).
    public var ota: UpdateOptions?
    /// The device credentials the device was provisioned with (before any OTA rotation).
    public var provisionedCredentials: CredentialFiles?

    public init(source: FrameSourceSpec, journalDirectory: String) {
        self.source = source
        self.journalDirectory = journalDirectory
    }
}

/// Why a run ended.
public enum StopReason: String, Sendable {
    case endOfLog = "end of log"
    case duration = "duration reached"
    case signal = "stopped by signal"
    case journalFull = "JOURNAL FULL: acquisition stopped"
    case reboot = "rebooting into an update (or back from a failed trial)"
}

/// What a run did.
public struct AcquisitionSummary: Sendable {
    public var stopReason: StopReason = .endOfLog
    public var frames: UInt64 = 0
    public var decoded: UInt64 = 0
    public var unknownIDs: UInt64 = 0
    public var otherBus: UInt64 = 0
    /// Frames a classic bus-logging group could not log (CAN FD payloads over 8 bytes).
    public var busFramesNotLogged: UInt64 = 0
    /// RTR and error frames, which bus-logging groups do not log (counted only when there are such groups).
    public var busFramesNotData: UInt64 = 0
    /// Whether a group logs raw frames (then remote and error frames are "not bus-logged").
    public var busLogging = false
    /// Reads that found an interface down.
    public var interfaceDowns: UInt64 = 0
    /// Frames stamped before the one ahead of them, and gaps whose raster ticks were skipped.
    public var outOfOrder: UInt64 = 0
    public var timeJumps: UInt64 = 0
    public var skippedNanoseconds: Int64 = 0
    public var malformedLines = 0
    /// Per channel group: name, records, record bytes.
    public var groups: [(name: String, records: UInt64, bytes: UInt64)] = []
    public var journalBytesWritten: UInt64 = 0
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    public var kernelDrops: UInt64 = 0
    /// Frames still queued in the sockets at the stop, stamped before it, read then.
    public var framesReadAtStop: UInt64 = 0
    /// The journal was full with an uplink running: pauses, their time, and the records not kept.
    public var journalFull: (pauses: Int, seconds: Double, recordsNotKept: UInt64)?
    /// Raster ticks emitted more than one period late (live), and the lateness figures.
    public var lateTicks: UInt64 = 0
    /// Steps of the system clock seen while recording from a bus (`ClockBase`).
    public var clockSteps: UInt64 = 0
    public var tickLatenessP99: Int64 = 0
    public var tickLatenessMax: Int64 = 0
    public var elapsedSeconds: Double = 0
    public var recovery: String?
    public var uplink: UplinkCounters?
    /// Entries the collector had not acknowledged when the run ended waiting for it
    /// (`drainTimeout` passed): they stay in the journal for the next connection.
    public var undrained: Undrained?

    /// Entries the collector had not acknowledged when the run ended, and how the wait for them ended.
    public struct Undrained: Sendable {
        public enum Wait: Sendable {
            /// --drain-timeout ran out.
            case timedOut(Double)
            /// A signal ended the wait after some seconds of the timeout.
            case cutShort(after: Double, of: Double)
            /// No wait: stopped by a signal, for a reboot, or --drain-timeout 0.
            case none
        }
        public var first: UInt64
        public var last: UInt64
        public var wait: Wait
    }

    /// The human summary printed at the end of `daqlink run`.
    public var text: String {
        var lines: [String] = []
        lines.append("stopped: \(stopReason.rawValue) after \(String(format2(elapsedSeconds))) s")
        var frameLine = "frames: \(frames) (decoded \(decoded), unknown id \(unknownIDs), other bus \(otherBus)"
        if malformedLines > 0 { frameLine += ", malformed lines skipped \(malformedLines)" }
        if busFramesNotLogged > 0 { frameLine += ", CAN FD frames over 8 bytes not bus-logged \(busFramesNotLogged) (fd = true logs them)" }
        if busFramesNotData > 0 { frameLine += ", remote/error frames\(busLogging ? " not bus-logged" : "") \(busFramesNotData)" }
        if interfaceDowns > 0 { frameLine += ", interface found down \(interfaceDowns) times" }
        if framesReadAtStop > 0 { frameLine += ", still queued at the stop and read then \(framesReadAtStop)" }
        if outOfOrder > 0 { frameLine += ", stamped before the frame ahead of them \(outOfOrder) (taken at its time)" }
        if timeJumps > 0 {
            frameLine += ", time jumps over \(AcquisitionPipeline.longestRasterGap / 1_000_000_000) s \(timeJumps) "
                + "(\(format2(Double(skippedNanoseconds) / 1e9)) s in all without raster records)"
        }
        lines.append(frameLine + ")")
        for group in groups {
            lines.append("  group \"\(group.name)\": \(group.records) records, \(group.bytes) bytes")
        }
        let range = firstSequence.map { "seq \($0)…\(lastSequence ?? $0)" } ?? "no entries"
        lines.append("journal: \(journalBytesWritten) bytes written, \(range)")
        lines.append("drops: kernel \(kernelDrops); late ticks \(lateTicks) (p99 lateness \(tickLatenessP99 / 1000) µs, max \(tickLatenessMax / 1000) µs)"
                     + (clockSteps > 0 ? "; system clock steps \(clockSteps) (the measurement kept its time base)" : ""))
        if let full = journalFull {
            lines.append("journal full: acquisition paused \(full.pauses) time\(full.pauses == 1 ? "" : "s"), \(format2(full.seconds)) s "
                         + "in all; \(full.recordsNotKept) records not kept (the quota held only entries the collector had not "
                         + "acknowledged)")
        }
        if let recovery { lines.append("recovery: \(recovery)") }
        if let uplink {
            let ratio = uplink.rawBytes > 0 ? Double(uplink.wireBytes) / Double(uplink.rawBytes) : 0
            lines.append("uplink: \(uplink.batches) batches, \(uplink.rawBytes) journal bytes as \(uplink.wireBytes) wire bytes "
                         + "(\(format2(ratio))×), acknowledged up to \(uplink.acknowledged), "
                         + "\(counted(uplink.sessions, "session")) of \(counted(uplink.connects, "connect attempt")), "
                         + "\(counted(uplink.linksLost, "link lost", plural: "links lost")), \(counted(uplink.resendRequests, "resend request"))"
                         + (uplink.lostEntries > 0 ? ", \(uplink.lostEntries) entries sent as 'lost' (unreadable or deleted here)" : "")
                         + (uplink.refusedBatches > 0 ? ", \(uplink.refusedBatches) batch\(uplink.refusedBatches == 1 ? "" : "es") refused by the broker" : "")
                         + (uplink.undeliveredBatches > 0
                            ? ", \(uplink.undeliveredBatches) batch\(uplink.undeliveredBatches == 1 ? "" : "es") with no subscriber at the broker (dropped there; they go again once the collector asks)" : ""))
            let codings = zip(UplinkCounters.codingNames, uplink.partsByCoding).map { "\($0) \($1)" }.joined(separator: ", ")
            var drain = ""
            if let first = uplink.firstPublishAt, let drained = uplink.drainedAt, drained >= first {
                drain = String(format: "; first publish to last ack %.3f s", Double(drained - first) / 1e9)
                if let cpuFirst = uplink.firstPublishCPU, let cpuDrained = uplink.drainedCPU, cpuDrained >= cpuFirst {
                    drain += String(format: "; CPU in between %.3f s", Double(cpuDrained - cpuFirst) / 1e9)
                }
            }
            if let link = uplink.linkBytesPerSecond { drain += String(format: "; link ≈ %.1f MB/s", link / 1e6) }
            lines.append("uplink parts: \(codings)\(drain)")
            if let undrained {
                let how: String
                switch undrained.wait {
                case .timedOut(let timeout): how = "not drained within --drain-timeout \(timeout) s"
                case .cutShort(let after, let timeout):
                    how = "not drained: a signal ended the wait for acks after \(format2(after)) s (of --drain-timeout \(timeout) s)"
                case .none: how = "not drained (no wait for acks: \(stopReason.rawValue))"
                }
                lines.append("uplink: \(how): entries \(undrained.first)…\(undrained.last) stay in the journal and go with the next connection")
            }
            for alarm in uplink.alarms { lines.append("ALARM: \(alarm)") }
            if uplink.alarmsNotKept > 0 { lines.append("ALARM: \(uplink.alarmsNotKept) more alarms (not kept; see the log)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// "1 session", "2 sessions".
func counted(_ count: UInt64, _ noun: String, plural: String? = nil) -> String {
    "\(count) \(count == 1 ? noun : plural ?? noun + "s")"
}

func format2(_ value: Double) -> String {
    let scaled = (value * 100).rounded() / 100
    return "\(scaled)"
}

extension AcquisitionOptions {
    /// A stream epoch for a journal created now: the Unix time in seconds, then six random digits
    /// (two journals created in one second, or on boards whose clock starts at the same time
    /// without an RTC, still differ).
    public static func freshEpoch() -> UInt64 {
        UInt64(max(1, time(nil))) * 1_000_000 + UInt64.random(in: 0..<1_000_000)
    }
}
