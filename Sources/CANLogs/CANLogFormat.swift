// Which log format a file is in: by extension, else by sniffing its first meaningful line.
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
    /// Standard input (`-`) and unknown extensions are sniffed from `head` (see `sniff`).
    public static func detect(fileName: String, head: [UInt8]) -> CANLogFormat? {
        let lower = fileName.lowercased()
        if lower.hasSuffix(".asc") { return .asc }
        if lower.hasSuffix(".trc") { return .trc }
        if lower.hasSuffix(".log") || lower.hasSuffix(".candump") { return .candump }
        return head.withUnsafeBufferPointer { sniff($0) }
    }

    /// The format of a log from its content: the first non-blank line decides.
    /// - `;…` (a TRC header or comment) or `12) …` (a headerless TRC 1.x line) → TRC;
    /// - `(SECONDS…` → candump;
    /// - `date`, `base`, `//`, `Begin Triggerblock`, `[no] internal events logged`, or
    ///   `SECONDS.FRACTION …` (a headerless ASC event: a frame, `Start of measurement`) → ASC.
    /// Nil when the first line is none of these or no complete line is in `head` yet and it is short.
    public static func sniff(_ head: UnsafeBufferPointer<UInt8>) -> CANLogFormat? {
        var start = 0
        // A UTF-8 byte order mark, as Windows tools write it.
        if head.count >= 3, head[0] == 0xEF, head[1] == 0xBB, head[2] == 0xBF { start = 3 }
        while start < head.count {
            var end = start
            while end < head.count, head[end] != 0x0A { end += 1 }
            let line = UnsafeBufferPointer(rebasing: head[start..<end])
            var cursor = ByteCursor(line)
            if let first = cursor.token(), !(first.count == 1 && first.first == 0x0D) {
                return classify(first: first, cursor: &cursor)
            }
            start = end + 1
        }
        return nil
    }

    private static func classify(first: LogToken, cursor: inout ByteCursor) -> CANLogFormat? {
        guard let lead = first.first else { return nil }
        if lead == UInt8(ascii: ";") { return .trc }
        if lead == UInt8(ascii: "(") { return .candump }
        if LogFields.hasPrefix(first, "//") { return .asc }
        for keyword: StaticString in ["date", "base", "begin", "internal", "no"] where LogFields.matches(first, keyword) {
            return .asc
        }
        if first.count > 1, first.last == UInt8(ascii: ")"), LogFields.isDigits(first.dropLast()) { return .trc }
        // An ASC event: seconds with a fraction, then anything (a channel, CANFD, `Start of
        // measurement`); TRC lines start with a message number, candump's with '('.
        if LogFields.fixedPoint(first, unitNanoseconds: 1_000_000_000) != nil,
           first.contains(UInt8(ascii: ".")), cursor.token() != nil {
            return .asc
        }
        return nil
    }
}
