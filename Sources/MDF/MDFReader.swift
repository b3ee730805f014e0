// Reads the structure of an MDF 4.1x file — ID, HD, the DG chain, each CG (acquisition name,
// cycles, record size), its channel count and data sizes, and each group's time range from the
// first and last time-master values — for `daqctl inspect`. Pure: the caller supplies the bytes.
// Sorted and unsorted data groups, DT/DL/HL chains and unfinalized ("UnFinMF ") files are read;
// ##DZ data is sized but not inflated.
import DAQCore

/// What `MDFReader` found in a file.
public struct MDFFileSummary: Sendable, Hashable {
    /// "4.11" etc., from the ID block.
    public var version: String
    /// The writing program from the ID block.
    public var program: String
    /// False for "UnFinMF " files.
    public var isFinalized: Bool
    public var unfinalizedFlags: UInt16
    /// HD start time, ns since 1970 UTC.
    public var startNanoseconds: UInt64
    public var fileBytes: Int
    public var groups: [MDFGroupSummary]

    /// Earliest first and latest last master value over all groups.
    public var timeRange: ClosedRange<Double>? {
        let ranges = groups.compactMap(\.timeRange)
        guard let low = ranges.map(\.lowerBound).min(), let high = ranges.map(\.upperBound).max() else { return nil }
        return low...high
    }
}

/// One channel group of a file.
public struct MDFGroupSummary: Sendable, Hashable {
    /// Index of the data group in the DG chain.
    public var dataGroup: Int
    /// The acquisition name ("Time 5ms"), empty when the CG has none.
    public var acquisitionName: String
    public var recordID: UInt64
    /// CN blocks in the group, time master included (what asammdf lists as the group's channels).
    public var channelCount: Int
    /// Cycles: the CG's count, or for unfinalized files the records actually present.
    public var cycles: UInt64
    /// Bytes of one record (data + invalidation bytes, without the record id).
    public var recordBytes: Int
    /// Raw record bytes of this group in the file (cycles × (record id + record bytes)).
    public var rawBytes: UInt64
    /// Whether part of the data is deflate-compressed (time range then covers only readable records).
    public var compressed: Bool
    /// Values of the time master at the first and last record, when both could be read.
    public var timeRange: ClosedRange<Double>?
}

/// Parses MDF 4.1x structure, bounds-checking every link and length.
public enum MDFReader {
    /// Summarises `bytes`; `source` names the file in errors ("file [offset N, ##XX]: …").
    public static func summary(of bytes: [UInt8], source: String) throws(DAQError) -> MDFFileSummary {
        try bytes.withUnsafeBytes { raw in Result { () throws(DAQError) in try summary(of: raw, source: source) } }.get()
    }

    /// Summarises the file in `bytes` (a mapping of it: only the blocks read and the first and
    /// last records of each group are touched, whatever the file's size).
    public static func summary(of bytes: UnsafeRawBufferPointer, source: String) throws(DAQError) -> MDFFileSummary {
        let file = MDFBytes(bytes: bytes, source: source)
        guard file.count >= 64 + 24 else {
            throw file.error("file of \(file.count) bytes is too short for the ID and HD blocks", at: 0, block: "ID")
        }
        let fileID = String(decoding: bytes[0..<8], as: UTF8.self)
        guard fileID == "MDF     " || fileID == "UnFinMF " else {
            throw file.error("not an MDF file (file id \"\(fileID)\")", at: 0, block: "ID")
        }
        let version = String(decoding: bytes[8..<16], as: UTF8.self).trimmingSpaces()
        let versionNumber = try file.u16(28, block: "ID")
        guard versionNumber >= 400, versionNumber < 500 else {
            throw file.error("MDF version \(versionNumber) is not 4.x", at: 28, block: "ID")
        }
        let finalized = fileID == "MDF     "
        let flags = finalized ? 0 : try file.u16(60, block: "ID")
        let header = try file.block(at: 64, expected: ["##HD"], context: "ID")
        guard header.links.count >= 6 else { throw file.error("##HD has \(header.links.count) links, needs 6", at: 64, block: "##HD") }
        try file.requireData(header, bytes: 8)
        let start = try file.u64(header.dataStart, block: "##HD")

        let openBlock = flags & 0x04 != 0 ? try lastDataBlock(file, firstDataGroup: header.links[0]) : nil
        var groups: [MDFGroupSummary] = []
        var chain = MDFChain(fileSize: file.count)
        var next = header.links[0]
        var index = 0
        while next != 0 {
            try chain.visit(next, in: file, block: "##DG")
            let dataGroup = try file.block(at: next, expected: ["##DG"], context: index == 0 ? "##HD" : "##DG \(index - 1)")
            guard dataGroup.links.count >= 4 else { throw file.error("##DG has \(dataGroup.links.count) links, needs 4", at: next, block: "##DG") }
            try file.requireData(dataGroup, bytes: 1)
            groups += try readDataGroup(file, dataGroup, index: index, unfinalizedFlags: flags, openBlock: openBlock)
            next = dataGroup.links[0]
            index += 1
        }
        return MDFFileSummary(version: version, program: String(decoding: bytes[16..<24], as: UTF8.self).trimmingSpaces(),
                              isFinalized: finalized, unfinalizedFlags: flags, startNanoseconds: start,
                              fileBytes: file.count, groups: groups)
    }

