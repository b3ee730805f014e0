// Checks that a string is an IPv4 or IPv6 address before it goes into an `IP:` subjectAltName.
#if canImport(Glibc)
import Glibc
#endif
import DAQCore

enum IPAddressText {
    static func validate(_ text: String) throws {
        var buffer = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1 { return }
        throw DAQError(.malformedInput, "'\(text)' is not an IPv4 or IPv6 address")
    }
}
