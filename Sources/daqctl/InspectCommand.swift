// `daqctl inspect`: the structure of an MDF4 file as the seed's Fig. 4 table — one row per channel
// group with its acquisition name, channel count, cycles and raw size — plus each group's time
// range; `--json` for machines. Malformed files give an error naming the byte offset and block.
import ArgumentParser
import DAQCore
import Foundation
import MDF

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show an MDF4 file's channel groups: acquisition name, channels, cycles, raw size, time range.",
        discussion: """
            Channels count every CN block of a group, the time master included (as asammdf \
            lists them). Raw size = cycles × record bytes (plus the record id in unsorted data \
            groups). Times are the first and last time-master values (seconds since the file's \
            start time). Unfinalized ("UnFinMF ") files are read with the cycles actually present.

            Exit status 1 with "file [offset N, ##XX]: reason" when the file is malformed or \
            truncated.

            Example:
              daqctl inspect run.mf4
              daqctl inspect run.mf4 --json | jq '.groups[] | {acquisition_name, cycles}'
            """
    )

    @Argument(help: "The MDF4 file (.mf4).")
    var file: String

    @Flag(help: "Print JSON instead of the table.")
    var json = false

    func run() throws {
        do throws(DAQError) {
            // Mapped, not read: a file of gigabytes is summarised from the pages its blocks and
            // its groups' first and last records are on (reading it whole took its size in RAM).
            let summary = try MappedFile.withContents(of: file) { raw throws(DAQError) in try MDFReader.summary(of: raw, source: file) }
            print(json ? Self.json(summary, file: file) : Self.table(summary, file: file), terminator: "")
        } catch {
            FileHandle.standardError.write(Data("daqctl inspect: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func table(_ summary: MDFFileSummary, file: String) -> String {
        var out = "\(file): MDF \(summary.version) by \(summary.program), "
            + (summary.isFinalized ? "finalized" : "unfinalized (flags 0x\(String(summary.unfinalizedFlags, radix: 16)))")
            + ", \(summary.fileBytes) bytes, start \(summary.startNanoseconds) ns\n"
        let rows = summary.groups.map { group in
            [String(group.dataGroup), group.acquisitionName.isEmpty ? "-" : group.acquisitionName, String(group.channelCount),
             String(group.cycles), String(group.rawBytes) + (group.compressed ? " (DZ)" : ""), range(group.timeRange)]
        }
        let header = ["DG", "acquisition name", "channels", "cycles", "raw bytes", "time range [s]"]
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 1 || column == 5 ? cell + pad : pad + cell  // names and ranges left, numbers right
            }.joined(separator: "  ") + "\n"
        }
        out += line(header)
        for row in rows { out += line(row) }
        let totalCycles = summary.groups.reduce(UInt64(0)) { $0 &+ $1.cycles }
        let totalBytes = summary.groups.reduce(UInt64(0)) { $0 &+ $1.rawBytes }
        out += "total: \(summary.groups.count) channel groups, \(totalCycles) cycles, \(totalBytes) raw bytes, time \(range(summary.timeRange))\n"
        return out
    }

    static func json(_ summary: MDFFileSummary, file: String) -> String {
        func string(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                default:
                    if scalar.value < 0x20 {
                        let hex = String(scalar.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            return out + "\""
        }
        func number(_ value: Double?) -> String { value.map { $0.isFinite ? "\($0)" : "null" } ?? "null" }
        let groups = summary.groups.map { group in
            "{\"data_group\": \(group.dataGroup), \"acquisition_name\": \(string(group.acquisitionName)), "
                + "\"record_id\": \(group.recordID), \"channels\": \(group.channelCount), \"cycles\": \(group.cycles), "
                + "\"record_bytes\": \(group.recordBytes), \"raw_bytes\": \(group.rawBytes), \"compressed\": \(group.compressed), "
                + "\"time_start\": \(number(group.timeRange?.lowerBound)), \"time_end\": \(number(group.timeRange?.upperBound))}"
        }
        return "{\"file\": \(string(file)), \"version\": \(string(summary.version)), \"program\": \(string(summary.program)), "
            + "\"finalized\": \(summary.isFinalized), \"unfinalized_flags\": \(summary.unfinalizedFlags), "
            + "\"start_ns\": \(summary.startNanoseconds), \"file_bytes\": \(summary.fileBytes), "
            + "\"time_start\": \(number(summary.timeRange?.lowerBound)), \"time_end\": \(number(summary.timeRange?.upperBound)), "
            + "\"groups\": [\(groups.joined(separator: ", "))]}\n"
    }

    private static func range(_ range: ClosedRange<Double>?) -> String {
        guard let range else { return "-" }
        return "\(range.lowerBound) … \(range.upperBound)"
    }
}