    /// A CG as read, before its records are looked at.
    private struct GroupHeader {
        var block: MDFBlock
        var recordID: UInt64
        var cycles: UInt64
        var isVariableLength: Bool
        var recordBytes: Int
        var acquisitionName: String
        var channelCount: Int
        var master: MDFMaster?
    }

    /// The ##DT an unfinalized writer still appends to: the data block with the highest address
    /// linked directly from a DG (flag 0x04: its length is "until the file end").
    private static func lastDataBlock(_ file: MDFBytes, firstDataGroup: Int) throws(DAQError) -> Int? {
        var chain = MDFChain(fileSize: file.count)
        var next = firstDataGroup
        var last: Int?
        while next != 0 {
            try chain.visit(next, in: file, block: "##DG")
            let dataGroup = try file.block(at: next, expected: ["##DG"], context: "DG chain")
            guard dataGroup.links.count >= 4 else { throw file.error("##DG has \(dataGroup.links.count) links, needs 4", at: next, block: "##DG") }
            if dataGroup.links[2] > (last ?? 0) { last = dataGroup.links[2] }
            next = dataGroup.links[0]
        }
        guard let last, last <= file.count - 4, file.bytes[last..<(last + 4)].elementsEqual("##DT".utf8) else { return nil }
        return last
    }

    private static func readDataGroup(_ file: MDFBytes, _ dg: MDFBlock, index: Int, unfinalizedFlags: UInt16,
                                      openBlock: Int?) throws(DAQError) -> [MDFGroupSummary] {
        let idSize = Int(try file.u8(dg.dataStart, block: "##DG"))
        guard [0, 1, 2, 4, 8].contains(idSize) else {
            throw file.error("record id size \(idSize) is not 0, 1, 2, 4 or 8", at: dg.dataStart, block: "##DG")
        }
        var headers: [GroupHeader] = []
        var chain = MDFChain(fileSize: file.count)
        var next = dg.links[1]
        while next != 0 {
            try chain.visit(next, in: file, block: "##CG")
            let cg = try file.block(at: next, expected: ["##CG"], context: "##DG at \(dg.address)")
            guard cg.links.count >= 6 else { throw file.error("##CG has \(cg.links.count) links, needs 6", at: next, block: "##CG") }
            try file.requireData(cg, bytes: 32)
            let flags = try file.u16(cg.dataStart + 16, block: "##CG")
            let dataBytes = Int(try file.u32(cg.dataStart + 24, block: "##CG"))
            let invalidationBytes = Int(try file.u32(cg.dataStart + 28, block: "##CG"))
            var header = GroupHeader(block: cg, recordID: try file.u64(cg.dataStart, block: "##CG"),
                                     cycles: try file.u64(cg.dataStart + 8, block: "##CG"),
                                     isVariableLength: flags & 1 != 0, recordBytes: dataBytes + invalidationBytes,
                                     acquisitionName: try file.text(at: cg.links[2], context: "##CG at \(next)"),
                                     channelCount: 0, master: nil)
            (header.channelCount, header.master) = try readChannels(file, cg)
            headers.append(header)
            next = cg.links[0]
        }
        guard idSize > 0 || headers.count <= 1 else {
            throw file.error("sorted data group (record id size 0) holds \(headers.count) channel groups", at: dg.address, block: "##DG")
        }
        let openEnded = unfinalizedFlags & 0x04 != 0 || unfinalizedFlags & 0x01 != 0
        let data = try MDFDataStream(file: file, address: dg.links[2], openEnded: openEnded, openBlock: openBlock,
                                     context: "##DG at \(dg.address)")
        let derive = unfinalizedFlags != 0
        if idSize == 0 {
            return try headers.map { header throws(DAQError) in
                try sortedSummary(file, header, data: data, index: index, derive: derive)
            }
        }
        return try unsortedSummaries(file, headers, data: data, idSize: idSize, index: index, derive: derive, dg: dg)
    }

