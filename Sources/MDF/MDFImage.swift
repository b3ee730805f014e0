// An MDF4 file under construction in memory: blocks appended on 8-byte boundaries, links patched
// once their targets exist. All values little-endian, as ASAM MDF 4 requires.

/// Bytes of an MDF4 file being assembled, with helpers for the common block header and links.
struct MDFImage {
    private(set) var bytes: [UInt8] = []
    /// File offset of `bytes[0]` (an image of blocks appended to an existing file).
    let base: Int

    init(offset: Int = 0) {
        precondition(offset % 8 == 0, "MDF blocks start on 8-byte boundaries")
        base = offset
    }

    /// Appends a block `##XX` with `links` (0 = none, patch later with `setLink`) and `data`;
    /// returns its address.
    @discardableResult
    mutating func block(_ id: String, links: [UInt64], data: [UInt8]) -> UInt64 {
        let address = blockHeader(id, links: links, dataLength: data.count)
        bytes += data
        return address
    }

    /// Appends the header and links of a block `##XX` whose `dataLength` bytes of data follow it
    /// in the file but not in this image (`MDFWriter.plan`); returns its address.
    @discardableResult
    mutating func blockHeader(_ id: String, links: [UInt64], dataLength: Int) -> UInt64 {
        align()
        let address = UInt64(base + bytes.count)
        let idBytes = Array(id.utf8)
        precondition(idBytes.count == 4, "MDF block ids are four characters")
        bytes += idBytes
        bytes += [0, 0, 0, 0]
        append(UInt64(24 + 8 * links.count + dataLength))
        append(UInt64(links.count))
        for link in links { append(link) }
        return address
    }

    /// Sets link `index` of the block at `address`.
    mutating func setLink(of address: UInt64, index: Int, to target: UInt64) {
        write(target, at: Int(address) - base + 24 + 8 * index)
    }

    /// A `##TX` block holding `text` (NUL-terminated, padded to 8 bytes).
    mutating func text(_ text: String, id: String = "##TX") -> UInt64 {
        var data = Array(text.utf8) + [0]
        while data.count % 8 != 0 { data.append(0) }
        return block(id, links: [], data: data)
    }

    mutating func align() {
        while bytes.count % 8 != 0 { bytes.append(0) }
    }

    mutating func appendRaw(_ raw: [UInt8]) { bytes += raw }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    mutating func write<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
    }

    mutating func overwrite(_ raw: [UInt8], at offset: Int) {
        for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
    }
}

/// Little-endian field packing for block data sections.
struct MDFFields {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func i16(_ v: Int16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
    mutating func zeros(_ n: Int) { bytes += Array(repeating: 0, count: n) }
}
