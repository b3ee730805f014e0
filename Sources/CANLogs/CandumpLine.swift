// Reader for can-utils `candump -l` lines: `(1700000000.123456) can0 123#DEADBEEF`.
// Byte-level, no String per line: this is the hot path of log replay and of the decode benchmark.
import DAQCore

/// Parses one candump `-l` line. Accepted forms (can-utils lib.c):
/// `ID#DATA` (classic, 0–8 bytes, optional `.` separators, optional `_L` len8 DLC suffix),
/// `ID##F DATA` (CAN FD: F = flags nibble, 0–64 bytes), `ID#R` / `ID#Rn` (remote, DLC n),
/// ids of 3 hex digits (11-bit) or 8 (29-bit; with 0x20000000 set: an error frame),
/// and an optional trailing direction ` R` / ` T`.
enum CandumpLine {
    static func parse(_ line: UnsafeBufferPointer<UInt8>, number: Int, file: String) throws(DAQError) -> CANFrame? {
        var cursor = ByteCursor(line)
        cursor.skipSpaces()
        if cursor.atEnd { return nil }
        if cursor.peek == UInt8(ascii: "#") || cursor.peek == UInt8(ascii: ";") { return nil }

        // (SECONDS.FRACTION)
        guard cursor.take(UInt8(ascii: "(")) else {
            throw .malformed("expected '(' before the timestamp", file: file, line: number, field: "timestamp")
        }
        guard let seconds = cursor.decimal() else {
            throw .malformed("expected seconds digits", file: file, line: number, field: "timestamp")
        }
        var nanos: Int64 = 0
        if cursor.take(UInt8(ascii: ".")) {
            var scale: Int64 = 100_000_000
            var digits = 0
            while let d = cursor.digit() {
                if scale > 0 { nanos += Int64(d) * scale; scale /= 10 }
                digits += 1
            }
            guard digits > 0 else {
                throw .malformed("expected fraction digits after '.'", file: file, line: number, field: "timestamp")
            }
        }
        guard cursor.take(UInt8(ascii: ")")) else {
            throw .malformed("expected ')' after the timestamp", file: file, line: number, field: "timestamp")
        }
        guard seconds < Int64.max / 1_000_000_000 else {
            throw .malformed("timestamp out of range", file: file, line: number, field: "timestamp")
        }
        let timestamp = Timestamp(nanoseconds: seconds * 1_000_000_000 + nanos)

        // IFACE
        cursor.skipSpaces()
        let interfaceBytes = cursor.word()
        guard !interfaceBytes.isEmpty else {
            throw .malformed("expected an interface name", file: file, line: number, field: "interface")
        }
        let interface = String(decoding: interfaceBytes, as: UTF8.self)

        // ID
        cursor.skipSpaces()
        let idStart = cursor.position
        var rawID: UInt32 = 0
        while let nibble = cursor.hexDigit() { rawID = rawID &<< 4 | UInt32(nibble) }
        let idDigits = cursor.position - idStart
        guard idDigits == 3 || idDigits == 8 else {
            throw .malformed("expected a CAN id of 3 or 8 hex digits, found \(idDigits) digits",
                             file: file, line: number, field: "id")
        }
        guard cursor.take(UInt8(ascii: "#")) else {
            throw .malformed("expected '#' after the CAN id", file: file, line: number, field: "id")
        }
        let extended = idDigits == 8
        if !extended && rawID > CANFrame.standardMask {
            throw .malformed("11-bit id above 0x7FF", file: file, line: number, field: "id")
        }
        // 29 id bits and the error flag (0x20000000); candump writes nothing above them.
        if extended && rawID > CANFrame.extendedMask | CANFrame.errorFlag {
            throw .malformed("29-bit id \(String(rawID, radix: 16, uppercase: true)) above 0x3FFFFFFF (the id's 29 bits and the error flag)",
                             file: file, line: number, field: "id")
        }
        var frame = CANFrame(timestamp: timestamp, interface: interface,
                             id: extended ? rawID & CANFrame.extendedMask : rawID, isExtended: extended)
        if extended && rawID & CANFrame.errorFlag != 0 {
            frame.kind = .error
            frame.isExtended = false
        }

        if cursor.take(UInt8(ascii: "#")) {
            guard let flags = cursor.hexDigit() else {
                throw .malformed("expected the CAN FD flags digit after '##'", file: file, line: number, field: "fd flags")
            }
            frame.isFD = true
            frame.bitRateSwitch = flags & CANFrame.flagBRS != 0
            frame.errorStateIndicator = flags & CANFrame.flagESI != 0
            frame.data = try payload(&cursor, limit: 64, number: number, file: file)
        } else if cursor.peek == UInt8(ascii: "R") || cursor.peek == UInt8(ascii: "r") {
            cursor.advance()
            frame.kind = .remote
            if let dlc = cursor.hexDigit() {
                guard dlc <= 8 else {
                    throw .malformed("remote frame DLC above 8 (a DLC 9…F is written R8_9…R8_F)", file: file, line: number, field: "rtr dlc")
                }
                frame.remoteLength = dlc
                // can-utils' len8_dlc form: R8_9 … R8_F.
                if dlc == 8, cursor.take(UInt8(ascii: "_")) {
                    guard let code = cursor.hexDigit(), code > 8 else {
                        throw .malformed("expected a DLC 9…F after '_'", file: file, line: number, field: "len8 dlc")
                    }
                    frame.remoteLength = code
                }
            }
        } else {
            frame.data = try payload(&cursor, limit: 8, number: number, file: file)
            if cursor.take(UInt8(ascii: "_")) {
                // Only 8 bytes can carry a DLC 9…F.
                guard frame.data.count == 8 else {
                    throw .malformed("a DLC after '_' needs 8 data bytes, found \(frame.data.count)", file: file, line: number, field: "len8 dlc")
                }
                guard let dlc = cursor.hexDigit(), dlc > 8 else {
                    throw .malformed("expected a DLC 9…F after '_'", file: file, line: number, field: "len8 dlc")
                }
            }
        }

        cursor.skipSpaces()
        if !cursor.atEnd {
            let direction = cursor.word()
            if direction.count == 1, direction[direction.startIndex] | 0x20 == UInt8(ascii: "r") {
                frame.isReceived = true
            } else if direction.count == 1, direction[direction.startIndex] | 0x20 == UInt8(ascii: "t") {
                frame.isReceived = false
            } else {
                throw .malformed("unexpected text after the frame", file: file, line: number, field: "data")
            }
            cursor.skipSpaces()
            guard cursor.atEnd else {
                throw .malformed("unexpected text after the direction", file: file, line: number, field: "direction")
            }
        }
        return frame
    }

