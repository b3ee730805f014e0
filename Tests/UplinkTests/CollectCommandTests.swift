// `daqctl collect` with bad settings: its config file's errors name the file, the line and the
// key; bad options are refused before it starts, with its own usage; a run that never reached
// the broker ends non-zero (a script must not take it for a collected run).
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct CollectCommandTests {
    static let daqctl = PackagePaths.executable("daqctl").path

    /// A PKI with the collector's certificate (`daqctl pki init`), in a fresh directory.
    private func workWithPKI() throws -> URL {
        let work = try PackagePaths.temporaryDirectory("collect-options")
        let pki = try runProcess(Self.daqctl, ["pki", "init", "--dir", work.appendingPathComponent("pki").path])
        #expect(pki.status == 0, "\(pki.stderr)")
        return work
    }

    @Test(arguments: [
        ("broker = \"127.0.0.1:8883\"\nsession_expiry_s = \"soon\"\n",
         "c.toml:2 [session_expiry_s]: expected a whole number of seconds, found string"),
        ("broker = \"127.0.0.1:8883\"\nsession_expiry_s = -1\n", "c.toml:2 [session_expiry_s]: expected 0…4294967295 seconds, found -1"),
        ("\n\noutput = 7\n", "c.toml:3 [output]: expected a string, found int"),
        ("[[dbc]]\nfile = \"engine.dbc\"\n", "c.toml:1 [dbc]: unknown key (expected broker, ca, cert, key, output, client_id, crl, server_cert, session_expiry_s, quiet_after_s, close_idle_streams_after_s)"),
        ("close_idle_streams_after_s = \"10 min\"\n", "c.toml:1 [close_idle_streams_after_s]: expected a number of seconds, found string"),
        ("broker = \"127.0.0.1:8883\"\nquiet_after_s = \"1 min\"\n", "c.toml:2 [quiet_after_s]: expected a number of seconds, found string"),
        ("quiet_after_s = -5\n", "c.toml:1 [quiet_after_s]: expected 0 (never) or more seconds, found -5.0"),
        ("broker = \n", "c.toml:1: not valid TOML"),
    ])
    func aConfigFileErrorNamesTheLineAndTheKey(text: String, message: String) throws {
        let work = try PackagePaths.temporaryDirectory("collect-config")
        try text.write(to: work.appendingPathComponent("c.toml"), atomically: true, encoding: .utf8)
        let run = try runProcess(Self.daqctl, ["collect", "--config", "c.toml"], currentDirectory: work)
        #expect(run.status == 1 && run.stderr.contains(message), "\(run.stderr)")
    }

    @Test func aMissingConfigFileOrADirectoryIsNamedWithoutFoundationsWords() throws {
        let work = try PackagePaths.temporaryDirectory("collect-config-missing")
        let missing = try runProcess(Self.daqctl, ["collect", "--config", "nonexist.toml"], currentDirectory: work)
        #expect(missing.status == 1 && missing.stderr.contains("nonexist.toml: no such file"), "\(missing.stderr)")
        let directory = try runProcess(Self.daqctl, ["collect", "--config", work.path])
        #expect(directory.status == 1 && directory.stderr.contains("\(work.path): is a directory, not a config file"), "\(directory.stderr)")
        #expect(!(missing.stderr + directory.stderr).contains("NSCocoaErrorDomain"))
    }

    @Test func badSettingsAreRefusedBeforeItStartsWithItsOwnUsage() throws {
        let work = try workWithPKI()
        let pki = work.appendingPathComponent("pki").path
        try Data().write(to: work.appendingPathComponent("afile"))
        let cases: [([String], String)] = [
            (["--broker", "127.0.0.1:99999", "--pki", pki, "--out", "col"], "the broker address must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not 127.0.0.1:99999"),
            (["--broker", "nohostport", "--pki", pki, "--out", "col"], "the broker address must be HOST:PORT (an IPv6 address in brackets: [::1]:8883) with a port 1…65535, not nohostport"),
            (["--broker", "127.0.0.1:1", "--pki", "nonexist", "--out", "col"],
             "nonexist/ca.crt: the CA certificate does not exist (is --pki nonexist a directory made by `daqctl pki`?)"),
            (["--broker", "127.0.0.1:1", "--pki", pki, "--out", "afile"], "the output directory afile is a file, not a directory"),
            (["--broker", "127.0.0.1:1", "--pki", pki, "--out", "col", "--idle-exit", "0"], "--idle-exit must be a number of seconds above 0"),
            (["--broker", "127.0.0.1:1", "--pki", pki, "--out", "col", "--duration", "0"], "--duration must be a number of seconds above 0"),
            (["--broker", "127.0.0.1:1", "--pki", pki, "--out", "col", "--quiet-after", "-1"], "--quiet-after must be a number of seconds, 0 or above, not -1.0"),
        ]
        for (arguments, message) in cases {
            let run = try runProcess(Self.daqctl, ["collect"] + arguments, currentDirectory: work)
            #expect(run.status == 64 && run.stderr.contains("Error: \(message)") && run.stderr.contains("Usage: daqctl collect "),
                    "\(arguments): \(run.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("col").path))
    }

    /// Nothing listens on the port: the collector retries for --duration, says it never connected,
    /// and exits 1 (it used to exit 0 as if it had collected).
    @Test func aRunThatNeverReachedTheBrokerEndsNonZero() throws {
        let work = try workWithPKI()
        let port = try MosquittoBroker.freeLoopbackPort()
        let run = try runProcess(Self.daqctl, ["collect", "--broker", "127.0.0.1:\(port)", "--pki", "pki", "--out", "col",
                                               "--duration", "1.5"], currentDirectory: work)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("cannot connect to 127.0.0.1:\(port)")
                && run.stderr.contains("never connected to the broker at 127.0.0.1:\(port) in this run"), "\(run.stderr)")
        // Its log lines are stamped like daqlink's (UTC), to be read against the devices' logs.
        #expect(run.stderr.split(separator: "\n").contains {
            $0.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000 daqctl collect: cannot connect to .*/) != nil
        }, "\(run.stderr)")
    }

    /// A config file's relative paths are its own directory's, wherever the collector starts
    /// (a service starts in /); a file it names that is missing is named at its line and key.
    @Test func aConfigFilesPathsAreTakenFromItsDirectoryAndAMissingOneIsNamedAtItsLine() throws {
        let work = try workWithPKI()
        let port = try MosquittoBroker.freeLoopbackPort()
        let config = work.appendingPathComponent("c.toml")
        try """
            broker = "127.0.0.1:\(port)"
            ca = "pki/ca.crt"
            cert = "pki/collector.crt"
            key = "pki/collector.key"
            output = "col"
            """.write(to: config, atomically: true, encoding: .utf8)
        let run = try runProcess(Self.daqctl, ["collect", "--config", config.path, "--duration", "1"], currentDirectory: URL(fileURLWithPath: "/"))
        #expect(run.status == 1 && run.stderr.contains("never connected to the broker at 127.0.0.1:\(port)"), "\(run.stderr)")

        try """
            broker = "127.0.0.1:\(port)"
            ca = "pki/nope.crt"
            cert = "pki/collector.crt"
            key = "pki/collector.key"
            output = "col"
            """.write(to: config, atomically: true, encoding: .utf8)
        let missing = try runProcess(Self.daqctl, ["collect", "--config", config.path], currentDirectory: URL(fileURLWithPath: "/"))
        #expect(missing.status == 1 && missing.stderr.contains("\(config.path):2 [ca]: \(work.path)/pki/nope.crt: the CA certificate does not exist"),
                "\(missing.stderr)")
        #expect(!missing.stderr.contains("Usage:"), "a config file's error is not an option's")
    }

    /// Each stream holds three files open: at the usual soft limit of 1024 a fleet of ~330 streams
    /// stopped the collector. It raises its soft limit to the hard one, and says when the hard
    /// limit itself allows few streams.
    @Test func theOpenFileLimitIsRaisedOrNamed() throws {
        let work = try workWithPKI()
        let port = try MosquittoBroker.freeLoopbackPort()
        let collect = "\(Self.daqctl) collect --broker 127.0.0.1:\(port) --pki pki --out col --duration 1.5"
        let soft = try runProcess("bash", ["-c", "ulimit -Sn 64; \(collect) 2>err & sleep 0.7; grep 'Max open files' /proc/$!/limits; "
                                                + "ulimit -Hn; wait"], currentDirectory: work)
        let fields = soft.stdout.split(separator: "\n").first?.split(separator: " ") ?? []
        let hard = soft.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(fields.count >= 5 && fields[3] == fields[4] && String(fields[3]) == hard, "\(soft.stdout)")
        let low = try runProcess("bash", ["-c", "ulimit -n 200; \(collect)"], currentDirectory: work)
        #expect(low.stderr.contains("WARNING: at most 200 open files (about 66 device streams: each holds three open while in use)"), "\(low.stderr)")
    }
}
