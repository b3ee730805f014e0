// The data section of one data group as a logical byte stream: the DT blocks behind a DG's data
// link (directly, through a DL chain, or an HL → DL chain), read in place without copying.
import DAQCore

/// The record bytes of one data group, possibly spread over several DT blocks.
struct MDFDataStream {
    /// (file offset, length) of each DT payload, in order.
    private(set) var fragments: [(offset: Int, length: Int)] = []
    /// Logical start of each fragment.
    private var starts: [Int] = []
    /// Total bytes of uncompressed record data reachable in place.
    private(set) var count = 0
    /// Bytes held in ##DZ blocks (original length): counted but not readable here.
    private(set) var compressedBytes = 0
    /// Whether any data is deflate-compressed (records beyond the DT part are not inspected).
    var hasCompressedData: Bool { compressedBytes > 0 }

    /// Collects the data blocks linked from a DG at `address` (0 = no data).
    /// `openBlock`: the address of an unfinalized file's open ##DT, whose data runs to the file end.
    init(file: MDFBytes, address: Int, openEnded: Bool, openBlock: Int? = nil, context: String) throws(DAQError) {
        guard address != 0 else { return }
        if address == openBlock {
            let block = try file.block(at: address, expected: ["##DT"], context: context, openEnded: true)
            try add(MDFBlock(address: address, id: block.id, length: file.count - address, links: block.links), file: file)
            return
        }
        let first = try file.block(at: address, expected: ["##DT", "##DL", "##HL", "##DZ", "##RD"], context: context,
                                   openEnded: openEnded)
        switch first.id {
        case "##HL":
            guard let list = first.links.first, list != 0 else { return }
            try collectList(file: file, address: list, openEnded: openEnded)
        case "##DL":
            try collectList(file: file, address: address, openEnded: openEnded)
        default:
            try add(first, file: file)
        }
    }

    private mutating func collectList(file: MDFBytes, address: Int, openEnded: Bool) throws(DAQError) {
        var chain = MDFChain(fileSize: file.count)
        var next = address
        while next != 0 {
            try chain.visit(next, in: file, block: "##DL")
            let list = try file.block(at: next, expected: ["##DL"], context: "##DL chain")
            guard !list.links.isEmpty else { throw file.error("##DL without links", at: next, block: "##DL") }
            for (index, link) in list.links.dropFirst().enumerated() where link != 0 {
                let data = try file.block(at: link, expected: ["##DT", "##DZ", "##RD"], context: "##DL at \(next) entry \(index)",
                                          openEnded: openEnded)
                try add(data, file: file)
            }
            next = list.links[0]
        }
    }

    private mutating func add(_ block: MDFBlock, file: MDFBytes) throws(DAQError) {
        if block.id == "##DZ" {
            try file.requireData(block, bytes: 24)
            let original = try file.u64(block.dataStart + 8, block: "##DZ")
            guard original <= UInt64(Int.max / 2) else { throw file.error("##DZ original length \(original) is absurd", at: block.address, block: "##DZ") }
            let (sum, overflow) = compressedBytes.addingReportingOverflow(Int(original))
            guard !overflow, sum <= Int.max / 2 else {
                throw file.error("##DZ original lengths add up past \(Int.max / 2) bytes", at: block.address, block: "##DZ")
            }
            compressedBytes = sum
            return
        }
        fragments.append((block.dataStart, block.dataLength))
        starts.append(count)
        count += block.dataLength
    }

    /// `size` (≤ 8) bytes little-endian at logical offset `position`, or nil beyond the data.
    func load(_ file: MDFBytes, at position: Int, size: Int) -> UInt64? {
        guard position >= 0, size <= 8, position <= count - size else { return nil }
        var value: UInt64 = 0
        for index in 0..<size {
            guard let byte = byte(file, at: position + index) else { return nil }
            value |= UInt64(byte) << (8 * UInt64(index))
        }
        return value
    }

    private func byte(_ file: MDFBytes, at position: Int) -> UInt8? {
        // Binary search for the fragment holding `position`.
        var low = 0, high = starts.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if starts[mid] <= position { low = mid } else { high = mid - 1 }
        }
        guard low < fragments.count else { return nil }
        let inside = position - starts[low]
        guard inside >= 0, inside < fragments[low].length else { return nil }
        return file.bytes[fragments[low].offset + inside]
    }
}
