// Reader for PEAK PCAN trace files (`.trc`), versions 1.0, 1.1, 1.2, 1.3, 2.0 and 2.1: the `;$` header
// (version, start time, column layout) and each version's message lines.

import DAQCore

/// Per-file state of a TRC trace and the parser of its lines.
///
/// Layouts (PEAK "CAN TRC File Format"; `N)` = message number):
/// - 1.0: `N) OFFSET ID DLC B0 …` (`RTR` / `ERROR` in place of data; id `FFFFFFFF` = bus warning);
/// - 1.1: `N) OFFSET TYPE ID DLC B0 …` (TYPE Rx, Tx, Error, Warng);
/// - 1.2: `N) OFFSET BUS TYPE ID DLC B0 …`;
/// - 1.3: `N) OFFSET BUS TYPE ID - DLC B0 …`;
/// - 2.x: the columns named by `;$COLUMNS=` (default 2.0 `N,O,T,I,d,l,D`, 2.1 `N,O,T,B,I,d,R,L,D`),
///   TYPE DT, FD, FB, FE, BI, RR (frames), ER (error frame), ST, EC, EV (status, no frame).
/// OFFSET is in milliseconds from `;$STARTTIME` (days since 1899-12-30, UTC), which is added from
/// version 1.1 on; 1.0 files have no start time and report bare offsets.
struct PCANTRCReader: Sendable {
    enum Version: Sendable { case v1_0, v1_1, v1_2, v1_3, v2_0, v2_1 }

    var version: Version = .v1_0
    /// Whether a `;$FILEVERSION` line set `version`; without one the file is read as 1.0, which
    /// errors then say (a 1.1+ trace that lost its header fails on its columns, not on its syntax).
    var versionDeclared = false
    /// `;$STARTTIME` in nanoseconds since the Unix epoch (0 when absent).
    var startTime: Int64 = 0
    /// The 2.x column letters; nil until `;$COLUMNS` is read (then the version's default applies).
    var columns: [UInt8]?

    mutating func frame(fromLine line: UnsafeBufferPointer<UInt8>, number: Int, file: String) throws(DAQError) -> CANFrame? {
        var cursor = ByteCursor(line)
        cursor.skipSpaces()
        if cursor.atEnd { return nil }
        if cursor.take(UInt8(ascii: ";")) {
            if cursor.take(UInt8(ascii: "$")) { try header(&cursor, number: number, file: file) }
            return nil
        }
        switch version {
        case .v1_0 where !versionDeclared:
            do throws(DAQError) {
                return try versionOneFrame(&cursor, number: number, file: file)
            } catch {
                var error = error
                error.message += " (read as TRC version 1.0 because no ;$FILEVERSION line came before this one)"
                throw error
            }
        case .v1_0, .v1_1, .v1_2, .v1_3: return try versionOneFrame(&cursor, number: number, file: file)
        case .v2_0, .v2_1: return try versionTwoFrame(&cursor, number: number, file: file)
        }
    }

    // MARK: Header

    private mutating func header(_ cursor: inout ByteCursor, number: Int, file: String) throws(DAQError) {
        let rest = cursor.rest
        guard let equals = rest.firstIndex(of: UInt8(ascii: "=")) else { return }
        let key = rest[rest.startIndex..<equals]
        var valueCursor = ByteCursor(UnsafeBufferPointer(rebasing: rest[(equals + 1)...]))
        let value = valueCursor.token() ?? rest[equals..<equals]
        if LogFields.matches(key, "fileversion") {
            versionDeclared = true
            switch LogFields.text(value) {
            case "1.0": version = .v1_0
            case "1.1": version = .v1_1
            case "1.2": version = .v1_2
            case "1.3": version = .v1_3
            case "2.0": version = .v2_0
            case "2.1": version = .v2_1
            default:
                throw DAQError(.unsupported, "unsupported TRC file version '\(LogFields.text(value))'",
                               at: InputLocation(file: file, line: number, field: "FILEVERSION"))
            }
        } else if LogFields.matches(key, "starttime") {
            // Up to 2262-04-11, the last instant Int64 nanoseconds since 1970 hold (it trapped past it).
            guard let days = Double(LogFields.text(value)), days.isFinite, days >= 0, days < Self.latestStartDays else {
                throw .malformed("expected days since 1899-12-30 (before 2262-04-11, \(Int(Self.latestStartDays))), found '\(LogFields.text(value))'",
                                 file: file, line: number, field: "STARTTIME")
            }
            startTime = Self.unixNanoseconds(oleDays: days)
        } else if LogFields.matches(key, "columns") {
            var letters: [UInt8] = []
            for byte in value where byte != UInt8(ascii: ",") { letters.append(byte) }
            guard let last = letters.last, last == UInt8(ascii: "D") || !letters.contains(UInt8(ascii: "D")),
                  letters.contains(UInt8(ascii: "T")), letters.contains(UInt8(ascii: "O")) else {
                throw .malformed("expected a column list with O and T and with D last, found '\(LogFields.text(value))'",
                                 file: file, line: number, field: "COLUMNS")
            }
            columns = letters
        }
    }