    private static func readChannels(_ file: MDFBytes, _ cg: MDFBlock) throws(DAQError) -> (Int, MDFMaster?) {
        var chain = MDFChain(fileSize: file.count)
        var count = 0
        var master: MDFMaster?
        // Channels composed of channels (a bus-logging group's CAN_DataFrame) count their members
        // too, as asammdf lists them; one visited set guards all chains against loops.
        var chains = [cg.links[1]]
        while let first = chains.popLast() {
            var next = first
            while next != 0 {
                try chain.visit(next, in: file, block: "##CN")
                let cn = try file.block(at: next, expected: ["##CN"], context: "##CG at \(cg.address)")
                guard cn.links.count >= 8 else { throw file.error("##CN has \(cn.links.count) links, needs 8", at: next, block: "##CN") }
                try file.requireData(cn, bytes: 16)
                let type = try file.u8(cn.dataStart, block: "##CN")
                if master == nil, type == 2 || type == 3 {
                    master = try MDFMaster(file, cn)
                }
                count += 1
                let composition = cn.links[1]
                if composition != 0, composition <= file.count - 4,
                   file.bytes[composition..<(composition + 4)].elementsEqual("##CN".utf8) {
                    chains.append(composition)
                }
                next = cn.links[0]
            }
        }
        return (count, master)
    }

    private static func sortedSummary(_ file: MDFBytes, _ header: GroupHeader, data: MDFDataStream, index: Int,
                                      derive: Bool) throws(DAQError) -> MDFGroupSummary {
        let size = header.recordBytes
        let present = size > 0 ? UInt64(data.count / size) : 0
        var cycles = header.cycles
        if derive {
            cycles = present
        } else if !data.hasCompressedData, size > 0, cycles > present {
            throw file.error("##CG declares \(cycles) cycles of \(size) bytes but its data holds \(data.count) bytes",
                             at: header.block.address, block: "##CG")
        }
        var range: ClosedRange<Double>?
        if let master = header.master, cycles > 0, present > 0 {
            let last = Int(min(cycles, present)) - 1
            if let first = master.value(file, data, recordStart: 0, index: 0),
               let end = master.value(file, data, recordStart: last * size, index: last) {
                range = min(first, end)...max(first, end)
            }
        }
        return MDFGroupSummary(dataGroup: index, acquisitionName: header.acquisitionName, recordID: header.recordID,
                               channelCount: header.channelCount, cycles: cycles, recordBytes: size,
                               rawBytes: cycles &* UInt64(size), compressed: data.hasCompressedData, timeRange: range)
    }

