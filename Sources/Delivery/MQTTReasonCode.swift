// MQTT 5 reason codes (OASIS MQTT 5.0, 2.4) as a person reads them: "0x87 not authorized"
// says what a bare "0x87" does not.

public enum MQTTReasonCode {
    /// "0x87 not authorized (…)" for the codes a PUBACK or CONNACK carries; "0x.." otherwise.
    public static func describe(_ code: Int) -> String {
        let hex = "0x" + String(code, radix: 16)
        guard let name = names[code] else { return "reason code \(hex)" }
        return "reason code \(hex) \(name)"
    }

    static let names: [Int: String] = [
        0x10: "no matching subscribers",
        0x80: "unspecified error",
        0x81: "malformed packet",
        0x82: "protocol error",
        0x83: "implementation specific error",
        0x84: "unsupported protocol version",
        0x85: "client identifier not valid",
        0x86: "bad user name or password",
        0x87: "not authorized (the broker's ACL: is --device the certificate's CN?)",
        0x88: "server unavailable",
        0x89: "server busy",
        0x8A: "banned",
        0x8C: "bad authentication method",
        0x8E: "session taken over",
        0x90: "topic name invalid",
        0x91: "packet identifier in use",
        0x95: "packet too large",
        0x97: "quota exceeded",
        0x99: "payload format invalid",
        0x9F: "connection rate exceeded",
    ]
}