    /// STARTTIME is an OLE Automation date: a double counting days (and the fraction of a day) since
    /// 1899-12-30 00:00 UTC. It is decoded the way Python's `timedelta(days=)` does (whole days, whole
    /// seconds, then microseconds rounded half-even) so that sub-microsecond noise of the double rounds
    /// exactly as in python-can, the oracle.
    /// The OLE date of 2262-04-10 (a day inside Int64 nanoseconds since 1970).
    static let latestStartDays = 132_318.0

    static func unixNanoseconds(oleDays days: Double) -> Int64 {
        let wholeDays = days.rounded(.towardZero)
        let daySeconds = (days - wholeDays) * 86_400.0
        let wholeSeconds = daySeconds.rounded(.towardZero)
        var micros = Int64(((daySeconds - wholeSeconds) * 1e6).rounded(.toNearestOrEven))
        var seconds = (Int64(wholeDays) - 25_569) * 86_400 + Int64(wholeSeconds)
        if micros >= 1_000_000 { seconds += 1; micros -= 1_000_000 }
        return seconds * 1_000_000_000 + micros * 1_000
    }

    // MARK: Version 1.x

    private func versionOneFrame(_ cursor: inout ByteCursor, number: Int, file: String) throws(DAQError) -> CANFrame? {
        guard let index = cursor.token(), index.last == UInt8(ascii: ")") else {
            throw .malformed("expected a message number like '12)'", file: file, line: number, field: "message number")
        }
        _ = index
        let timestamp = try offset(cursor.token(), number: number, file: file)

        var interface = "can0"
        if version == .v1_2 || version == .v1_3 {
            interface = try bus(cursor.token(), number: number, file: file)
        }
        var received = true
        var errorLine = false
        if version != .v1_0 {
            guard let type = cursor.token() else {
                throw .malformed("expected the message type (Rx, Tx, Error, Warng)", file: file, line: number, field: "type")
            }
            if LogFields.matches(type, "rx") {
                received = true
            } else if LogFields.matches(type, "tx") {
                received = false
            } else if LogFields.matches(type, "error") {
                errorLine = true
            } else if LogFields.matches(type, "warng") {
                return nil   // a bus warning (light / heavy / passive), not a frame
            } else {
                throw .malformed("unknown message type '\(LogFields.text(type))'", file: file, line: number, field: "type")
            }
        }
        guard let idToken = cursor.token() else {
            throw .malformed("expected a CAN id", file: file, line: number, field: "id")
        }
        // Version 1.0 marks bus warnings with the id FFFFFFFF.
        if version == .v1_0 && LogFields.matches(idToken, "ffffffff") { return nil }
        if version == .v1_3 { _ = cursor.token() }   // reserved column, always '-'
        let dlcToken = cursor.token()
        guard let dlcToken, let dlc = LogFields.unsigned(dlcToken, base: .dec, limit: 8) else {
            throw .malformed("expected a DLC 0…8, found \(dlcToken.map { "'\(LogFields.text($0))'" } ?? "the end of the line")",
                             file: file, line: number, field: "dlc")
        }
        var dataCursor = cursor
        let marker = dataCursor.token()
        if errorLine || marker.map({ LogFields.matches($0, "error") }) == true {
            return LogFields.busErrorFrame(at: timestamp, interface: interface)
        }
        let (id, extended) = try Self.identifier(idToken, number: number, file: file)
        var frame = CANFrame(timestamp: timestamp, interface: interface, id: id, isExtended: extended,
                             isReceived: received)
        if let marker, LogFields.matches(marker, "rtr") {
            frame.kind = .remote
            frame.remoteLength = UInt8(dlc)
            return frame
        }
        for index in 0..<Int(dlc) {
            frame.data.append(try LogFields.dataByte(cursor.token(), index: index, base: .hex, expected: Int(dlc),
                                                     file: file, line: number))
        }
        return frame
    }

    // MARK: Version 2.x