    /// Walks an unsorted group's records once: counts per record id and the first/last record of each.
    private static func unsortedSummaries(_ file: MDFBytes, _ headers: [GroupHeader], data: MDFDataStream, idSize: Int,
                                          index: Int, derive: Bool, dg: MDFBlock) throws(DAQError) -> [MDFGroupSummary] {
        var byID: [UInt64: Int] = [:]
        for (position, header) in headers.enumerated() { byID[header.recordID] = position }
        var counts = Array(repeating: UInt64(0), count: headers.count)
        var firsts: [Int?] = Array(repeating: nil, count: headers.count)
        var lasts: [Int?] = Array(repeating: nil, count: headers.count)
        var position = 0
        while position < data.count, let id = data.load(file, at: position, size: idSize) {
            guard let group = byID[id] else {
                if derive { break }  // torn tail of an unfinalized file
                throw file.error("unknown record id \(id) at data byte \(position)", at: dg.address, block: "##DG")
            }
            var length = headers[group].recordBytes
            if headers[group].isVariableLength {
                guard let declared = data.load(file, at: position + idSize, size: 4) else { break }
                length = 4 + Int(declared)
            }
            guard position + idSize + length <= data.count else {
                if derive { break }
                throw file.error("record at data byte \(position) (id \(id)) runs past the data", at: dg.address, block: "##DG")
            }
            counts[group] += 1
            if firsts[group] == nil { firsts[group] = position + idSize }
            lasts[group] = position + idSize
            position += idSize + length
        }
        return headers.enumerated().map { position, header in
            var range: ClosedRange<Double>?
            if let master = header.master, let first = firsts[position], let last = lasts[position],
               let a = master.value(file, data, recordStart: first, index: 0),
               let b = master.value(file, data, recordStart: last, index: Int(counts[position]) - 1) {
                range = min(a, b)...max(a, b)
            }
            let cycles = derive ? counts[position] : header.cycles
            return MDFGroupSummary(dataGroup: index, acquisitionName: header.acquisitionName, recordID: header.recordID,
                                   channelCount: header.channelCount, cycles: cycles, recordBytes: header.recordBytes,
                                   rawBytes: cycles &* UInt64(header.recordBytes + idSize), compressed: data.hasCompressedData,
                                   timeRange: range)
        }
    }
}

/// A time master channel: where its value sits in a record and its linear conversion.
struct MDFMaster {
    var isVirtual: Bool
    var dataType: UInt8
    var byteOffset: Int
    var bitOffset: Int
    var bitCount: Int
    var offset = 0.0
    var factor = 1.0

    init(_ file: MDFBytes, _ cn: MDFBlock) throws(DAQError) {
        isVirtual = try file.u8(cn.dataStart, block: "##CN") == 3
        dataType = try file.u8(cn.dataStart + 2, block: "##CN")
        bitOffset = Int(try file.u8(cn.dataStart + 3, block: "##CN") & 7)
        byteOffset = Int(try file.u32(cn.dataStart + 4, block: "##CN"))
        bitCount = Int(try file.u32(cn.dataStart + 8, block: "##CN"))
        let conversion = cn.links[4]
        if conversion != 0 {
            let cc = try file.block(at: conversion, expected: ["##CC"], context: "##CN at \(cn.address)")
            try file.requireData(cc, bytes: 24)
            let type = try file.u8(cc.dataStart, block: "##CC")
            let values = Int(try file.u16(cc.dataStart + 6, block: "##CC"))
            if type == 1, values >= 2 {
                try file.requireData(cc, bytes: 40)
                offset = try file.f64(cc.dataStart + 24, block: "##CC")
                factor = try file.f64(cc.dataStart + 32, block: "##CC")
            }
        }
    }

    /// The master's physical value in the record starting at logical `recordStart` (after the
    /// record id); nil when the type is not a little-endian number this reader handles.
    func value(_ file: MDFBytes, _ data: MDFDataStream, recordStart: Int, index: Int) -> Double? {
        if isVirtual { return offset + factor * Double(index) }
        guard bitCount > 0, bitCount <= 64, bitOffset + bitCount <= 64 else { return nil }
        let size = (bitOffset + bitCount + 7) / 8
        guard let word = data.load(file, at: recordStart + byteOffset, size: size) else { return nil }
        let bits = word >> UInt64(bitOffset)
        let mask: UInt64 = bitCount == 64 ? ~0 : (1 << UInt64(bitCount)) - 1
        let raw = bits & mask
        let value: Double
        switch (dataType, bitCount) {
        case (0, _): value = Double(raw)
        case (2, _):
            let shift = UInt64(64 - bitCount)
            value = Double(Int64(bitPattern: raw << shift) >> Int64(shift))
        case (4, 64): value = Double(bitPattern: raw)
        case (4, 32): value = Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw)))
        default: return nil
        }
        return offset + factor * value
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var text = Substring(self)
        while let last = text.last, last == " " || last == "\0" { text = text.dropLast() }
        return String(text)
    }
}
