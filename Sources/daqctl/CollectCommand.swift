// `daqctl collect`: the fleet-side collector (durable MQTT session → rebuilt device journals).
import ArgumentParser
import Collector
import DAQCore
import Foundation
import PKI
import TOMLKit
import Uplink

struct CollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Receive every device's batches and rebuild each device's journal, once and in order.",
        discussion: """
            Connects to the broker with the collector's certificate in a durable MQTT 5 session \
            (clean start off, session expiry set, so batches published while it is down wait in the \
            broker), subscribes to devices/+/data, checks each batch (header CRC, body CRC, entry \
            framing, sequence range), drops what it already holds, holds a bounded number of early \
            batches, asks the device to resend a gap (devices/<id>/cmd), appends committed entries \
            to <out>/<device>/journal/ and fsyncs before publishing the end-to-end ack \
            (devices/<id>/ack). The rebuilt journal's segments are byte-identical to the device's. \
            MDF files of each measurement follow in <out>/<device>/mdf/, written at idle priority \
            (they trail the journal while the collector is busy; a clean stop finalizes them).

            A device whose journal was started afresh (a new card, a wiped directory) sends a new \
            stream epoch (daqlink gives every new journal its own). That stream gets a copy of its \
            own, <out>/<device>/epoch-<E>/ (journal/ and mdf/), beside the first one; both go on \
            (the old card put back resumes its own copy), and `daqctl verify` picks the copy of the \
            journal's epoch.

            It connects off its loop and keeps trying, once a second, while the broker cannot be \
            reached (refused, unreachable, or silent for --connect-timeout): the failure is \
            reported once, and a signal stops it at once whatever the broker does. Exit status 1 \
            if it never reached the broker in the run, or could not store what it received.

            It names each device at its first batch of the run, and again when it has sent nothing \
            for --quiet-after seconds (switched off, or its link down: its journal keeps what it \
            acquires) and when it is heard again. Time the collector itself is away from the broker \
            does not count.

            At start and once a day it says when its certificate, the CA, the broker's CRL or the \
            broker's certificate (from --pki, or crl and server_cert in --config) ends within a \
            month (the CRL: a week; the CA: two months): each of those ends stops the fleet's data. \
            With --pki it watches every device's newest certificate too.

            The config file (TOML); relative paths in it are taken from its own directory:
              broker = "127.0.0.1:8883"
              ca = "pki/ca.crt"
              cert = "pki/collector.crt"
              key = "pki/collector.key"
              output = "collected"
              # client_id = "collector"   session_expiry_s = 604800   quiet_after_s = 60
              # crl = "pki/ca.crl"   server_cert = "pki/server.crt"
              # close_idle_streams_after_s = 600

            Examples:
              daqctl collect --config collector.toml
              daqctl collect --broker 127.0.0.1:8883 --pki pki --out collected \\
                --idle-exit 10
            """
    )

    @Option(help: "Collector config file (TOML); the options below override it.")
    var config: String?

    @Option(help: "Broker HOST:PORT.")
    var broker: String?

    @Option(help: "A PKI directory made by `daqctl pki` (ca.crt, collector.crt, collector.key).")
    var pki: String?

    @Option(help: "Output directory (one sub-directory per device).")
    var out: String?

    @Option(help: "Exit after this many seconds without data.")
    var idleExit: Double?

    @Option(help: "Exit after this many seconds.")
    var duration: Double?

    @Option(help: "Give up a connect attempt with no accepted MQTT session after this many seconds, and try again.")
    var connectTimeout: Double = 10

    @Option(help: "Say when a device heard from in this run sends nothing for this many seconds, and again when it is back (0: never; default 60, or quiet_after_s in --config).")
    var quietAfter: Double?

    @Option(help: "Close the copy of a stream its device no longer sends on (its journal was started afresh) after this many quiet seconds (its journal's files and lock), and open it again if the stream sends (0: never; default 600, or close_idle_streams_after_s in --config).")
    var closeIdleStreamsAfter: Double?

    func validate() throws {
        guard connectTimeout > 0, connectTimeout.isFinite else {
            throw ValidationError("--connect-timeout must be a number of seconds above 0, not \(connectTimeout)")
        }
        if let idleExit, !(idleExit > 0) { throw ValidationError("--idle-exit must be a number of seconds above 0, not \(idleExit)") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be a number of seconds above 0, not \(duration)") }
        if let quietAfter, !(quietAfter >= 0 && quietAfter.isFinite) {
            throw ValidationError("--quiet-after must be a number of seconds, 0 or above, not \(quietAfter)")
        }
        if let closeIdleStreamsAfter, !(closeIdleStreamsAfter >= 0 && closeIdleStreamsAfter.isFinite) {
            throw ValidationError("--close-idle-streams-after must be a number of seconds, 0 or above, not \(closeIdleStreamsAfter)")
        }
        _ = try settings()
    }

    /// The options, the config file's settings under them, checked.
    private func settings() throws -> CollectorOptions {
        var values: [String: String] = [:]
        var expiry: UInt32?
        var quiet: Double?
        var closeIdle: Double?
        var fromFile: [String: InputLocation] = [:]
        if let config {
            let file = try CollectorConfigFile.read(config)
            (values, expiry, quiet, fromFile) = (file.values, file.sessionExpiry, file.quietAfter, file.locations)
            closeIdle = file.closeIdleStreamsAfter
        }
        if let broker { values["broker"] = broker; fromFile["broker"] = nil }
        if let pki {
            values["ca"] = "\(pki)/ca.crt"
            values["cert"] = "\(pki)/collector.crt"
            values["key"] = "\(pki)/collector.key"
            for key in ["ca", "cert", "key", "crl", "server_cert"] { fromFile[key] = nil }
            // The broker's CRL and certificate, when it runs from this PKI: watched for their end.
            for (key, file) in [("crl", "ca.crl"), ("server_cert", "server.crt")] where FileManager.default.fileExists(atPath: "\(pki)/\(file)") {
                values[key] = "\(pki)/\(file)"
            }
        }
        if let out { values["output"] = out; fromFile["output"] = nil }
        /// A bad value: named at its line in the config file when it came from there (exit 1),
        /// else refused as an option, with the usage (exit 64).
        func refuse(_ key: String, _ message: String) -> Error {
            fromFile[key].map { DAQError(.malformedInput, message, at: $0) } ?? ValidationError(message)
        }
        guard let address = values["broker"] else {
            throw ValidationError("the broker address (HOST:PORT) is missing: --broker, or broker = in --config")
        }
        guard let parsed = BrokerAddress(address) else {
            throw refuse("broker", "the broker address must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not \(address)")
        }
        guard let ca = values["ca"], let cert = values["cert"], let key = values["key"] else {
            throw ValidationError("the collector's certificate is missing: --pki DIR, or ca, cert and key in --config")
        }
        for (what, name, path) in [("CA certificate", "ca", ca), ("collector certificate", "cert", cert), ("collector key", "key", key)] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw refuse(name, "\(path): the \(what) \(FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")"
                             + (pki.map { " (is --pki \($0) a directory made by `daqctl pki`?)" } ?? ""))
            }
        }
        guard let output = values["output"] else { throw ValidationError("the output directory is missing: --out, or output = in --config") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw refuse("output", "the output directory \(output) is a file, not a directory")
        }
        var options = CollectorOptions(host: parsed.host, port: parsed.port,
                                       tls: MQTTTLSFiles(caFile: ca, certificateFile: cert, keyFile: key), output: output)
        if let id = values["client_id"] { options.clientID = id }
        if let expiry { options.sessionExpiry = expiry }
        options.idleExit = idleExit
        options.duration = duration
        options.connectTimeout = connectTimeout
        if let seconds = quietAfter ?? quiet { options.quietAfter = seconds > 0 ? seconds : nil }
        if let seconds = closeIdleStreamsAfter ?? closeIdle { options.closeIdleStreamsAfter = seconds > 0 ? seconds : nil }
        options.watchedCredentials = Self.watched(ca: ca, cert: cert, crl: values["crl"], server: values["server_cert"], pki: pki ?? "DIR")
        if let pki, FileManager.default.fileExists(atPath: "\(pki)/index.json") { options.deviceIndex = ("\(pki)/index.json", pki) }
        return options
    }

    /// What the collector watches for its end, with what that end does and the command that mends it.
    static func watched(ca: String, cert: String, crl: String?, server: String?, pki: String) -> [CredentialLifetime.Watched] {
        var watched = [
            CredentialLifetime.Watched(
                what: "the collector's certificate", path: cert, warnDays: 30,
                consequence: "the broker refuses the collector and nothing is collected (the devices keep their journals)",
                remedy: "issue it again (daqctl pki collector --dir \(pki)) and restart the collector"),
            CredentialLifetime.Watched(
                what: "the CA certificate", path: ca, warnDays: 60,
                consequence: "no certificate it signed verifies: the broker, the collector and every device are refused",
                remedy: "make a new CA and issue every certificate from it before then (docs/pki.md)"),
        ]
        if let crl {
            watched.append(CredentialLifetime.Watched(
                what: "the broker's CRL", path: crl, isRevocationList: true, warnDays: 7,
                consequence: "the broker refuses every client (OpenSSL counts an expired CRL as a failed check)",
                remedy: "publish it again (daqctl pki crl --dir \(pki)), reload the broker (kill -HUP) and nginx if it serves OTA "
                    + "(nginx -s reload: it checks the devices against the same CRL)"))
        }
        if let server {
            watched.append(CredentialLifetime.Watched(
                what: "the broker's certificate", path: server, warnDays: 30,
                consequence: "every device and the collector refuse the broker",
                remedy: "issue it again (daqctl pki server --dir \(pki) with its names and addresses), restart the broker and reload "
                    + "nginx if it serves OTA with it (nginx -s reload)"))
        }
        return watched
    }

    func run() throws {
        let options = try settings()
        let service = CollectorService(options: options)
        do {
            let reports = try service.run()
            for report in reports {
                var line = "collector: \(report.stream): committed up to \(report.committed) (\(report.entries) entries, "
                    + "\(report.bytes) bytes this run), \(report.duplicates) duplicates dropped, "
                    + (report.gapsFilled == report.gaps ? "\(report.gaps) gaps repaired"
                       : "\(report.gapsFilled) of \(report.gaps) gaps repaired (the rest asked again, not yet received)")
                if report.lost > 0 { line += ", \(report.lost) entries lost on the device (unreadable or deleted there, committed as 'lost')" }
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        } catch {
            var text = "daqctl collect: stopped: \(error)"
            if error.code == .journalFull || error.code == .io {
                // What was committed before stays committed and acknowledged; the devices keep the rest.
                text += "\ndaqctl collect: what was committed is kept; the devices keep the rest and resend it when the "
                    + "collector runs again (free space first, if the disk is full)"
            }
            FileHandle.standardError.write(Data((text + "\n").utf8))
            throw ExitCode(1)
        }
        // A run that never reached the broker received nothing: not a success for a script.
        if !service.subscribedOnce {
            FileHandle.standardError.write(Data("daqctl collect: never connected to the broker at \(BrokerAddress.text(host: options.host, port: options.port)) in this run\n".utf8))
            throw ExitCode(1)
        }
    }
}
