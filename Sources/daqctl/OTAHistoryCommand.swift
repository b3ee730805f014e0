// `daqctl ota history`: what the collector heard from devices on devices/<id>/ota/status, as a
// table per device (or the JSON lines as stored).
import ArgumentParser
import DAQCore
import Foundation

extension OTACommand {
    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "Show devices' update history as kept by `daqctl collect`.",
            discussion: """
                Reads OUT/<device>/ota-history.jsonl under the collector's output directory: every \
                state change a device reported (downloading, verified, installed, trial-boot, \
                committed, rolled-back, download-failed, refused) with version, slot and reason. \
                A certificate renewal (renewal-installed, renewed, renewal-rolled-back, \
                renewal-refused) is no release: its version shows as -, its serial in the reason.

                Examples:
                  daqctl ota history --collected collected              (every device)
                  daqctl ota history --collected collected --device rig-01 --json
                """
        )

        @Option(help: "The collector's output directory (`daqctl collect --out`).")
        var collected: String

        @Option(help: "Only this device.")
        var device: String?

        @Flag(help: "Print the stored JSON lines instead of a table.")
        var json = false

        func run() throws {
            // A missing path, a file and an empty directory all said "no update history under X".
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: collected, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("daqctl ota history: \(collected): no such directory (--collected takes the collector's output directory, `daqctl collect --out`)\n".utf8))
                throw ExitCode(1)
            }
            guard isDirectory.boolValue else {
                FileHandle.standardError.write(Data("daqctl ota history: \(collected): not a directory (--collected takes the collector's output directory, `daqctl collect --out`)\n".utf8))
                throw ExitCode(1)
            }
            let devices: [String]
            if let device {
                devices = [device]
            } else {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: collected)) ?? []
                devices = names.filter { FileManager.default.fileExists(atPath: "\(collected)/\($0)/ota-history.jsonl") }.sorted()
            }
            guard !devices.isEmpty else {
                FileHandle.standardError.write(Data(("daqctl ota history: no device under \(collected) has an update history "
                    + "(<device>/ota-history.jsonl): none has reported an update yet, or it is not a `daqctl collect --out` directory\n").utf8))
                throw ExitCode(1)
            }
            // Every device's lines are checked before any is printed, --json too (it passed damaged
            // lines on).
            var histories: [(name: String, text: String, objects: [[String: Any]])] = []
            for name in devices {
                let path = "\(collected)/\(name)/ota-history.jsonl"
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    FileHandle.standardError.write(Data("daqctl ota history: \(path): no update history for device '\(name)'\n".utf8))
                    throw ExitCode(1)
                }
                var objects: [[String: Any]] = []
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
                    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                        let error = DAQError.malformed("not a JSON object: '\(line.prefix(60))'", file: path, line: number + 1, field: nil)
                        FileHandle.standardError.write(Data("daqctl ota history: \(error)\n".utf8))
                        throw ExitCode(1)
                    }
                    objects.append(object)
                }
                histories.append((name, text, objects))
            }
            for (name, text, objects) in histories {
                if json {
                    for line in text.split(separator: "\n") { print(line) }
                    continue
                }
                print("\(name):")
                print("  " + ["seq", "time (UTC)", "kind", "status", "version", "slot", "reason"].joined(separator: "\t"))
                for object in objects {
                    let time = (object["time"] as? NSNumber).map { Self.utc($0.int64Value) } ?? "?"
                    let fields = [(object["seq"] as? NSNumber)?.stringValue ?? "?", time, object["kind"] as? String ?? "?",
                                  object["status"] as? String ?? "?", (object["version"] as? NSNumber).map { $0 == 0 ? "-" : $0.stringValue } ?? "?",
                                  object["slot"] as? String ?? "-", object["reason"] as? String ?? ""]
                    print("  " + fields.joined(separator: "\t"))
                }
            }
        }

        static func utc(_ seconds: Int64) -> String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        }
    }
}
