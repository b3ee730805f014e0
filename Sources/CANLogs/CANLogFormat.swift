// Which log format a file is in: by extension, else by sniffing its first bytes.
import DAQCore

/// The recorded-log formats DAQLink reads.
public enum CANLogFormat: String, Sendable, CaseIterable {
    /// can-utils `candump -l`: `(1700000000.123456) can0 123#DEADBEEF`.
    case candump
    /// Vector ASCII log (`.asc`).
    case asc
    /// PEAK PCAN trace (`.trc`), versions 1.0–2.1.
    case trc

    /// The format of `fileName` (by extension), else of its first bytes; nil when unknown.
    public static func detect(fileName: String, head: [UInt8]) -> CANLogFormat? {
        let lower = fileName.lowercased()
        if lower.hasSuffix(".asc") { return .asc }
        if lower.hasSuffix(".trc") { return .trc }
        if lower.hasSuffix(".log") || lower.hasSuffix(".candump") { return .candump }
        let text = String(decoding: head.prefix(4096), as: UTF8.self)
        if text.hasPrefix(";$FILEVERSION") || text.hasPrefix(";###") || text.contains("\n;$FILEVERSION") { return .trc }
        if text.hasPrefix("date ") || text.contains("\nbase ") || text.hasPrefix("base ") { return .asc }
        if text.hasPrefix("(") { return .candump }
        return nil
    }
}
