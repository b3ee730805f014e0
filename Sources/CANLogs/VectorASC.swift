// Reader for Vector ASCII logs (`.asc`): header state (number base, absolute/relative timestamps)
// plus classic CAN, CAN FD and error-frame event lines. Every other timestamped event is skipped.

import DAQCore

/// Per-file state of an ASC log and the parser of its lines.
///
/// Lines read (Vector "ASC format" as CANoe writes it; python-can's reader is the oracle):
/// - header: `date …`, `base hex|dec [timestamps absolute|relative]`, `[no] internal events logged`,
///   `// version …`, `Begin Triggerblock …`, `End TriggerBlock`, comments → no frame; other text
///   before the first event or trigger block is header text, after it malformed (field `event`);
/// - `T CH ID Rx|Tx d DLC B0 … [Length = … BitCount = … ID = …]` classic data (id suffix `x` = 29-bit);
/// - `T CH ID Rx|Tx r [DLC] …` classic remote request;
/// - `T CH ErrorFrame …` and `T CANFD CH DIR ErrorFrame …` → error frame;
/// - `T CANFD CH DIR ID [NAME] BRS ESI DLC LEN B0 … [DURATION MSGLEN FLAGS CRC …]`.
/// Other timestamped events (`Start of measurement`, statistics, chip status, J1939, `TxRq`) → no frame.
struct VectorASCReader: Sendable {
    var base: LogNumberBase = .hex
    /// `timestamps relative`: each event's time is an offset from the previous event.
    var relativeTimestamps = false
    /// The absolute time of the previous event, for relative mode.
    var previousEvent: Int64 = 0
    /// A trigger block or an event came before: from then on, a line that is no event, comment or
    /// End TriggerBlock is malformed (before, it is header text).
    var inEvents = false

    // Vector flag bits of the CANFD line's Flags field (the same bits python-can's writer sets).
    static let flagRemote: UInt32 = 0x0010
    static let flagEDL: UInt32 = 0x1000

    mutating func frame(fromLine line: UnsafeBufferPointer<UInt8>, number: Int, file: String) throws(DAQError) -> CANFrame? {
        var cursor = ByteCursor(line)
        guard let first = cursor.token() else { return nil }

        if LogFields.hasPrefix(first, "//") { return nil }
        if LogFields.matches(first, "base") {
            try readBase(&cursor, number: number, file: file)
            return nil
        }
        if LogFields.matches(first, "begin") {
            inEvents = true
            // A new trigger block restarts the relative clock at its own start.
            previousEvent = 0
            return nil
        }
        guard let lead = first.first, lead &- 0x30 < 10 else {
            // `date …`, `[no] internal events logged`, `End TriggerBlock`: header or trailer text.
            for keyword: StaticString in ["date", "internal", "no", "end"] where LogFields.matches(first, keyword) {
                return nil
            }
            // Before the events, other header text is passed over (writers other than CANoe put
            // their own there); a file with no event at all is named by its reader (`LogFrameSource`).
            // Among the events, any other line is refused, not passed over: a damaged line read as
            // fewer frames and exit 0 (python-can passes over it).
            guard inEvents else { return nil }
            throw .malformed("'\(LogFields.text(first))' starts no line of an ASC log's events (each starts with its "
                             + "timestamp in seconds; between them only comments (//) and End TriggerBlock)",
                             file: file, line: number, field: "event")
        }
        guard let raw = LogFields.fixedPoint(first, unitNanoseconds: 1_000_000_000) else {
            // Header text that starts with a digit ("2024-01-15 export"), before the events.
            guard inEvents else { return nil }
            throw .malformed("expected a timestamp in seconds, found '\(LogFields.text(first))'",
                             file: file, line: number, field: "timestamp")
        }
        inEvents = true
        // Every timestamped event moves the relative clock, frames or not (Vector: "relative to the
        // preceding event").
        let time: Int64
        if relativeTimestamps {
            let (sum, overflow) = previousEvent.addingReportingOverflow(raw)
            guard !overflow else {
                throw .malformed("the relative timestamps add up past 292 years, the longest time this reader holds",
                                 file: file, line: number, field: "timestamp")
            }
            time = sum
            previousEvent = time
        } else {
            time = raw
        }
        let timestamp = Timestamp(nanoseconds: time)

        guard let second = cursor.token() else { return nil }
        if LogFields.matches(second, "canfd") {
            return try fdFrame(&cursor, at: timestamp, number: number, file: file)
        }
        guard LogFields.isDigits(second) else { return nil }   // `Start of measurement`, `SV:`, `CAN 1 Status:` …
        let interface = try Self.interface(second, number: number, file: file)

        guard let idToken = cursor.token() else {
            throw .malformed("the line ends after the channel; expected a CAN id or ErrorFrame", file: file,
                             line: number, field: "id")
        }
        if LogFields.hasPrefix(idToken, "errorframe") {
            return LogFields.busErrorFrame(at: timestamp, interface: interface)
        }
        // A frame line has its direction as the fourth field; other channel events
        // (`Statistic:`, `J1939TP …`) do not.
        guard let direction = cursor.token() else {
            // `T CH ID` and nothing more: a frame line cut short (no other event is an id alone).
            if case .some = try? identifier(idToken, number: number, file: file) {
                throw .malformed("the line ends after the id '\(LogFields.text(idToken))'; expected Rx or Tx, "
                                 + "then 'd' DLC and the data bytes", file: file, line: number, field: "direction")
            }
            return nil
        }
        guard let received = Self.direction(direction) else { return nil }
        let (id, extended) = try identifier(idToken, number: number, file: file)
        var frame = CANFrame(timestamp: timestamp, interface: interface, id: id, isExtended: extended,
                             isReceived: received)

        guard let type = cursor.token() else {
            throw .malformed("expected 'd' (data) or 'r' (remote) after the direction", file: file, line: number,
                             field: "type")
        }
        if LogFields.matches(type, "r") {
            frame.kind = .remote
            // The requested DLC is optional (CANoe before 8.5 did not write it).
            if let dlcToken = cursor.token(), let dlc = LogFields.unsigned(dlcToken, base: base) {
                guard dlc <= 15 else {
                    throw .malformed("remote DLC \(dlc) above 15", file: file, line: number, field: "dlc")
                }
                frame.remoteLength = UInt8(dlc)
            }
            return frame
        }
        guard LogFields.matches(type, "d") else {
            throw .malformed("expected 'd' (data) or 'r' (remote), found '\(LogFields.text(type))'",
                             file: file, line: number, field: "type")
        }
        let dlc = try dlc(cursor.token(), number: number, file: file)
        // Classic CAN carries at most 8 bytes whatever the DLC says (DLC 9…15 mean 8).
        let count = CANFrame.length(forDLC: Int(dlc), fd: false)
        for index in 0..<count {
            frame.data.append(try LogFields.dataByte(cursor.token(), index: index, base: base, expected: count,
                                                     file: file, line: number))
        }
        return frame
    }

