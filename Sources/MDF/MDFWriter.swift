// Builds ASAM MDF 4.11 files from a measurement layout and its records: one sorted data group per
// channel group, a float64 time master, typed channels with invalidation bits, linear and
// value-to-text conversions from the DBC, source and file-history blocks. Deterministic: the bytes
// depend only on the layout, the records and the tool name — never on a wall clock.
import DAQCore
import Acquisition

/// Who wrote the file (file-history block).
public struct MDFTool: Sendable, Hashable {
    public var name: String
    public var vendor: String
    public var version: String

    public init(name: String = "DAQLink", vendor: String = "DAQLink", version: String = "0.1.0") {
        self.name = name
        self.vendor = vendor
        self.version = version
    }
}

/// A finalized file laid out before its records (`MDFWriter.plan`).
public struct MDFPlan: Sendable {
    /// Metadata and data block headers at their file offsets, in file order.
    public var pieces: [(offset: Int, bytes: [UInt8])]
    /// Where each group's record bytes start.
    public var dataOffsets: [Int]
    /// The file's length.
    public var length: Int
}

/// Writes finalized MDF4 files.
public enum MDFWriter {
    /// A finalized MDF 4.11 file: `records[g]` holds group g's MDF records back to back
    /// (the record bytes after the journal payload's 2-byte record id). With `deflate` (a zlib
    /// compressor; this module does no I/O and links no C library), each group's data is a ##DZ
    /// block with transposition + deflate (zip type 1, parameter = record size): columns of
    /// slowly changing sample bytes compress far better than rows.
    public static func finalizedFile(layout: MeasurementLayout, records: [[UInt8]], tool: MDFTool = MDFTool(),
                                     bus: String = "CAN", deflate: ((UnsafeRawBufferPointer) -> [UInt8])? = nil) -> [UInt8] {
        precondition(records.count == layout.groups.count, "one record stream per channel group")
        var image = MDFImage()
        image.appendRaw(identification(finalized: true))

        let header = writeHeader(&image, layout: layout, tool: tool)

        var previousDG: UInt64 = 0
        for (index, group) in layout.groups.enumerated() {
            let recordLayout = RecordLayout(group)
            let recordSize = recordLayout.recordBytes
            let data = records[index]
            precondition(data.count % recordSize == 0, "group \(group.name): record bytes are not whole records")
            let dataGroup = writeGroup(&image, group: group, layout: recordLayout, cycles: UInt64(data.count / recordSize),
                                       records: data, bus: bus, deflate: deflate)
            if previousDG == 0 {
                image.setLink(of: header, index: 0, to: dataGroup)
            } else {
                image.setLink(of: previousDG, index: 0, to: dataGroup)
            }
            previousDG = dataGroup
        }
        return image.bytes
    }

    /// Where the bytes of `finalizedFile(layout:records:tool:bus:)` (without deflate) go when the
    /// records are written afterwards (`daqctl export` streaming a journal of any size): the
    /// metadata and each data block's header as pieces at their file offsets, and where each
    /// group's record bytes start. `cycles[g]` is group g's record count. Writing the pieces, then
    /// group g's records back to back from `dataOffsets[g]`, gives the same file byte for byte
    /// (the gaps between are the zeros `finalizedFile` pads with).
    public static func plan(layout: MeasurementLayout, cycles: [UInt64], tool: MDFTool = MDFTool(), bus: String = "CAN") -> MDFPlan {
        precondition(cycles.count == layout.groups.count, "one record count per channel group")
        var images: [MDFImage] = []
        var image = MDFImage()
        image.appendRaw(identification(finalized: true))
        let header = writeHeader(&image, layout: layout, tool: tool)
        var dataOffsets: [Int] = []
        var end = image.base + image.bytes.count
        var nextLink = (of: header, index: 0)
        var links: [(of: UInt64, index: Int, to: UInt64)] = []
        for (index, group) in layout.groups.enumerated() {
            let recordLayout = RecordLayout(group)
            let dataBytes = Int(cycles[index]) * recordLayout.recordBytes
            let dataGroup = writeGroupHead(&image, group: group, layout: recordLayout, cycles: cycles[index], bus: bus)
            image.setLink(of: dataGroup, index: 2, to: image.blockHeader("##DT", links: [], dataLength: dataBytes))
            links.append((nextLink.of, nextLink.index, dataGroup))
            nextLink = (dataGroup, 0)
            let dataStart = image.base + image.bytes.count
            dataOffsets.append(dataStart)
            images.append(image)
            end = dataStart + dataBytes
            image = MDFImage(offset: (end + 7) / 8 * 8)
        }
        if !image.bytes.isEmpty {
            images.append(image)
            end = image.base + image.bytes.count
        }
        // Links that cross from one piece to a later one.
        for link in links {
            let piece = images.lastIndex { UInt64($0.base) <= link.of }!
            images[piece].setLink(of: link.of, index: link.index, to: link.to)
        }
        return MDFPlan(pieces: images.map { ($0.base, $0.bytes) }, dataOffsets: dataOffsets, length: end)
    }

