// One OTA status report as the device sends it on `devices/<id>/ota/status` and the collector
// keeps it in the device's update history: a single JSON object per message (pure encoding).
import DAQCore

/// A state change of an update, numbered per device so the collector can drop repeats.
public struct UpdateStatus: Sendable, Hashable {
    /// Increases by one per report of this device (persisted in the outbox).
    public var sequence: UInt64
    /// Which artifact kind.
    public var kind: UpdateKind
    /// Stable state name: downloading, verified, installed, trial-boot, committed, rolled-back,
    /// download-failed, refused, applied.
    public var status: String
    /// The release concerned.
    public var version: UInt64
    /// The firmware slot concerned (firmware only).
    public var slot: Slot?
    /// Why (failures, refusals, rollbacks).
    public var reason: String?
    /// Unix seconds when it happened (device clock).
    public var time: Int64
    /// For a firmware report: the generation of the boot state whose transition it tells (the
    /// device finds by it a report a power cut took between the state and the report).
    public var bootGeneration: UInt64?
    /// The outbox that numbered it (random, made with the outbox): a device whose outbox starts
    /// again (a new card, a wiped update directory) numbers from 1 again, and the collector keeps
    /// the numbers of each outbox apart.
    public var outbox: String?
    /// For a certificate renewal's report (version 0: a renewal is no release): the renewed
    /// certificate's serial (hex), by which a start finds a report a power cut took.
    public var serial: String?

    /// A report from its fields.
    public init(sequence: UInt64, kind: UpdateKind, status: String, version: UInt64, slot: Slot? = nil, reason: String? = nil, time: Int64,
                bootGeneration: UInt64? = nil, outbox: String? = nil, serial: String? = nil) {
        self.sequence = sequence
        self.kind = kind
        self.status = status
        self.version = version
        self.slot = slot
        self.reason = reason
        self.time = time
        self.bootGeneration = bootGeneration
        self.outbox = outbox
        self.serial = serial
    }

    /// One line of JSON, keys in a fixed order, no trailing newline.
    public func json() -> String {
        var text = "{\"seq\":\(sequence),\"time\":\(time),\"kind\":\"\(kind.rawValue)\",\"status\":\(JSONText.quoted(status)),\"version\":\(version)"
        if let slot { text += ",\"slot\":\"\(slot.rawValue)\"" }
        if let serial { text += ",\"serial\":\(JSONText.quoted(serial))" }
        if let reason { text += ",\"reason\":\(JSONText.quoted(reason))" }
        if let outbox { text += ",\"outbox\":\(JSONText.quoted(outbox))" }
        if let bootGeneration { text += ",\"boot\":\(bootGeneration)" }
        return text + "}"
    }
}
