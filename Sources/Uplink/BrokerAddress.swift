// A broker's `HOST:PORT` as the command lines take it: a name, an IPv4 address, or an IPv6 address
// in brackets (`[::1]:8883`; unbracketed, its colons cannot be told from the port's).

/// A parsed broker address.
public struct BrokerAddress: Sendable, Hashable {
    /// The name or address, without brackets (what libmosquitto connects to and checks the
    /// broker's certificate against).
    public var host: String
    public var port: Int

    /// `HOST:PORT` or `[IPv6]:PORT`, the port 1…65535; nil otherwise.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else { return nil }
            host = host.dropFirst().dropLast()
            guard host.contains(":") else { return nil }
        } else if host.contains(":") || host.isEmpty {
            return nil
        }
        guard !host.contains(where: { $0 == " " || $0 == "/" || $0 == "[" || $0 == "]" }) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// `HOST:PORT` as a person writes it again: an IPv6 address in brackets (`[::1]:8883`).
    public static func text(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