    /// A finalized MDF 4.11 file with deflated data (as `finalizedFile` with `deflate`), written
    /// through `write(bytes, offset)` while at most `chunkBytes` of records are held: group g's
    /// `cycles[g]` records are read a chunk at a time with `records(g, byteRange)` (a byte range
    /// of that group's records back to back). The metadata of every group comes first, then each
    /// group's data as ##DZ blocks (transposition + deflate) of at most `chunkBytes` records each,
    /// listed by a ##DL under a ##HL when there are several; the data groups' links to them are
    /// written last.
    /// `daqctl export --deflate` on a measurement of any length.
    public static func writeDeflatedFile<Failure: Error>(
        layout: MeasurementLayout, cycles: [UInt64], tool: MDFTool = MDFTool(), bus: String = "CAN", chunkBytes: Int = 4 << 20,
        deflate: (UnsafeRawBufferPointer) -> [UInt8],
        records: (_ group: Int, _ bytes: Range<Int>) throws(Failure) -> [UInt8],
        write: (_ bytes: [UInt8], _ offset: Int) throws(Failure) -> Void
    ) throws(Failure) {
        precondition(cycles.count == layout.groups.count, "one record count per channel group")
        var image = MDFImage()
        image.appendRaw(identification(finalized: true))
        let header = writeHeader(&image, layout: layout, tool: tool)
        var dataGroups: [UInt64] = []
        for (index, group) in layout.groups.enumerated() {
            let dataGroup = writeGroupHead(&image, group: group, layout: RecordLayout(group), cycles: cycles[index], bus: bus)
            image.setLink(of: dataGroups.last ?? header, index: 0, to: dataGroup)
            dataGroups.append(dataGroup)
        }
        try write(image.bytes, 0)
        var end = (image.bytes.count + 7) / 8 * 8
        /// Appends one image of blocks at the file's end; returns the address of its first block.
        func appendBlocks(_ build: (inout MDFImage) -> UInt64) throws(Failure) -> UInt64 {
            var blocks = MDFImage(offset: end)
            let address = build(&blocks)
            try write(blocks.bytes, blocks.base)
            end = (blocks.base + blocks.bytes.count + 7) / 8 * 8
            return address
        }
        for (index, group) in layout.groups.enumerated() {
            let recordSize = RecordLayout(group).recordBytes
            let total = Int(cycles[index]) * recordSize
            let step = max(1, chunkBytes / recordSize) * recordSize
            var blocks: [UInt64] = []
            var start = 0
            while start < total {
                let chunk = try records(index, start..<min(total, start + step))
                precondition(chunk.count == min(total, start + step) - start, "a chunk of records of the size asked for")
                blocks.append(try appendBlocks { writeTransposedDZ(&$0, records: chunk, recordSize: recordSize, deflate: deflate) })
                start += step
            }
            let data: UInt64
            switch blocks.count {
            case 0: data = try appendBlocks { $0.block("##DT", links: [], data: []) }
            case 1: data = blocks[0]
            default:
                // Every block holds `step` record bytes but the last (the list's equal-length flag).
                data = try appendBlocks { image in
                    let list = dataList(&image, blocks: blocks, blockBytes: step)
                    return headerList(&image, list: list, transposed: true)
                }
            }
            var link = MDFFields()
            link.u64(data)
            try write(link.bytes, Int(dataGroups[index]) + 24 + 8 * 2)
        }
    }

