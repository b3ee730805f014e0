// A streaming MDF4 file written while recording: an unfinalized ("UnFinMF ") file with one
// unsorted data group whose channel groups carry 2-byte record ids 1…N, so its records are
// exactly the journal's record payloads (RecordPayload). On clean close a few patches (and, for
// deflate, a closing data list) finalize the file in place.
// Plain files (flags 0x05): the payloads are appended to one open ##DT; if the process dies,
// every complete record is readable (asammdf derives cycle counts from the records and the DT
// length from the file end).
// Deflate files (flags 0x11): the head ends with one ##DL whose links are all empty; record bytes
// are cut into blocks of `blockBytes` and each full block is appended as a ##DZ right after the
// previous one, its id written last (`takeSeals`). asammdf recovers a cut file by collecting the
// named ##DZ blocks that follow the DL, so a cut file keeps exactly the records whose bytes lie in
// complete, named blocks: the first k × blockBytes record bytes (the unfinished block is only in
// memory).
// Pure: this type says which bytes go where; an adapter appends and patches the file.
import DAQCore
import Acquisition

/// Bytes and patches of a streaming MDF4 file for one measurement.
///
/// Write `head`, then for each record payload (`u16 record id` + MDF record) call
/// `append(_:into:)` and write what it adds; on clean close write `finish(into:)`'s bytes and
/// apply its patches. (The plain mode also keeps the older `recorded(group:)` / `finalization()`
/// pair for callers that append the payloads themselves.)
/// Only one data block or data list is ever open, because asammdf 8.8 hangs on unfinalized files
/// whose data group points to a chain of several DL blocks.
public struct MDFStream: Sendable {
    /// Deflate settings: the compressor and the uncompressed bytes per ##DZ block.
    public struct Deflate: Sendable {
        public var compress: @Sendable (UnsafeRawBufferPointer) -> [UInt8]
        public var blockBytes: Int
        /// Data blocks the head's ##DL can list: a cut file is recovered up to this many blocks;
        /// when they are written the stream is `full` and the recording starts a new file.
        public var blockCapacity: Int

        public init(blockBytes: Int = 64 << 10, blockCapacity: Int = 4096,
                    compress: @escaping @Sendable (UnsafeRawBufferPointer) -> [UInt8]) {
            precondition(blockBytes > 0 && blockCapacity > 0, "deflate blocks need a size and a capacity")
            self.compress = compress
            self.blockBytes = blockBytes
            self.blockCapacity = blockCapacity
        }
    }

    /// ID, HD, FH, the unsorted DG, its CGs and CNs, and the header of the open ##DT (plain) or
    /// the empty ##DL (deflate).
    public let head: [UInt8]
    /// Address of the open ##DT block (plain) or of the head's ##DL (deflate).
    public let dataBlockAddress: Int
    /// Address of the data group (its data link is at +40).
    public let dataGroupAddress: Int
    /// Address of each group's ##CG (cycle count at +80).
    public let channelGroupAddresses: [Int]
    /// Record bytes per group (with the 2-byte record id).
    public let payloadBytes: [Int]
    /// Records appended per group.
    public private(set) var cycles: [UInt64]
    /// Record bytes appended after `head`.
    public private(set) var dataBytes = 0
    /// Bytes of the file written so far (head + everything `append` and `finish` emitted).
    public private(set) var fileBytes: Int
    private let deflate: Deflate?
    /// `deflate`'s block size and capacity (0 for plain files), kept apart so the per-record path
    /// never copies `deflate` (its closure would be retained and released for every record).
    private let blockBytes: Int
    private let blockCapacity: Int
    /// Deflate: record bytes of the unfinished block, and the address of each written ##DZ.
    private var pendingBlock: [UInt8] = []
    private var blockAddresses: [Int] = []
    private var seals: [(offset: Int, bytes: [UInt8])] = []

    /// The unfinalized flags of plain files: CG cycle counters (0x01) and the last DT's length
    /// (0x04) must be recomputed by a reader.
    public static let unfinalizedFlags: UInt16 = 0x05
    /// Deflate files: cycle counters (0x01) and the last DL's links (0x10).
    public static let unfinalizedDeflateFlags: UInt16 = 0x11

    public init(layout: MeasurementLayout, tool: MDFTool = MDFTool(), bus: String = "CAN", deflate: Deflate? = nil) {
        var image = MDFImage()
        image.appendRaw(MDFWriter.identification(finalized: false,
                                                 unfinalizedFlags: deflate == nil ? Self.unfinalizedFlags : Self.unfinalizedDeflateFlags))
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
        let dataBlock: UInt64
        if let deflate {
            dataBlock = MDFWriter.dataList(&image, blocks: Array(repeating: 0, count: deflate.blockCapacity), blockBytes: deflate.blockBytes)
        } else {
            dataBlock = image.block("##DT", links: [], data: [])
        }
        image.setLink(of: dataGroup, index: 2, to: dataBlock)
        head = image.bytes
        fileBytes = head.count
        dataBlockAddress = Int(dataBlock)
        dataGroupAddress = Int(dataGroup)
        channelGroupAddresses = addresses
        payloadBytes = layout.groups.map { RecordLayout($0).recordBytes + RecordPayload.headerBytes }
        cycles = Array(repeating: 0, count: layout.groups.count)
        self.deflate = deflate
        blockBytes = deflate?.blockBytes ?? 0
        blockCapacity = deflate?.blockCapacity ?? 0
    }

    /// Whether a deflate stream has written all the blocks its head's ##DL can list. (Stored, so
    /// a caller holding the stream in a class reads one field instead of copying the stream.)
    public private(set) var isFull = false

