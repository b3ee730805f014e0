// `daqctl collect --config FILE`: the collector's TOML settings, each error naming the file, the
// line and the key.
import DAQCore
import Foundation
import TOMLKit

struct CollectorConfigFile {
    /// broker, ca, cert, key, output, client_id, crl, server_cert: as written.
    var values: [String: String] = [:]
    var sessionExpiry: UInt32?
    /// `quiet_after_s`: seconds (0: never).
    var quietAfter: Double?
    /// `close_idle_streams_after_s`: seconds (0: never).
    var closeIdleStreamsAfter: Double?
    /// Where each key is set (file, line, key), for errors about its value found later.
    var locations: [String: InputLocation] = [:]

    /// Keys naming files or directories: a relative one is taken from the config file's directory.
    static let pathKeys: Set<String> = ["ca", "cert", "key", "output", "crl", "server_cert"]

    static let textKeys = ["broker", "ca", "cert", "key", "output", "client_id", "crl", "server_cert"]
    static let keyList = (textKeys + ["session_expiry_s", "quiet_after_s", "close_idle_streams_after_s"]).joined(separator: ", ")

    static func read(_ path: String) throws(DAQError) -> CollectorConfigFile {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DAQError(.io, "no such file", at: InputLocation(file: path))
        }
        guard !isDirectory.boolValue else { throw DAQError(.io, "is a directory, not a config file", at: InputLocation(file: path)) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAQError(.io, "cannot read (permissions?)", at: InputLocation(file: path))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DAQError(.malformedInput, "not UTF-8 text", at: InputLocation(file: path))
        }
        var config = try parse(text, file: path)
        // Relative to the file, not to wherever the collector is started (a service's working
        // directory is /): `ca = "pki/ca.crt"` beside collector.toml means that file.
        let directory = parentDirectory(of: path)
        for key in pathKeys {
            guard let value = config.values[key], !value.hasPrefix("/"), !value.isEmpty else { continue }
            config.values[key] = directory == "." ? value : directory + (directory.hasSuffix("/") ? "" : "/") + value
        }
        return config
    }

    static func parse(_ text: String, file: String) throws(DAQError) -> CollectorConfigFile {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw DAQError(.malformedInput, "not valid TOML: \(error.description)",
                           at: InputLocation(file: file, line: error.source.begin.line))
        } catch {
            throw DAQError(.malformedInput, "not valid TOML: \(error)", at: InputLocation(file: file))
        }
        // TOMLKit keeps no positions: a key's line is the first that assigns it (`key =`) or
        // opens it as a table (`[key]`, `[[key]]`).
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(line.filter { $0 != " " && $0 != "\t" })
        }
        func location(_ key: String) -> InputLocation {
            let line = lines.firstIndex { $0.hasPrefix("\(key)=") || $0.hasPrefix("[\(key)]") || $0.hasPrefix("[[\(key)]]") }
            return InputLocation(file: file, line: line.map { $0 + 1 }, field: key)
        }
        var config = CollectorConfigFile()
        for key in table.keys.sorted() {
            let value = table[key]!
            config.locations[key] = location(key)
            if key == "session_expiry_s" {
                guard let seconds = value.int else {
                    throw DAQError(.malformedInput, "expected a whole number of seconds, found \(value.type)", at: location(key))
                }
                guard (0...Int(UInt32.max)).contains(seconds) else {
                    throw DAQError(.malformedInput, "expected 0…\(UInt32.max) seconds, found \(seconds)", at: location(key))
                }
                config.sessionExpiry = UInt32(seconds)
            } else if key == "quiet_after_s" || key == "close_idle_streams_after_s" {
                guard let seconds = value.double ?? value.int.map(Double.init) else {
                    throw DAQError(.malformedInput, "expected a number of seconds, found \(value.type)", at: location(key))
                }
                guard seconds >= 0, seconds.isFinite else {
                    throw DAQError(.malformedInput, "expected 0 (never) or more seconds, found \(seconds)", at: location(key))
                }
                if key == "quiet_after_s" { config.quietAfter = seconds } else { config.closeIdleStreamsAfter = seconds }
            } else if textKeys.contains(key) {
                guard let text = value.string else {
                    throw DAQError(.malformedInput, "expected a string, found \(value.type)", at: location(key))
                }
                config.values[key] = text
            } else {
                throw DAQError(.malformedInput, "unknown key (expected \(keyList))", at: location(key))
            }
        }
        return config
    }
}
