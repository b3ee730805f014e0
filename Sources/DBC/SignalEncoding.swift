// Writing a raw value into a payload, bit by bit from the DBC definition. Used to build test
// frames and simulated traffic; deliberately independent of the decoder's shift/mask plan.
import DAQCore

extension DBCSignal {
    /// Writes the low `length` bits of `raw` into `payload` at this signal's position, growing the
    /// payload with zero bytes when it is shorter than `requiredBytes`.
    public func encode(raw: UInt64, into payload: inout CANPayload) {
        while payload.count < requiredBytes { payload.append(0) }
        for bit in 0..<length {
            let streamBit: Int
            let byte: Int
            let bitInByte: Int
            switch byteOrder {
            case .littleEndian:
                streamBit = startBit + bit
                byte = streamBit / 8
                bitInByte = streamBit % 8
            case .bigEndian:
                // Stream position of bit `bit` (0 = least significant) counted from the MSB.
                streamBit = streamStart + (length - 1 - bit)
                byte = streamBit / 8
                bitInByte = 7 - streamBit % 8
            }
            let mask = UInt8(1) << UInt8(bitInByte)
            if (raw >> UInt64(bit)) & 1 == 1 { payload[byte] |= mask } else { payload[byte] &= ~mask }
        }
    }
}
