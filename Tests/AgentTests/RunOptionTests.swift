// `daqlink run` and `daqlink boot` with bad or unusual options: refused before anything runs, by
// name, with the subcommand's usage (and no trap).
import FaultInjection
import Foundation
import Testing
import TestSupport

@Suite struct RunOptionTests {
    /// A journal named by one character in the current directory: the parent-directory step
    /// trapped in Foundation (`NSString.deletingLastPathComponent` on "j"), exit 132.
    @Test func aOneCharacterJournalNameInTheCurrentDirectoryWorks() throws {
        let work = try PackagePaths.temporaryDirectory("run-j")
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)",
                                                 "--speed", "max", "--journal", "j", "--quiet"], currentDirectory: work)
        #expect(run.status == 0, "\(run.stderr)")
        let verify = try runProcess(Agent.daqctl, ["journal", "verify", work.appendingPathComponent("j").path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test(arguments: [
        (["--segment-bytes", "0"], "--segment-bytes must be at least 4096, not 0"),
        (["--segment-bytes", "10"], "--segment-bytes must be at least 4096, not 10"),
        (["--quota-bytes", "1000"], "--quota-bytes must hold at least two segments (2 × --segment-bytes = 16777216), not 1000"),
        (["--speed", "0"], "--speed must be original, max or a positive factor such as 2, not 0"),
        (["--broker", "nohostport", "--device", "d", "--pki", "p"], "--broker must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not nohostport"),
        (["--broker", "h:99999", "--device", "d", "--pki", "p"], "--broker must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not h:99999"),
        (["--broker", "h:8883"], "--broker needs --device ID too"),
        // The device id is a CN, a topic level and a file name: 'rig/#' ran on without ever connecting.
        (["--broker", "h:8883", "--device", "rig/#", "--pki", "p"],
         "--device \"rig/#\" may only contain A–Z a–z 0–9 . _ - (it becomes an MQTT username and topic level); found \"/\""),
        (["--broker", "h:8883", "--device", "..", "--pki", "p"], "--device \"..\" must not start with '.' or '-'"),
        (["--broker", "::1:8883", "--device", "d", "--pki", "p"], "--broker must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not ::1:8883"),
        // An IPv6 broker in brackets is taken: what is refused next is the missing PKI.
        (["--broker", "[::1]:8883", "--device", "d"], "the uplink needs --pki DIR, or --ca, --cert and --key"),
        (["--broker", "h:8883", "--device", "d"], "the uplink needs --pki DIR, or --ca, --cert and --key"),
        (["--epoch", "0"], "--epoch must be at least 1"),
        // Values whose nanoseconds leave Int64 trapped, after the journal was made.
        (["--mdf", "m", "--mdf-split-seconds", "1e10"], "--mdf-split-seconds must be 0.001…1e9 (31 years), not 10000000000.0"),
        (["--sync-ms", "99999999999999"], "--sync-ms must be 0…3600000 (an hour), not 99999999999999"),
        // Negative numbers: swift-argument-parser used to answer "Missing value for '--speed <speed>'".
        (["--speed", "-1"], "--speed must be original, max or a positive factor such as 2, not -1"),
        (["--sync-bytes", "-1"], "--sync-bytes must be at least 1, not -1"),
        (["--duration", "-5"], "--duration must be a number of seconds above 0, not -5.0"),
        (["--epoch", "-3"], "The value '-3' is invalid for '--epoch <N>'"),
        (["--drain-timeout", "-1"], "--drain-timeout must not be negative, not -1.0"),
        (["--connect-timeout", "0"], "--connect-timeout must be 0.1…3600 seconds, not 0.0"),
        (["--connect-timeout", "nan"], "--connect-timeout must be 0.1…3600 seconds, not nan"),
        (["--ota-dir", "/nonexistent"], "--ota-dir needs the slot this binary was started from: start it through `daqlink boot`"),
    ])
    func aBadOptionIsRefusedByNameWithTheRunUsage(extra: [String], message: String) throws {
        let journal = try PackagePaths.temporaryDirectory("run-bad").appendingPathComponent("journal")
        let run = try Agent.run(journal, extra: extra)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr.contains("Error: \(message)") && run.stderr.contains("Usage: daqlink run "), "\(run.stderr)")
        #expect(!run.stderr.contains("Program crashed"))
        // Refused before anything was written.
        #expect(!FileManager.default.fileExists(atPath: journal.path))
    }

    /// A replay log that is not there is named, and no journal is left behind (it used to be
    /// created first, with a fresh epoch, before the log was opened).
    @Test func aMissingLogLeavesNoJournal() throws {
        let work = try PackagePaths.temporaryDirectory("run-no-log")
        let journal = work.appendingPathComponent("journal")
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", Agent.experiment, "--source", "replay:\(work.path)/none.log",
                                                 "--journal", journal.path, "--quiet"])
        #expect(run.status == 1 && run.stderr.contains("none.log: cannot open: No such file or directory"), "\(run.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: journal.path)) ?? []
        #expect(left.isEmpty, "\(left)")
    }

    /// Uplink files that cannot work (no certificate for this --device, or another device's) are
    /// named at start with an alarm, and acquisition goes on into the journal. Before, nothing was
    /// said: the link just never came up.
    @Test func unusableUplinkCredentialsAreNamedAtStart() throws {
        let work = try PackagePaths.temporaryDirectory("run-credentials")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(Agent.daqctl, ["pki", "init", "--dir", pki]).status == 0)
        #expect(try runProcess(Agent.daqctl, ["pki", "device", "--dir", pki, "ecu-01"]).status == 0)
        let port = String(try MosquittoBroker.freeLoopbackPort())
        let cases: [([String], String)] = [
            (["--device", "ecu-02", "--pki", pki], "ecu-02.crt: cannot open: No such file or directory"),
            (["--device", "ecu-02", "--ca", "\(pki)/ca.crt", "--cert", "\(pki)/devices/ecu-01.crt", "--key", "\(pki)/devices/ecu-01.key"],
             "the certificate is for 'ecu-01', this device is 'ecu-02'"),
            (["--device", "ecu-01", "--ca", "\(pki)/ca.crt", "--cert", "\(pki)/devices/ecu-01.crt", "--key", "\(pki)/collector.key"],
             "the private key does not belong to the certificate"),
        ]
        for (index, (extra, reason)) in cases.enumerated() {
            let journal = work.appendingPathComponent("journal-\(index)")
            let run = try Agent.run(journal, extra: ["--broker", "127.0.0.1:\(port)", "--drain-timeout", "0.5"] + extra)
            #expect(run.status == 0 && run.stderr.contains("ALARM: uplink credentials for --device")
                    && run.stderr.contains(reason), "\(extra): \(run.stderr)")
            #expect(try runProcess(Agent.daqctl, ["journal", "verify", journal.path]).status == 0)
        }
        let good = try Agent.run(work.appendingPathComponent("journal-good"),
                                 extra: ["--broker", "127.0.0.1:\(port)", "--drain-timeout", "3", "--device", "ecu-01", "--pki", pki])
        #expect(!good.stderr.contains("ALARM: uplink credentials"), "\(good.stderr)")
        // Nothing listens on the port: the cause is named, once however many attempts fail (it
        // used to be "link … lost or refused; backing off" a second, the same for every cause).
        let refused = good.stderr.split(separator: "\n").filter { $0.contains("cannot connect to 127.0.0.1:\(port)") }
        #expect(refused.count == 1 && refused[0].contains("no TCP connection (refused or unreachable") && refused[0].contains("retrying in "),
                "\(good.stderr)")
        let attempts = good.stderr.split(separator: "\n").first { $0.hasPrefix("uplink: 0 batches") } ?? ""
        #expect(attempts.contains("0 sessions of ") && !attempts.contains("of 1 connect attempt,"), "\(good.stderr)")
    }

    /// A device certificate within a month of its end is named at start, with what its end does
    /// and the command that mends it (a device in a vehicle runs for months; an expired
    /// certificate otherwise shows only as a handshake the broker refuses).
    @Test func aDeviceCertificateNearItsEndIsNamedAtStart() throws {
        let work = try PackagePaths.temporaryDirectory("run-cert-end")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(Agent.daqctl, ["pki", "init", "--dir", pki]).status == 0)
        #expect(try runProcess(Agent.daqctl, ["pki", "device", "--dir", pki, "ecu-01", "--days", "10"]).status == 0)
        let port = String(try MosquittoBroker.freeLoopbackPort())
        let run = try Agent.run(work.appendingPathComponent("journal"),
                                extra: ["--broker", "127.0.0.1:\(port)", "--drain-timeout", "0.5", "--device", "ecu-01", "--pki", pki])
        #expect(run.status == 0, "\(run.stderr)")
        let line = run.stderr.split(separator: "\n").filter { $0.contains("the device certificate \(pki)/devices/ecu-01.crt expires on ") }
        #expect(line.count == 1 && line[0].contains(" warning daqlink.uplink: ") && line[0].contains(", in 10 days: then the broker refuses this device")
                && line[0].contains("daqctl pki renew --dir DIR ecu-01 --publish UPDATES"), "\(run.stderr)")
        #expect(!run.stderr.contains("ALARM"), "\(run.stderr)")
    }

    /// The summary says how the wait for acks ended: a signal during it used to be reported as
    /// "not drained within --drain-timeout 30.0 s" although the timeout never ran out.
    @Test(arguments: [(2.0, "a signal ended the wait for acks after "), (0.3, "no wait for acks: stopped by signal")])
    func theSummarySaysHowTheWaitForAcksEnded(signalAfter: Double, says: String) throws {
        let work = try PackagePaths.temporaryDirectory("run-drain-signal")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(Agent.daqctl, ["pki", "init", "--dir", pki]).status == 0)
        #expect(try runProcess(Agent.daqctl, ["pki", "device", "--dir", pki, "ecu-01"]).status == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Agent.daqlink)
        // Nothing listens on the port: nothing is acknowledged. At --speed 4 the 10 s log takes
        // 2.5 s: the early signal stops acquisition, the late one the wait that follows it.
        let speed = signalAfter > 1 ? "max" : "4"
        process.arguments = ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)", "--speed", speed,
                             "--journal", work.appendingPathComponent("journal").path, "--quiet",
                             "--broker", "127.0.0.1:\(try MosquittoBroker.freeLoopbackPort())", "--device", "ecu-01", "--pki", pki,
                             "--drain-timeout", "30"]
        let log = work.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        if signalAfter > 1 {
            // The late signal comes once the wait for acks has begun (on a loaded machine the
            // replay took longer than the 2 s the test used to wait, and the signal stopped it).
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, !((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("acquisition ended; waiting up to") {
                usleep(50_000)
            }
            usleep(500_000)
        } else {
            usleep(UInt32(signalAfter * 1e6))
        }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let stderr = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(stderr.contains("uplink: not drained") && stderr.contains(says) && !stderr.contains("within --drain-timeout"), "\(stderr)")
        #expect(stderr.contains("stay in the journal and go with the next connection"), "\(stderr)")
    }

    /// A broker that takes the TCP connection and never answers (a listening socket nothing
    /// accepts from): each attempt is given up after --connect-timeout, said with the time.
    @Test func aConnectAttemptIsGivenUpAfterTheConnectTimeout() throws {
        let work = try PackagePaths.temporaryDirectory("run-connect-timeout")
        let pki = work.appendingPathComponent("pki").path
        #expect(try runProcess(Agent.daqctl, ["pki", "init", "--dir", pki]).status == 0)
        #expect(try runProcess(Agent.daqctl, ["pki", "device", "--dir", pki, "ecu-01"]).status == 0)
        let (silent, port) = try LoopbackTCP.listener()
        defer { close(silent) }
        let started = Date()
        let run = try runProcess(Agent.daqlink, ["run", "--experiment", Agent.experiment, "--source", "replay:\(Agent.log)", "--speed", "4",
                                                 "--journal", work.appendingPathComponent("journal").path, "--quiet", "--log-level", "info",
                                                 "--broker", "127.0.0.1:\(port)", "--device", "ecu-01", "--pki", pki,
                                                 "--connect-timeout", "0.5", "--drain-timeout", "0"])
        #expect(run.status == 0, "\(run.stderr)")
        // Said once (a broker down for an hour is one line); 2.5 s of replay hold attempts of
        // 0.5 s each with backoff between them (one, with the default 5 s).
        #expect(run.stderr.contains("cannot connect to 127.0.0.1:\(port): no MQTT session within 0.5 s; retrying in "), "\(run.stderr)")
        let attempts = run.stderr.range(of: "0 sessions of ").map { Int(run.stderr[$0.upperBound...].prefix { $0.isNumber }) ?? 0 } ?? 0
        #expect(attempts >= 3, "\(run.stderr)")
        #expect(Date().timeIntervalSince(started) < 20, "\(run.stderr)")
    }

    @Test func bootRefusesNoTrialAttemptsWithItsOwnUsage() throws {
        let run = try runProcess(Agent.daqlink, ["boot", "--ota-dir", "/nonexistent", "--trial-attempts", "0", "--", "--quiet"])
        #expect(run.status == 64 && run.stderr.contains("--trial-attempts must be at least 1")
                && run.stderr.contains("Usage: daqlink boot "), "\(run.stderr)")
    }

    /// A duration past what Int64 nanoseconds hold means "no end" (it trapped after the journal
    /// was made): a replay then ends with its log.
    @Test(arguments: ["1e10", "inf"])
    func aDurationBeyondAnyRunIsNoEnd(duration: String) throws {
        let journal = try PackagePaths.temporaryDirectory("run-long").appendingPathComponent("journal")
        let run = try Agent.run(journal, extra: ["--duration", duration])
        #expect(run.status == 0 && run.stderr.contains("stopped: end of log"), "\(run.stderr)")
    }
}