    /// `base hex|dec [timestamps absolute|relative]`.
    private mutating func readBase(_ cursor: inout ByteCursor, number: Int, file: String) throws(DAQError) {
        guard let baseToken = cursor.token() else {
            throw .malformed("expected 'hex' or 'dec' after 'base'", file: file, line: number, field: "base")
        }
        if LogFields.matches(baseToken, "hex") {
            base = .hex
        } else if LogFields.matches(baseToken, "dec") {
            base = .dec
        } else {
            throw .malformed("expected 'hex' or 'dec', found '\(LogFields.text(baseToken))'", file: file, line: number,
                             field: "base")
        }
        guard let keyword = cursor.token() else { return }
        guard LogFields.matches(keyword, "timestamps"), let mode = cursor.token() else {
            throw .malformed("expected 'timestamps absolute|relative'", file: file, line: number, field: "timestamps")
        }
        if LogFields.matches(mode, "absolute") {
            relativeTimestamps = false
        } else if LogFields.matches(mode, "relative") {
            relativeTimestamps = true
        } else {
            throw .malformed("expected 'absolute' or 'relative', found '\(LogFields.text(mode))'", file: file,
                             line: number, field: "timestamps")
        }
    }

    /// `T CANFD CH DIR ID [NAME] BRS ESI DLC LEN B0 … [DURATION MSGLEN FLAGS …]` (after `CANFD`).
    private func fdFrame(_ cursor: inout ByteCursor, at timestamp: Timestamp, number: Int, file: String) throws(DAQError) -> CANFrame? {
        guard let channelToken = cursor.token() else {
            throw .malformed("expected a channel number", file: file, line: number, field: "channel")
        }
        let interface = try Self.interface(channelToken, number: number, file: file)
        guard let directionToken = cursor.token() else {
            throw .malformed("expected Rx or Tx", file: file, line: number, field: "direction")
        }
        guard let idToken = cursor.token() else {
            throw .malformed("expected a CAN id", file: file, line: number, field: "id")
        }
        if LogFields.hasPrefix(idToken, "errorframe") {
            return LogFields.busErrorFrame(at: timestamp, interface: interface)
        }
        // `TxRq` (transmit request) and other non-bus events carry no frame.
        guard let received = Self.direction(directionToken) else { return nil }
        let (id, extended) = try identifier(idToken, number: number, file: file)

        // The symbolic name is optional; BRS is always a single digit, so a digit here means no name.
        guard var brsToken = cursor.token() else {
            throw .malformed("expected BRS (0 or 1)", file: file, line: number, field: "BRS")
        }
        if !LogFields.isDigits(brsToken) {
            guard let next = cursor.token() else {
                throw .malformed("expected BRS (0 or 1)", file: file, line: number, field: "BRS")
            }
            brsToken = next
        }
        let brs = try Self.bit(brsToken, field: "BRS", number: number, file: file)
        guard let esiToken = cursor.token() else {
            throw .malformed("expected ESI (0 or 1)", file: file, line: number, field: "ESI")
        }
        let esi = try Self.bit(esiToken, field: "ESI", number: number, file: file)
        let dlc = try dlc(cursor.token(), number: number, file: file)
        // The data length is decimal in both bases.
        guard let lengthToken = cursor.token(), let length = LogFields.unsigned(lengthToken, base: .dec, limit: 64) else {
            throw .malformed("expected a data length 0…64", file: file, line: number, field: "data length")
        }
        var data = CANPayload()
        for index in 0..<Int(length) {
            data.append(try LogFields.dataByte(cursor.token(), index: index, base: base, expected: Int(length),
                                               file: file, line: number))
        }
        // Trailing fields: message duration, message length, flags (hex), CRC, bit timings.
        var flags: UInt32?
        if cursor.token() != nil, cursor.token() != nil, let flagsToken = cursor.token() {
            flags = LogFields.unsigned(flagsToken, base: .hex)
        }

        var frame = CANFrame(timestamp: timestamp, interface: interface, id: id, isExtended: extended,
                             isReceived: received)
        // A remote request: the flags say so, or (no flags) a zero data length with a non-zero DLC,
        // which no data frame can have.
        let remote = flags.map { $0 & Self.flagRemote != 0 } ?? (length == 0 && dlc > 0)
        if remote {
            frame.kind = .remote
            frame.remoteLength = UInt8(dlc)
            return frame
        }
        // The EDL flag tells FD from a classic frame logged in the CANFD form; without flags the
        // CANFD keyword is all we have.
        frame.isFD = flags.map { $0 & Self.flagEDL != 0 } ?? true
        if length > 8 { frame.isFD = true }
        if frame.isFD {
            guard CANFrame.fdLengths.contains(Int(length)) else {
                throw .malformed("\(length) is not a CAN FD data length", file: file, line: number, field: "data length")
            }
            frame.bitRateSwitch = brs
            frame.errorStateIndicator = esi
        }
        frame.data = data
        return frame
    }