    private func versionTwoFrame(_ cursor: inout ByteCursor, number: Int, file: String) throws(DAQError) -> CANFrame? {
        let layout = columns ?? Array((version == .v2_0 ? "NOTIdlD" : "NOTBIdRLD").utf8)
        var timestamp = Timestamp(nanoseconds: startTime)
        var interface = "can0"
        var idToken: LogToken?
        var received = true
        // Length columns are read after the type: status lines (ST, EC, EV, ER) fill them differently.
        var lengthToken: LogToken?
        var dlcToken: LogToken?
        var type: LogToken?
        for column in layout {
            if column == UInt8(ascii: "D") { break }   // data runs to the end of the line
            let token = cursor.token()
            switch column {
            case UInt8(ascii: "O"): timestamp = try offset(token, number: number, file: file)
            case UInt8(ascii: "T"):
                type = token
                if let token, LogFields.matches(token, "st") || LogFields.matches(token, "ec")
                    || LogFields.matches(token, "ev") {
                    return nil   // hardware status, error counter change, event: no frame
                }
            case UInt8(ascii: "B"): interface = try bus(token, number: number, file: file)
            case UInt8(ascii: "I"): idToken = token
            case UInt8(ascii: "d"): received = !(token.map { LogFields.matches($0, "tx") } ?? false)
            case UInt8(ascii: "l"): lengthToken = token
            case UInt8(ascii: "L"): dlcToken = token
            default:
                // N (message number), R (reserved) and columns this reader does not use.
                guard token != nil else {
                    throw .malformed("line ends before column '\(Character(Unicode.Scalar(column)))'", file: file,
                                     line: number, field: "columns")
                }
            }
        }
        guard let type else {
            throw .malformed("expected the message type", file: file, line: number, field: "type")
        }
        var frame = CANFrame(timestamp: timestamp, interface: interface, id: 0, isReceived: received)
        switch LogFields.text(type) {
        case "DT": break
        case "FD": frame.isFD = true
        case "FB": frame.isFD = true; frame.bitRateSwitch = true
        case "FE": frame.isFD = true; frame.bitRateSwitch = true; frame.errorStateIndicator = true
        case "BI": frame.isFD = true; frame.errorStateIndicator = true
        case "RR": frame.kind = .remote
        case "ER": return LogFields.busErrorFrame(at: timestamp, interface: interface)
        default:
            throw .malformed("unknown message type '\(LogFields.text(type))'", file: file, line: number, field: "type")
        }
        var length: Int?
        var dlc: Int?
        if layout.contains(UInt8(ascii: "l")) {
            guard let lengthToken, let value = LogFields.unsigned(lengthToken, base: .dec, limit: 64) else {
                throw .malformed("expected a data length 0…64", file: file, line: number, field: "data length")
            }
            length = Int(value)
        } else if layout.contains(UInt8(ascii: "L")) {
            guard let dlcToken, let value = LogFields.unsigned(dlcToken, base: .dec, limit: 15) else {
                throw .malformed("expected a DLC 0…15", file: file, line: number, field: "dlc")
            }
            dlc = Int(value)
        }
        guard let idToken else {
            throw .malformed("expected a CAN id", file: file, line: number, field: "id")
        }
        (frame.id, frame.isExtended) = try Self.identifier(idToken, number: number, file: file)

        let byteCount: Int
        if let length {
            byteCount = length
        } else if let dlc {
            byteCount = CANFrame.length(forDLC: dlc, fd: frame.isFD)
        } else {
            throw .malformed("the column list has neither L (DLC) nor l (length)", file: file, line: number,
                             field: "columns")
        }
        if frame.kind == .remote {
            frame.remoteLength = UInt8(dlc ?? CANFrame.dlc(forLength: byteCount))
            return frame
        }
        if frame.isFD ? !CANFrame.fdLengths.contains(byteCount) : byteCount > 8 {
            throw .malformed("\(byteCount) data bytes do not fit a \(frame.isFD ? "CAN FD" : "classic CAN") frame",
                             file: file, line: number, field: "data length")
        }
        for index in 0..<byteCount {
            frame.data.append(try LogFields.dataByte(cursor.token(), index: index, base: .hex, expected: byteCount,
                                                     file: file, line: number))
        }
        return frame
    }

    // MARK: Fields

    /// The time offset in milliseconds, plus the start time from version 1.1 on.
    private func offset(_ token: LogToken?, number: Int, file: String) throws(DAQError) -> Timestamp {
        guard let token, let nanos = LogFields.fixedPoint(token, unitNanoseconds: 1_000_000) else {
            throw .malformed("expected a time offset in milliseconds\(token.map { ", found '\(LogFields.text($0))'" } ?? "")",
                             file: file, line: number, field: "time offset")
        }
        let (time, overflow) = (version == .v1_0 ? 0 : startTime).addingReportingOverflow(nanos)
        guard !overflow else {
            throw .malformed("the start time plus this offset is past 2262, the last time this reader holds",
                             file: file, line: number, field: "time offset")
        }
        return Timestamp(nanoseconds: time)
    }

    private func bus(_ token: LogToken?, number: Int, file: String) throws(DAQError) -> String {
        guard let token else {
            throw .malformed("expected a bus number", file: file, line: number, field: "bus")
        }
        // Some writers leave the bus as '-' when it is unknown.
        if LogFields.matches(token, "-") { return "can0" }
        guard let bus = LogFields.unsigned(token, base: .dec), bus >= 1, bus <= 255 else {
            throw .malformed("expected a bus number 1…255, found '\(LogFields.text(token))'", file: file, line: number,
                             field: "bus")
        }
        return LogFields.interface(channel: bus)
    }

    /// 4 hex digits for 11-bit ids, 8 for 29-bit; more than 4 digits means 29-bit (some writers
    /// use 7 digits for extended ids).
    private static func identifier(_ token: LogToken, number: Int, file: String) throws(DAQError) -> (UInt32, Bool) {
        let extended = token.count > 4
        guard let id = LogFields.unsigned(token, base: .hex, limit: extended ? CANFrame.extendedMask : CANFrame.standardMask) else {
            throw .malformed("expected \(extended ? "a 29" : "an 11")-bit hex CAN id, found '\(LogFields.text(token))'",
                             file: file, line: number, field: "id")
        }
        return (id, extended)
    }
}
