// Kernel-side receive filters for a CAN_RAW socket (CAN_RAW_FILTER), in domain terms.
internal import CSocketCAN
import DAQCore

/// One acceptance filter: a frame passes when `frameID & mask == id & mask` (and the id width
/// matches), or, for an inverted filter, when it does not. A socket with several filters accepts
/// a frame that passes any of them.
public struct CANIDFilter: Sendable, Hashable, CustomStringConvertible {
    /// The identifier to compare (11 or 29 bits, no flag bits).
    public var id: UInt32
    /// Which identifier bits must match.
    public var mask: UInt32
    /// Match 29-bit identifiers (otherwise 11-bit ones only).
    public var isExtended: Bool
    /// Accept the frames that do *not* match.
    public var isInverted: Bool

    public init(id: UInt32, mask: UInt32, isExtended: Bool = false, isInverted: Bool = false) {
        self.id = id
        self.mask = mask
        self.isExtended = isExtended
        self.isInverted = isInverted
    }

    /// Parses `ID:MASK` (accept matches) or `ID~MASK` (accept non-matches), both in hex.
    /// An id written with 8 digits or above 0x7FF is a 29-bit id.
    public init?(argument: String) {
        let inverted = argument.contains("~")
        let parts = argument.split(separator: inverted ? "~" : ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
              parts[0].count <= 8, parts[1].count <= 8,
              let id = UInt32(parts[0], radix: 16), let mask = UInt32(parts[1], radix: 16),
              id <= CANFrame.extendedMask
        else { return nil }
        let extended = parts[0].count == 8 || id > CANFrame.standardMask
        self.init(id: id, mask: mask & (extended ? CANFrame.extendedMask : CANFrame.standardMask),
                  isExtended: extended, isInverted: inverted)
    }

    /// The filter in the `ID:MASK` / `ID~MASK` form it is parsed from.
    public var description: String {
        let digits = isExtended ? 8 : 3
        func hex(_ v: UInt32) -> String {
            let t = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, digits - t.count)) + t
        }
        return hex(id) + (isInverted ? "~" : ":") + hex(mask)
    }

    /// The `struct can_filter` words: the EFF flag is part of id and mask so that an 11-bit
    /// filter never matches a 29-bit frame with the same low bits, and vice versa.
    var kernelWords: (id: UInt32, mask: UInt32) {
        let inverted: UInt32 = isInverted ? CAN_INV_FILTER : 0
        let idWord = (isExtended ? id | CANFrame.extendedFlag : id) | inverted
        return (idWord, mask | CANFrame.extendedFlag)
    }
}
