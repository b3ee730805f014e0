// Bounds-checked access to the blocks of an MDF4 file held in memory. Every link, length and
// count read from the file is checked against the file's size before it is followed, so a
// truncated or corrupted file yields an error naming the byte offset and block — never a trap.
import DAQCore

/// One block's common header, read and checked: `##XX`, length, links.
struct MDFBlock {
    /// Address of the block in the file.
    let address: Int
    /// The four-character id (`##DG`, …).
    let id: String
    /// Whole block length (header + links + data), clamped to the file for unfinalized data blocks.
    let length: Int
    let links: [Int]
    /// Offset of the data section (after the links).
    var dataStart: Int { address + 24 + 8 * links.count }
    var dataLength: Int { length - 24 - 8 * links.count }
}

/// A file's bytes with checked readers for integers, blocks and texts.
struct MDFBytes {
    /// The whole file (an array's storage, or a mapping of the file).
    let bytes: UnsafeRawBufferPointer
    /// The name used in errors (the path the user gave).
    let source: String

    var count: Int { bytes.count }

    func error(_ message: String, at offset: Int, block: String) -> DAQError {
        DAQError(.malformedInput, message, at: InputLocation(file: source, field: "offset \(offset), \(block)"))
    }

    func u8(_ offset: Int, block: String) throws(DAQError) -> UInt8 {
        guard offset >= 0, offset < count else { throw error("field beyond the end of the file (\(count) bytes)", at: offset, block: block) }
        return bytes[offset]
    }

    func u16(_ offset: Int, block: String) throws(DAQError) -> UInt16 {
        UInt16(truncatingIfNeeded: try unsigned(offset, size: 2, block: block))
    }

    func u32(_ offset: Int, block: String) throws(DAQError) -> UInt32 {
        UInt32(truncatingIfNeeded: try unsigned(offset, size: 4, block: block))
    }

    func u64(_ offset: Int, block: String) throws(DAQError) -> UInt64 {
        try unsigned(offset, size: 8, block: block)
    }

    func f64(_ offset: Int, block: String) throws(DAQError) -> Double {
        Double(bitPattern: try u64(offset, block: block))
    }

    /// `size` bytes little-endian at `offset`.
    func unsigned(_ offset: Int, size: Int, block: String) throws(DAQError) -> UInt64 {
        guard offset >= 0, size <= 8, offset <= count - size else {
            throw error("\(size)-byte field beyond the end of the file (\(count) bytes)", at: offset, block: block)
        }
        var value: UInt64 = 0
        for index in 0..<size { value |= UInt64(bytes[offset + index]) << (8 * UInt64(index)) }
        return value
    }

    /// Reads the block header at `address`; `expected` lists the ids allowed there.
    /// `openEnded` (unfinalized files): a block whose length runs past the file end is clamped.
    func block(at address: Int, expected: [String], context: String, openEnded: Bool = false) throws(DAQError) -> MDFBlock {
        let wanted = expected.joined(separator: "/")
        guard address > 0, address % 8 == 0, address <= count - 24 else {
            throw error("link from \(context) to \(wanted) points outside the file (\(count) bytes) or off the 8-byte grid",
                        at: address, block: wanted)
        }
        let id = String(decoding: bytes[address..<(address + 4)], as: UTF8.self)
        guard expected.contains(id) else {
            throw error("expected \(wanted) (linked from \(context)), found \(printable(address))", at: address, block: wanted)
        }
        let declared = try u64(address + 8, block: id)
        let linkCount = try u64(address + 16, block: id)
        guard linkCount <= UInt64(count / 8), declared >= 24 + 8 * linkCount else {
            throw error("block length \(declared) cannot hold \(linkCount) links", at: address, block: id)
        }
        var length = Int(clamping: declared)
        if length > count - address {
            guard openEnded else {
                throw error("block of \(declared) bytes runs past the end of the file (\(count) bytes)", at: address, block: id)
            }
            length = count - address
            guard length >= 24 + 8 * Int(linkCount) else {
                throw error("block header cut off by the end of the file", at: address, block: id)
            }
        }
        var links: [Int] = []
        links.reserveCapacity(Int(linkCount))
        for index in 0..<Int(linkCount) {
            let link = try u64(address + 24 + 8 * index, block: id)
            guard link < UInt64(count) || link == 0 else {
                throw error("link \(index) (\(link)) points past the end of the file (\(count) bytes)",
                            at: address + 24 + 8 * index, block: id)
            }
            links.append(Int(link))
        }
        return MDFBlock(address: address, id: id, length: length, links: links)
    }

    /// The data field at `offset` inside `block`, checked to lie within the block.
    func requireData(_ block: MDFBlock, bytes size: Int) throws(DAQError) {
        guard block.dataLength >= size else {
            throw error("block too short: \(block.dataLength) data bytes, need \(size)", at: block.address, block: block.id)
        }
    }

    /// The text of a `##TX`/`##MD` block (empty for link 0).
    func text(at address: Int, context: String) throws(DAQError) -> String {
        guard address != 0 else { return "" }
        let block = try block(at: address, expected: ["##TX", "##MD"], context: context)
        let data = bytes[block.dataStart..<(block.address + block.length)]
        let end = data.firstIndex(of: 0) ?? data.endIndex
        return String(decoding: data[data.startIndex..<end], as: UTF8.self)
    }

    private func printable(_ address: Int) -> String {
        let raw = bytes[address..<(address + 4)]
        guard raw.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            return "bytes " + raw.map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined(separator: " ")
        }
        return "\"" + String(decoding: raw, as: UTF8.self) + "\""
    }
}

/// Follows a chain of blocks through link `next`, refusing cycles and chains longer than the file
/// could hold.
struct MDFChain {
    private var seen: Set<Int> = []
    private let limit: Int

    init(fileSize: Int) { limit = fileSize / 24 + 1 }

    /// Registers `address`; throws when the chain loops or grows beyond the file's capacity.
    mutating func visit(_ address: Int, in file: MDFBytes, block: String) throws(DAQError) {
        guard seen.insert(address).inserted else {
            throw file.error("chain of \(block) blocks loops back to this block", at: address, block: block)
        }
        guard seen.count <= limit else {
            throw file.error("chain of \(block) blocks longer than the file could hold", at: address, block: block)
        }
    }
}
