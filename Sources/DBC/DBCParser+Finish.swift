// After the last statement: apply attribute defaults and resolve who multiplexes whom.
import DAQCore

extension DBCParser {
    mutating func finish() throws(DAQError) -> DBCDatabase {
        var result: [DBCMessage] = []
        result.reserveCapacity(messages.count)
        for pending in messages where pending.message.name != Self.independentSignalsMessage {
            try checkSignalsFit(pending)
            var message = pending.message
            message.cycleTime = cycleTime(pending.cycleTime ?? attributeDefaults["GenMsgCycleTime"])
            if let format = frameFormat(pending.frameFormat ?? attributeDefaults["VFrameFormat"]),
               format.hasSuffix("CAN_FD") {
                message.isFD = true
            }
            try resolveMultiplexing(&message, pending)
            result.append(message)
        }
        return DBCDatabase(version: version, nodes: nodes, messages: result, valueTables: valueTables)
    }

    /// A signal that needs more bytes than its message has would be dropped from every decoded
    /// frame. Checked after the last statement, as cantools (strict) does, so that an error a later
    /// statement has (`SIG_VALTYPE_`) is reported first.
    private func checkSignalsFit(_ pending: PendingMessage) throws(DAQError) {
        let message = pending.message
        for (index, signal) in message.signals.enumerated() where signal.requiredBytes > message.length {
            let order = signal.byteOrder == .littleEndian ? "little-endian" : "big-endian"
            throw DAQError.malformed(
                "signal \(signal.name) (start bit \(signal.startBit), \(signal.length) bits, \(order)) needs \(signal.requiredBytes) bytes, "
                    + "but message \(message.name) is \(message.length) byte\(message.length == 1 ? "" : "s") long",
                file: scanner.file, line: pending.signalLines[index], field: "SG_ start bit")
        }
    }

    /// Cycle time in ms; 0 means "not cyclic".
    private func cycleTime(_ value: DBCAttributeValue?) -> Int? {
        guard case .number(let ms)? = value, ms > 0, let whole = Int(exactly: ms.rounded()) else { return nil }
        return whole
    }

    /// The `VFrameFormat` name: an enum index resolved through `BA_DEF_`, or the text itself.
    private func frameFormat(_ value: DBCAttributeValue?) -> String? {
        switch value {
        case .text(let text)?: return text
        case .number(let index)?:
            guard let names = attributeEnums["VFrameFormat"], let i = Int(exactly: index), names.indices.contains(i)
            else { return nil }
            return names[i]
        case nil: return nil
        }
    }

    /// `mN` without `SG_MUL_VAL_` is selected by the message's top-level `M` signal; `SG_MUL_VAL_`
    /// names the multiplexer and the value ranges explicitly.
    private func resolveMultiplexing(_ message: inout DBCMessage, _ pending: PendingMessage) throws(DAQError) {
        let topMultiplexer = message.signals.indices.first { i in
            message.signals[i].isMultiplexer && pending.multiplexValues[i] == nil
        }
        for i in message.signals.indices {
            if let explicit = pending.explicitSelectors[i] {
                guard let mux = message.signalIndex(named: explicit.multiplexer), mux != i else {
                    throw DAQError.malformed(
                        "message \(message.name) has no multiplexer signal \(explicit.multiplexer) for \(message.signals[i].name)",
                        file: scanner.file, line: explicit.line, field: "SG_MUL_VAL_ multiplexer")
                }
                message.signals[mux].isMultiplexer = true
                message.signals[i].multiplexedBy = DBCMultiplexSelector(multiplexer: explicit.multiplexer,
                                                                        values: explicit.values)
            } else if let value = pending.multiplexValues[i] {
                guard let top = topMultiplexer else {
                    throw DAQError.malformed(
                        "signal \(message.signals[i].name) is multiplexed (m\(value)) but message \(message.name) has no M signal",
                        file: scanner.file, line: pending.signalLines[i], field: "SG_ multiplexer indicator")
                }
                message.signals[i].multiplexedBy = DBCMultiplexSelector(multiplexer: message.signals[top].name,
                                                                        values: [value...value])
            }
        }
        // A chain of multiplexers must end at a signal that is always present.
        for i in message.signals.indices {
            var current = i
            var steps = 0
            while let selector = message.signals[current].multiplexedBy {
                guard let next = message.signalIndex(named: selector.multiplexer), steps < message.signals.count else {
                    throw DAQError.malformed("multiplexer chain of \(message.signals[i].name) loops back on itself",
                                             file: scanner.file, line: pending.signalLines[i], field: "SG_MUL_VAL_")
                }
                current = next
                steps += 1
            }
        }
    }
}
