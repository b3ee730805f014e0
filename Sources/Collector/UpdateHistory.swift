// The collector's update history per device: each OTA status report from
// `devices/<id>/ota/status`, checked, de-duplicated by its sequence number (QoS 1 may deliver a
// report twice; a device resends unacknowledged reports after a reconnect) and appended to
// `<output>/<device>/ota-history.jsonl` in arrival order.
import DAQCore
import Foundation
import JournalStore
import OTA

/// Appends checked status reports to per-device history files.
final class UpdateHistory {
    private let output: String
    /// Highest report sequence stored per device and outbox (loaded from the file on first use).
    private var newest: [String: [String: UInt64]] = [:]

    init(output: String) { self.output = output }

    static func path(output: String, device: String) -> String { "\(output)/\(device)/ota-history.jsonl" }

    /// Stores `payload` from `device` unless it is malformed (thrown, naming the field) or a repeat (false).
    @discardableResult
    func record(device: String, payload: [UInt8], source: String) throws(DAQError) -> Bool {
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any] else {
                throw DAQError(.malformedInput, "status report is not a JSON object", at: InputLocation(file: source))
            }
            object = parsed
        } catch let error as DAQError { throw error } catch {
            throw DAQError(.malformedInput, "status report is not JSON: \(error.localizedDescription)", at: InputLocation(file: source))
        }
        for field in ["seq", "version"] where !(object[field] is NSNumber) {
            throw DAQError(.malformedInput, "status report lacks a numeric \(field)", at: InputLocation(file: source, field: field))
        }
        for field in ["kind", "status"] where !(object[field] is String) {
            throw DAQError(.malformedInput, "status report lacks \(field)", at: InputLocation(file: source, field: field))
        }
        guard SafeName.isSafe(device) else {
            throw DAQError(.malformedInput, "device id '\(device)' is not a safe name", at: InputLocation(file: source, field: "device"))
        }
        let sequence = (object["seq"] as! NSNumber).uint64Value
        let path = Self.path(output: output, device: device)
        // Numbers are per outbox: a device whose outbox started again (a new card) numbers from 1
        // again, and its reports were all dropped as repeats of the old outbox's.
        let outbox = object["outbox"] as? String ?? ""
        if newest[device] == nil { newest[device] = Self.lastSequences(in: path) }
        guard sequence > newest[device]![outbox, default: 0] else { return false }
        // Each directory made here is synced into its parent (the device's data, arriving later,
        // finds it made and does not sync it again; an ack may depend on it).
        try Directories.create(output)
        try Directories.create("\(output)/\(device)")
        try DurableLines.append(payload + [UInt8(ascii: "\n")], to: path)
        newest[device]![outbox] = sequence
        return true
    }

    /// The highest report number stored per outbox ("" for reports that name none).
    private static func lastSequences(in path: String) -> [String: UInt64] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var newest: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let sequence = object["seq"] as? NSNumber {
                let outbox = object["outbox"] as? String ?? ""
                newest[outbox] = max(newest[outbox, default: 0], sequence.uint64Value)
            }
        }
        return newest
    }
}