    /// The DLC 0…15 in the file's base: `d 15` under `base hex` is 0x15 = 21, which the error says.
    private func dlc(_ token: LogToken?, number: Int, file: String) throws(DAQError) -> UInt32 {
        guard let token else {
            throw .malformed("expected a DLC 0…15, found the end of the line", file: file, line: number, field: "dlc")
        }
        if let dlc = LogFields.unsigned(token, base: base, limit: 15) { return dlc }
        let found = LogFields.text(token)
        guard let value = LogFields.unsigned(token, base: base) else {
            throw .malformed("expected a \(base.name) DLC 0…15, found '\(found)'", file: file, line: number, field: "dlc")
        }
        let reading = base == .hex ? "'\(found)', which is hex (the log says 'base hex'): 0x\(found) = \(value)" : "\(value)"
        throw .malformed("expected a DLC 0…15, found \(reading)", file: file, line: number, field: "dlc")
    }

    /// `123` or `1ABCDEF0x` (trailing `x` = 29-bit), in the file's base.
    private func identifier(_ token: LogToken, number: Int, file: String) throws(DAQError) -> (UInt32, Bool) {
        var digits = token
        var extended = false
        if let last = token.last, last | 0x20 == UInt8(ascii: "x") {
            extended = true
            digits = token.dropLast()
        }
        let limit = extended ? CANFrame.extendedMask : CANFrame.standardMask
        guard let id = LogFields.unsigned(digits, base: base, limit: limit) else {
            throw .malformed("expected \(extended ? "a 29" : "an 11")-bit \(base.name) CAN id, found '\(LogFields.text(token))'",
                             file: file, line: number, field: "id")
        }
        return (id, extended)
    }

    /// Rx → received, Tx → sent, anything else (`TxRq`) → not a frame on the bus.
    private static func direction(_ token: LogToken) -> Bool? {
        if LogFields.matches(token, "rx") { return true }
        if LogFields.matches(token, "tx") { return false }
        return nil
    }

    private static func interface(_ token: LogToken, number: Int, file: String) throws(DAQError) -> String {
        guard let channel = LogFields.unsigned(token, base: .dec), channel >= 1, channel <= 255 else {
            throw .malformed("expected a channel number 1…255, found '\(LogFields.text(token))'", file: file,
                             line: number, field: "channel")
        }
        return LogFields.interface(channel: channel)
    }

    private static func bit(_ token: LogToken, field: String, number: Int, file: String) throws(DAQError) -> Bool {
        if LogFields.matches(token, "0") { return false }
        if LogFields.matches(token, "1") { return true }
        throw .malformed("expected 0 or 1, found '\(LogFields.text(token))'", file: file, line: number, field: field)
    }
}
