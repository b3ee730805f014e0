// A streaming MDF4 file written while recording: an unfinalized ("UnFinMF ", flags 0x05) file with
// one unsorted data group whose channel groups carry 2-byte record ids 1…N, so its records are
// exactly the journal's record payloads (RecordPayload) appended to one open ##DT. If the process
// dies, every complete record is still readable (asammdf derives cycle counts from the records and
// the DT length from the file end); on clean close a few patches finalize the file in place.
// Pure: this type says which bytes go where; an adapter appends and patches the file.
import DAQCore
import Acquisition

/// Bytes and patches of a streaming MDF4 file for one measurement.
///
/// Write `head`, then append each record payload (`u16 record id` + MDF record) as it is
/// produced, calling `recorded(payloadBytes:)`; on clean close apply `finalization()` patches.
/// Only one data block is ever open, because asammdf 8.8 hangs on unfinalized files whose data
/// group points to a chain of several DL blocks.
public struct MDFStream: Sendable {
    /// ID, HD, FH, the unsorted DG, its CGs and CNs, and the header of the open ##DT.
    public let head: [UInt8]
    /// Address of the open ##DT block (its records start 24 bytes later).
    public let dataBlockAddress: Int
    /// Address of each group's ##CG (cycle count at +80).
    public let channelGroupAddresses: [Int]
    /// Record bytes per group (with the 2-byte record id).
    public let payloadBytes: [Int]
    /// Records appended per group.
    public private(set) var cycles: [UInt64]
    /// Record bytes appended after `head`.
    public private(set) var dataBytes = 0

    /// The unfinalized flags written in the ID block: CG cycle counters (0x01) and the last DT's
    /// length (0x04) must be recomputed by a reader.
    public static let unfinalizedFlags: UInt16 = 0x05

    public init(layout: MeasurementLayout, tool: MDFTool = MDFTool(), bus: String = "CAN") {
        var image = MDFImage()
        image.appendRaw(MDFWriter.identification(finalized: false, unfinalizedFlags: Self.unfinalizedFlags))
        let header = MDFWriter.writeHeader(&image, layout: layout, tool: tool)
        var dg = MDFFields()
        dg.u8(UInt8(RecordPayload.headerBytes)); dg.zeros(7)  // unsorted: 2-byte record ids
        let dataGroup = image.block("##DG", links: [0, 0, 0, 0], data: dg.bytes)
        image.setLink(of: header, index: 0, to: dataGroup)
        var addresses: [Int] = []
        var previous: UInt64 = 0
        for (index, group) in layout.groups.enumerated() {
            let cg = MDFWriter.writeChannelGroup(&image, group: group, layout: RecordLayout(group),
                                                 recordID: UInt64(RecordPayload.recordID(group: index)), cycles: 0, bus: bus)
            if previous == 0 { image.setLink(of: dataGroup, index: 1, to: cg) } else { image.setLink(of: previous, index: 0, to: cg) }
            previous = cg
            addresses.append(Int(cg))
        }
        let dataBlock = image.block("##DT", links: [], data: [])
        image.setLink(of: dataGroup, index: 2, to: dataBlock)
        head = image.bytes
        dataBlockAddress = Int(dataBlock)
        channelGroupAddresses = addresses
        payloadBytes = layout.groups.map { RecordLayout($0).recordBytes + RecordPayload.headerBytes }
        cycles = Array(repeating: 0, count: layout.groups.count)
    }

    /// Counts one appended record payload of group `index`.
    public mutating func recorded(group index: Int) {
        precondition(index >= 0 && index < cycles.count, "record id \(index + 1) is not in this measurement")
        cycles[index] += 1
        dataBytes += payloadBytes[index]
    }

    /// In-place patches that finalize the file after all records were appended: the DT length,
    /// every CG's cycle count, and the ID block ("MDF     ", flags 0) last — so a crash during
    /// finalization still leaves a valid unfinalized file.
    public func finalization() -> [(offset: Int, bytes: [UInt8])] {
        var patches: [(offset: Int, bytes: [UInt8])] = []
        var length = MDFFields()
        length.u64(UInt64(24 + dataBytes))
        patches.append((dataBlockAddress + 8, length.bytes))
        for (index, address) in channelGroupAddresses.enumerated() {
            var count = MDFFields()
            count.u64(cycles[index])
            patches.append((address + 80, count.bytes))
        }
        patches.append((0, MDFWriter.identification(finalized: true)))
        return patches
    }
}
