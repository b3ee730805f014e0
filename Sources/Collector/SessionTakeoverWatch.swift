// Session takeovers seen in the broker's own log. With client id = certificate CN, a second
// connection presenting a device's certificate replaces the first; mosquitto 2.0.11 closes the old
// connection without telling its client why (no DISCONNECT 0x8E reaches it: docs/pki.md), but it
// logs "Client <id> already connected, closing old connection." at level E, which the broker
// configuration also publishes on $SYS/broker/log/E for the collector. One such line is normal: a
// device back from a dead 4G link reconnects before the broker noticed its half-open connection.
// Two live holders of one certificate keep replacing each other, so the line repeats: that is the
// alarm. Pure: the caller feeds log lines with the time it received them.
import Foundation

/// Counts connection replacements per client id and raises an alarm when they repeat.
struct SessionTakeoverWatch {
    enum Verdict: Equatable {
        /// Not a replacement line.
        case unrelated
        /// A connection of `client` was replaced (`count` times within the window so far).
        case replaced(client: String, count: Int)
        /// Replacements of `client` repeat: two live connections are fighting over its session.
        case takeover(client: String, count: Int)
    }

    /// This many replacements of one client within `window` raise the alarm.
    static let alarmCount = 3
    static let window: Int64 = 60_000_000_000
    private var recent: [String: [Int64]] = [:]
    /// Clients alarmed for, and when: the alarm is raised once per window.
    private var alarmed: [String: Int64] = [:]

    /// The client id in a mosquitto log line about replacing a connection, if it is one.
    static func replacedClient(in line: String) -> String? {
        let prefix = "Client ", suffix = " already connected, closing old connection"
        guard let end = line.range(of: suffix), let start = line[..<end.lowerBound].range(of: prefix, options: .backwards)
        else { return nil }
        let client = String(line[start.upperBound..<end.lowerBound])
        return client.isEmpty || client.contains(" ") ? nil : client
    }

    /// Feeds one broker log line received at `now` (ns, any monotonic clock).
    mutating func observe(_ line: String, now: Int64) -> Verdict {
        guard let client = Self.replacedClient(in: line) else { return .unrelated }
        var times = (recent[client] ?? []).filter { now - $0 < Self.window }
        times.append(now)
        recent[client] = times
        guard times.count >= Self.alarmCount else { return .replaced(client: client, count: times.count) }
        if let last = alarmed[client], now - last < Self.window { return .replaced(client: client, count: times.count) }
        alarmed[client] = now
        return .takeover(client: client, count: times.count)
    }
}
