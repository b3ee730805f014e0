// What the collector says about a device that stops sending: one line when it has been quiet for
// a while, one more when it is heard again. A pure state machine; times are the loop's clock (ns).

/// Devices heard from in this run, and which of them have gone quiet. A device is quiet once
/// nothing came from it for `after` while the collector held its session: time the collector
/// itself was away from the broker does not count (the broker kept the batches, and the
/// collector says so itself).
struct QuietDevices {
    let after: Int64
    private var lastHeard: [String: Int64] = [:]
    private var quiet: Set<String> = []
    /// Since when the collector holds its subscriptions (nil: not connected now).
    private var connectedSince: Int64?

    init(after: Int64) {
        self.after = after
    }

    /// The collector holds its session and subscriptions again at `now`.
    mutating func connected(now: Int64) { connectedSince = now }

    /// The collector lost its session.
    mutating func disconnected() { connectedSince = nil }

    /// A batch from `device` at `now`; the line to print if it had gone quiet.
    mutating func heard(_ device: String, now: Int64) -> String? {
        let before = lastHeard.updateValue(now, forKey: device)
        guard quiet.remove(device) != nil, let before else { return nil }
        return "\(device): heard again after \(Self.describe(now - before)) quiet"
    }

    /// Devices that went quiet by `now` and were not reported yet, by name, each with the time
    /// since its last batch.
    mutating func tick(now: Int64) -> [(device: String, silent: Int64)] {
        guard let since = connectedSince else { return [] }
        var found: [(device: String, silent: Int64)] = []
        for (device, last) in lastHeard where !quiet.contains(device) && now - Swift.max(last, since) >= after {
            quiet.insert(device)
            found.append((device, now - last))
        }
        return found.sorted { $0.device < $1.device }
    }

    /// A span of time for a log line: "45 s", "12 min 5 s", "3 h 20 min".
    static func describe(_ nanoseconds: Int64) -> String {
        let seconds = Int((Double(nanoseconds) / 1e9).rounded())
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds / 60) min \(seconds % 60) s" }
        let minutes = seconds / 60
        return minutes % 60 == 0 ? "\(minutes / 60) h" : "\(minutes / 60) h \(minutes % 60) min"
    }
}