    /// A ##DL of equal-length blocks (the last may be shorter) listing `blocks`; returns its address.
    static func dataList(_ image: inout MDFImage, blocks: [UInt64], blockBytes: Int) -> UInt64 {
        var dl = MDFFields()
        dl.u8(1); dl.zeros(3)              // flags: equal length
        dl.u32(UInt32(blocks.count))
        dl.u64(UInt64(blockBytes))
        return image.block("##DL", links: [0] + blocks, data: dl.bytes)
    }

    /// The ##HL that MDF 4.1 puts above a ##DL of ##DZ blocks, naming their compression: deflate,
    /// after transposition when `transposed`; returns its address.
    static func headerList(_ image: inout MDFImage, list: UInt64, transposed: Bool) -> UInt64 {
        var hl = MDFFields()
        hl.u16(1)                              // flags: equal length
        hl.u8(transposed ? 1 : 0); hl.zeros(5) // zip type; reserved
        return image.block("##HL", links: [list], data: hl.bytes)
    }

    /// ##HD at 0x40 (start time from the layout) and ##FH naming the tool; returns the HD address.
    static func writeHeader(_ image: inout MDFImage, layout: MeasurementLayout, tool: MDFTool) -> UInt64 {
        // ##HD at 0x40.
        var hd = MDFFields()
        hd.u64(UInt64(max(0, layout.start.nanoseconds)))  // start_time_ns
        hd.i16(0); hd.i16(0)                              // tz, dst offsets
        hd.u8(0); hd.u8(0); hd.u8(0); hd.u8(0)            // time flags, class, flags, reserved
        hd.f64(0); hd.f64(0)                              // start angle, distance
        let header = image.block("##HD", links: [0, 0, 0, 0, 0, 0], data: hd.bytes)

        // ##FH with the tool.
        let comment = "<FHcomment><TX>\(xml(layout.experiment))</TX><tool_id>\(xml(tool.name))</tool_id>"
            + "<tool_vendor>\(xml(tool.vendor))</tool_vendor><tool_version>\(xml(tool.version))</tool_version></FHcomment>"
        let fhComment = image.text(comment, id: "##MD")
        var fh = MDFFields()
        fh.u64(UInt64(max(0, layout.start.nanoseconds)))
        fh.i16(0); fh.i16(0); fh.u8(0); fh.zeros(3)
        let history = image.block("##FH", links: [0, fhComment], data: fh.bytes)
        image.setLink(of: header, index: 1, to: history)
        return header
    }

    /// The 64-byte identification block.
    static func identification(finalized: Bool, unfinalizedFlags: UInt16 = 0) -> [UInt8] {
        var id = MDFFields()
        id.bytes += Array((finalized ? "MDF     " : "UnFinMF ").utf8)
        id.bytes += Array("4.11    ".utf8)
        id.bytes += Array("DAQLink ".utf8)
        id.zeros(4)
        id.u16(411)
        id.zeros(30)
        id.u16(finalized ? 0 : unfinalizedFlags)
        id.u16(0)
        return id.bytes
    }

    private static func writeGroup(_ image: inout MDFImage, group: ChannelGroup, layout: RecordLayout, cycles: UInt64,
                                   records: [UInt8], bus: String,
                                   deflate: ((UnsafeRawBufferPointer) -> [UInt8])? = nil) -> UInt64 {
        let dataGroup = writeGroupHead(&image, group: group, layout: layout, cycles: cycles, bus: bus)
        let dataBlock: UInt64
        if let deflate, !records.isEmpty {
            dataBlock = writeTransposedDZ(&image, records: records, recordSize: layout.recordBytes, deflate: deflate)
        } else {
            dataBlock = image.block("##DT", links: [], data: records)
        }
        image.setLink(of: dataGroup, index: 2, to: dataBlock)
        return dataGroup
    }