    /// Counts one appended record payload of group `index` (plain streams whose caller appends
    /// the payload bytes itself).
    public mutating func recorded(group index: Int) {
        precondition(blockBytes == 0, "a deflate stream takes records through append(_:into:)")
        count(group: index)
        fileBytes += payloadBytes[index]
    }

    private mutating func count(group index: Int) {
        precondition(index >= 0 && index < cycles.count, "record id \(index + 1) is not in this measurement")
        cycles[index] += 1
        dataBytes += payloadBytes[index]
    }

    /// Whether `payload` is a record of this measurement: its record id names one of the groups
    /// and its length is that group's. A record of another measurement (its layout entry lost to
    /// damage) must not be appended: it would count as this group's size and wreck the file.
    public func fits(_ payload: UnsafeRawBufferPointer) -> Bool {
        guard payload.count >= RecordPayload.headerBytes else { return false }
        let group = RecordPayload.groupIndex(payload)
        return group >= 0 && group < payloadBytes.count && payload.count == payloadBytes[group]
    }

    /// Takes one record payload; appends to `output` the bytes to write at the file's end now.
    /// Called for every record: mutates in place, allocates nothing but `output`'s growth.
    public mutating func append(_ payload: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let group = RecordPayload.groupIndex(payload)
        count(group: group)
        guard blockBytes > 0 else {
            fileBytes += payloadBytes[group]
            output.append(contentsOf: payload)
            return
        }
        pendingBlock.append(contentsOf: payload)
        while pendingBlock.count >= blockBytes, !isFull {
            let compressed = pendingBlock.withUnsafeBytes { deflate!.compress(UnsafeRawBufferPointer(rebasing: $0[0..<blockBytes])) }
            writeBlock(compressed, uncompressedBytes: blockBytes, into: &output)
            pendingBlock.removeFirst(blockBytes)
        }
    }

    /// A ##DZ (plain deflate: unsorted records of several sizes cannot be transposed) of
    /// `uncompressedBytes` record bytes, deflated to `zipped`, at the file end.
    private mutating func writeBlock(_ zipped: [UInt8], uncompressedBytes: Int, into output: inout [UInt8]) {
        var dz = MDFFields()
        dz.zeros(8)                        // the id is written last (`takeSeals`)
        dz.u64(UInt64(48 + zipped.count))
        dz.u64(0)
        dz.bytes += Array("DT".utf8)
        dz.u8(0); dz.u8(0)                 // zip type: deflate; reserved
        dz.u32(0)                          // zip parameter
        dz.u64(UInt64(uncompressedBytes))
        dz.u64(UInt64(zipped.count))
        blockAddresses.append(fileBytes)
        isFull = blockAddresses.count >= blockCapacity
        seals.append((fileBytes, Array("##DZ".utf8)))
        output += dz.bytes
        output += zipped
        fileBytes += dz.bytes.count + zipped.count
        while fileBytes % 8 != 0 { output.append(0); fileBytes += 1 }
    }

    /// The ids of the ##DZ blocks `append` emitted, as patches to apply once those bytes are in
    /// the file. A block is appended with a blank id and named only when complete, so a file cut
    /// inside a block (even inside its header) ends with bytes asammdf's block scan does not see.
    public mutating func takeSeals() -> [(offset: Int, bytes: [UInt8])] {
        defer { seals.removeAll() }
        return seals
    }

    /// Clean close: appends to `output` what still has to be written at the file end (deflate:
    /// the last, shorter block and the closing ##DL under its ##HL) and returns the in-place patches to apply
    /// after it: the data link or DT length, every CG's cycle count, and the ID block
    /// ("MDF     ", flags 0) last — so a crash during finalization still leaves a valid
    /// unfinalized file.
    public mutating func finish(into output: inout [UInt8]) -> [(offset: Int, bytes: [UInt8])] {
        guard let deflate else { return finalization() }
        if !pendingBlock.isEmpty {
            let compressed = pendingBlock.withUnsafeBytes { deflate.compress($0) }
            writeBlock(compressed, uncompressedBytes: pendingBlock.count, into: &output)
            pendingBlock.removeAll()
        }
        var patches = takeSeals()
        if !blockAddresses.isEmpty {
            var image = MDFImage(offset: fileBytes)
            let list = MDFWriter.dataList(&image, blocks: blockAddresses.map(UInt64.init), blockBytes: deflate.blockBytes)
            // The finalized file's list of ##DZ blocks hangs under a ##HL naming their compression
            // (unsorted records are not transposed). The head's ##DL, which asammdf recovers a cut
            // file from, stays as it is.
            let header = MDFWriter.headerList(&image, list: list, transposed: false)
            output += image.bytes
            fileBytes += image.bytes.count
            var link = MDFFields()
            link.u64(header)
            patches.append((dataGroupAddress + 40, link.bytes))
        } else {
            patches.append((dataGroupAddress + 40, [UInt8](repeating: 0, count: 8)))  // no data
        }
        return patches + cycleAndIdentificationPatches()
    }

    /// Plain streams: the in-place patches that finalize the file after all records were
    /// appended (DT length, cycle counts, ID block last).
    public func finalization() -> [(offset: Int, bytes: [UInt8])] {
        precondition(deflate == nil, "a deflate stream is finalized with finish(into:)")
        var length = MDFFields()
        length.u64(UInt64(24 + dataBytes))
        return [(dataBlockAddress + 8, length.bytes)] + cycleAndIdentificationPatches()
    }

    private func cycleAndIdentificationPatches() -> [(offset: Int, bytes: [UInt8])] {
        var patches: [(offset: Int, bytes: [UInt8])] = []
        for (index, address) in channelGroupAddresses.enumerated() {
            var count = MDFFields()
            count.u64(cycles[index])
            patches.append((address + 80, count.bytes))
        }
        patches.append((0, MDFWriter.identification(finalized: true)))
        return patches
    }
}