    private static func payload(_ cursor: inout ByteCursor, limit: Int, number: Int, file: String) throws(DAQError) -> CANPayload {
        // Bytes are packed straight into the payload's little-endian word image: this loop runs
        // for every data byte of every replayed frame.
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        let bytes = cursor.bytes
        var position = cursor.position
        let end = bytes.count
        try withUnsafeMutableBytes(of: &words) { (image) throws(DAQError) in
            while position < end {
                let first = bytes[position]
                if first == UInt8(ascii: ".") { position += 1; continue }
                guard let high = ByteCursor.hexValue(first) else { break }
                guard position + 1 < end, let low = ByteCursor.hexValue(bytes[position + 1]) else {
                    // A second digit that is not hex is named as such (it read "odd number of hex digits").
                    let found = position + 1 < end ? bytes[position + 1] : 0
                    let isDigitLike = found > 0x20 && found < 0x7F && found != UInt8(ascii: "_") && found != UInt8(ascii: ".")
                    throw .malformed(isDigitLike ? "expected a hex digit, found '\(Character(Unicode.Scalar(found)))'" : "odd number of hex digits in the data",
                                     file: file, line: number, field: "data byte \(count)")
                }
                guard count < limit else {
                    throw .malformed("more than \(limit) data bytes", file: file, line: number, field: "data")
                }
                image[count] = high << 4 | low
                count += 1
                position += 2
            }
        }
        cursor.advance(position - cursor.position)
        let data = CANPayload(words: words, count: count)
        if !cursor.atEnd, let byte = cursor.peek, byte != UInt8(ascii: " "), byte != UInt8(ascii: "\t"), byte != UInt8(ascii: "_") {
            throw .malformed("expected hex data, found '\(Character(Unicode.Scalar(byte)))'", file: file, line: number,
                             field: "data byte \(data.count)")
        }
        if limit == 64 && CANFrame.fdLengths.firstIndex(of: data.count) == nil {
            throw .malformed("CAN FD data length \(data.count) is not a valid FD length", file: file, line: number, field: "data")
        }
        return data
    }
}