    /// A sorted ##DG and its ##CG (the data block link left for the caller); returns the DG's address.
    private static func writeGroupHead(_ image: inout MDFImage, group: ChannelGroup, layout: RecordLayout, cycles: UInt64,
                                       bus: String) -> UInt64 {
        var dg = MDFFields()
        dg.u8(0); dg.zeros(7)  // sorted: no record id
        let dataGroup = image.block("##DG", links: [0, 0, 0, 0], data: dg.bytes)
        let channelGroup = writeChannelGroup(&image, group: group, layout: layout, recordID: 0, cycles: cycles, bus: bus)
        image.setLink(of: dataGroup, index: 1, to: channelGroup)
        return dataGroup
    }

    /// A ##DZ block holding `records` (whole records of `recordSize` bytes) transposed, then
    /// deflated: `DT`, zip type 1, parameter = record size, original and compressed lengths.
    private static func writeTransposedDZ(_ image: inout MDFImage, records: [UInt8], recordSize: Int,
                                          deflate: (UnsafeRawBufferPointer) -> [UInt8]) -> UInt64 {
        let rows = records.count / recordSize
        var transposed = [UInt8](repeating: 0, count: records.count)
        records.withUnsafeBufferPointer { source in
            transposed.withUnsafeMutableBufferPointer { target in
                for row in 0..<rows {
                    for column in 0..<recordSize { target[column * rows + row] = source[row * recordSize + column] }
                }
            }
        }
        let zipped = transposed.withUnsafeBytes { deflate($0) }
        var dz = MDFFields()
        dz.bytes += Array("DT".utf8)
        dz.u8(1); dz.u8(0)                 // zip type: transposition + deflate; reserved
        dz.u32(UInt32(recordSize))         // zip parameter: the record size (columns)
        dz.u64(UInt64(records.count))      // original length
        dz.u64(UInt64(zipped.count))       // compressed length
        dz.bytes += zipped
        return image.block("##DZ", links: [], data: dz.bytes)
    }

    /// A CG with its acquisition name, source, time master and channels; returns the CG's address.
    static func writeChannelGroup(_ image: inout MDFImage, group: ChannelGroup, layout: RecordLayout, recordID: UInt64,
                                  cycles: UInt64, bus: String) -> UInt64 {
        let acquisitionName = image.text(group.name)
        let sourceName = image.text(bus)
        var si = MDFFields()
        si.u8(2); si.u8(2); si.u8(0); si.zeros(5)  // source type BUS, bus type CAN
        let source = image.block("##SI", links: [sourceName, 0, 0], data: si.bytes)

        let isBusLogging = group.loggedBuses != nil
        var cg = MDFFields()
        cg.u64(recordID)
        cg.u64(cycles)
        cg.u16(isBusLogging ? 0x06 : 0)        // flags: bus event + plain bus event for bus logging
        cg.u16(UInt16(UInt8(ascii: ".")))      // path separator
        cg.u32(0)
        cg.u32(UInt32(layout.dataBytes))
        cg.u32(UInt32(layout.invalidationBytes))
        let channelGroup = image.block("##CG", links: [0, 0, acquisitionName, source, 0, 0], data: cg.bytes)

        // Time master first, then the channels in record order.
        let timeName = image.text("time")
        let timeUnit = image.text("s")
        var previous = image.block("##CN", links: [0, 0, timeName, source, 0, 0, timeUnit, 0],
                                   data: channelData(type: 2, sync: 1, dataType: 4, byteOffset: 0, bits: 64,
                                                     invalidationBit: nil))
        image.setLink(of: channelGroup, index: 1, to: previous)
        if isBusLogging {
            image.setLink(of: previous, index: 0, to: MDFBusLogging.writeFrameChannel(&image, source: source, fd: group.logsFDFrames))
            return channelGroup
        }
        let names = channelNames(group.channels)
        for (index, channel) in group.channels.enumerated() {
            let name = image.text(names[index])
            let unit = channel.unit.isEmpty ? 0 : image.text(channel.unit)
            let conversion = writeConversion(&image, channel)
            let dataType: UInt8
            switch channel.storage {
            case .unsigned: dataType = 0
            case .signed: dataType = 2
            case .float32, .float64: dataType = 4
            }
            let cn = image.block("##CN", links: [0, 0, name, source, conversion, 0, unit, 0],
                                 data: channelData(type: 0, sync: 0, dataType: dataType,
                                                   byteOffset: UInt32(layout.valueOffsets[index]),
                                                   bits: UInt32(channel.storage.byteCount * 8),
                                                   invalidationBit: UInt32(index)))
            image.setLink(of: previous, index: 0, to: cn)
            previous = cn
        }
        return channelGroup
    }

    static func channelData(type: UInt8, sync: UInt8, dataType: UInt8, byteOffset: UInt32, bitOffset: UInt8 = 0, bits: UInt32,
                            invalidationBit: UInt32?, flags: UInt32 = 0) -> [UInt8] {
        var cn = MDFFields()
        cn.u8(type); cn.u8(sync); cn.u8(dataType); cn.u8(bitOffset)
        cn.u32(byteOffset)
        cn.u32(bits)
        cn.u32(flags | (invalidationBit == nil ? 0 : 0x02))   // flags: invalidation bit valid
        cn.u32(invalidationBit ?? 0)
        cn.u8(0); cn.u8(0); cn.u16(0)
        for _ in 0..<6 { cn.f64(0) }
        return cn.bytes
    }

    /// The channels' names in the file: a signal recorded again in its group with another storage
    /// is named `<signal>:float32` (or `:float64`, `:raw`). Two channels of one name in a group
    /// made asammdf's get(name) refuse ("Multiple occurrences").
    static func channelNames(_ channels: [ChannelSpec]) -> [String] {
        var seen: Set<String> = []
        return channels.map { channel in
            if seen.insert(channel.name).inserted { return channel.name }
            switch channel.storage {
            case .float32: return channel.name + ":float32"
            case .float64: return channel.name + ":float64"
            case .unsigned, .signed: return channel.name + ":raw"
            }
        }
    }

    /// Linear conversion for scaled raw channels; value-to-text for value tables (its default
    /// falls back to the linear conversion, or identity, so untabled raw values still read physical).
    private static func writeConversion(_ image: inout MDFImage, _ channel: ChannelSpec) -> UInt64 {
        let isRaw: Bool
        switch channel.storage {
        case .unsigned, .signed: isRaw = true
        case .float32, .float64: isRaw = false
        }
        var linear: UInt64 = 0
        if isRaw && (channel.factor != 1 || channel.offset != 0) {
            var cc = MDFFields()
            cc.u8(1); cc.u8(0); cc.u16(0); cc.u16(0); cc.u16(2)
            cc.f64(0); cc.f64(0)
            cc.f64(channel.offset); cc.f64(channel.factor)
            linear = image.block("##CC", links: [0, 0, 0, 0], data: cc.bytes)
        }
        let tableApplies = !channel.valueTable.isEmpty && (isRaw || (channel.factor == 1 && channel.offset == 0))
        guard tableApplies else { return linear }
        if linear == 0 {
            // The default for values the table lacks: identity. A NIL default reads as an empty
            // text (asammdf gives b''), so raw 4 of a table 0–3 showed blank.
            var cc = MDFFields()
            cc.u8(1); cc.u8(0); cc.u16(0); cc.u16(0); cc.u16(2)
            cc.f64(0); cc.f64(0)
            cc.f64(0); cc.f64(1)
            linear = image.block("##CC", links: [0, 0, 0, 0], data: cc.bytes)
        }
        let entries = channel.valueTable.sorted { $0.key < $1.key }
        var refs: [UInt64] = [0, 0, 0, 0]
        for entry in entries { refs.append(image.text(entry.text)) }
        refs.append(linear)
        var cc = MDFFields()
        cc.u8(7); cc.u8(0); cc.u16(0); cc.u16(UInt16(entries.count + 1)); cc.u16(UInt16(entries.count))
        cc.f64(0); cc.f64(0)
        // An unsigned channel's key past Int64.max is held as its bit pattern (DBC VAL_ 2^64 − 1).
        var unsigned = false
        if case .unsigned = channel.storage { unsigned = true }
        for entry in entries { cc.f64(unsigned ? Double(UInt64(bitPattern: entry.key)) : Double(entry.key)) }
        return image.block("##CC", links: refs, data: cc.bytes)
    }

    private static func xml(_ text: String) -> String {
        text.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
