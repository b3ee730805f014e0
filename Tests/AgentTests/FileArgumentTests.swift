// daqctl's commands given a missing file, a directory for a file, an empty directory for a
// journal, or a directory they may not write: each says so in plain words (the system's, not
// Foundation's "NSCocoaErrorDomain error 512"), names the path, and exits non-zero.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct FileArgumentTests {
    /// A fresh directory holding the reference replay's journal (`j`) and an empty directory `name`.
    private func journalAndDirectory(_ label: String, _ name: String) throws -> (journal: URL, directory: URL) {
        let work = try PackagePaths.temporaryDirectory(label)
        let journal = work.appendingPathComponent("j")
        #expect(try Agent.run(journal).status == 0)
        let directory = work.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return (journal, directory)
    }

    @Test func readsAndWritesNameThePathAndTheSystemsReason() throws {
        let (journal, directory) = try journalAndDirectory("file-arguments", "adir")
        let work = journal.deletingLastPathComponent()
        let cases: [([String], String)] = [
            (["inspect", directory.path], "\(directory.path): cannot read: is a directory, not a file"),
            (["inspect", work.appendingPathComponent("none.mf4").path], "none.mf4: cannot read: No such file or directory"),
            (["export", "--journal", journal.path, "--format", "mdf", "--out", directory.path],
             "\(directory.path): cannot write: is a directory, not a file"),
            (["export", "--journal", journal.path, "--format", "mdf", "--out", "/nonexistent-dir/x.mf4"],
             "/nonexistent-dir/x.mf4: cannot write: No such file or directory"),
            (["decode", "--dbc", directory.path, Agent.log], "\(directory.path): cannot read the DBC file: is a directory, not a file"),
            (["decode", "--dbc", "/nonexistent/none.dbc", Agent.log], "none.dbc: cannot read the DBC file: No such file or directory"),
        ]
        // A pipe has no size to map: inspect reads it whole.
        let mdf = work.appendingPathComponent("piped.mf4")
        #expect(try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "mdf", "--out", mdf.path]).status == 0)
        let piped = try runProcess(Agent.daqctl, ["inspect", "/dev/stdin"], stdin: try Data(contentsOf: mdf))
        #expect(piped.status == 0 && piped.stdout.contains("total: 5 channel groups"), "\(piped.stdout)\(piped.stderr)")
        for (arguments, message) in cases {
            let run = try runProcess(Agent.daqctl, arguments)
            #expect(run.status == 1 && run.stderr.contains(message), "\(arguments): \(run.stderr)")
            #expect(!run.stderr.contains("NSCocoaErrorDomain") && !run.stderr.contains("could not be completed"), "\(run.stderr)")
        }
    }

    @Test func verifyNamesWhatIsNotAJournalOrACollectorsDirectory() throws {
        let (journal, empty) = try journalAndDirectory("verify-arguments", "empty")
        let work = journal.deletingLastPathComponent()
        let cases: [([String], Int32, String)] = [
            ([journal.path, work.appendingPathComponent("none").path], 64,
             "none: no such directory (the collector's directory for the device: <out>/<device>)"),
            ([work.appendingPathComponent("none").path, empty.path], 64, "none: no such directory (the device's journal)"),
            ([empty.path, empty.path], 64, "empty: no journal segments (*.jnl) here; is it the device's journal directory?"),
            ([journal.path, empty.path], 1, "empty: the collector holds no journal segments for this device"),
        ]
        for (arguments, status, message) in cases {
            let run = try runProcess(Agent.daqctl, ["verify"] + arguments)
            #expect(run.status == status && run.stderr.contains(message), "\(arguments): \(run.stderr)")
            #expect(!run.stderr.contains("NSCocoaErrorDomain"), "\(run.stderr)")
        }
    }

    /// A journal with a damaged entry: dump prints the rest and an "unreadable" line in place,
    /// and says so on stderr with exit status 2 (it used to exit 0 with nothing on stderr, so a
    /// `jq select(.group …)` filter hid the loss); export writes the rest, the same way.
    @Test func dumpAndExportOfADamagedJournalSaySoAndExitTwo() throws {
        let journal = try PackagePaths.temporaryDirectory("dump-damaged").appendingPathComponent("j")
        let write = try Agent.run(journal, extra: ["--segment-bytes", "65536"])
        #expect(write.status == 0, "\(write.stderr)")
        let last = try #require(write.stderr.split(separator: "\n").first { $0.hasPrefix("journal: ") }?.split(separator: "…").last
            .flatMap { UInt64($0) })
        let first = try #require(try FileManager.default.contentsOfDirectory(atPath: journal.path).filter { $0.hasSuffix(".jnl") }.sorted().first)
        let segment = journal.appendingPathComponent(first)
        var bytes = [UInt8](try Data(contentsOf: segment))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: segment)
        let dump = try runProcess(Agent.daqctl, ["journal", "dump", journal.path])
        #expect(dump.status == 2, "\(dump.stderr)")
        #expect(dump.stdout.contains("\"unreadable\": ") && dump.stdout.contains("{\"seq\": \(last),"), "\(dump.stdout)")
        #expect(dump.stderr.contains("entries unreadable (damaged storage): seq ") && dump.stderr.contains("their lines say \"unreadable\""),
                "\(dump.stderr)")
        // export writes every other record (it used to stop at the damage and write nothing).
        let mdf = journal.deletingLastPathComponent().appendingPathComponent("run.mf4")
        let export = try runProcess(Agent.daqctl, ["export", "--journal", journal.path, "--format", "mdf", "--out", mdf.path])
        #expect(export.status == 2 && export.stderr.contains("entries unreadable (damaged storage), not exported: seq ")
                && export.stdout.contains(mdf.path), "\(export.stdout)\(export.stderr)")
        let inspect = try runProcess(Agent.daqctl, ["inspect", mdf.path])
        #expect(inspect.status == 0 && inspect.stdout.contains("Time 10ms"), "\(inspect.stdout)\(inspect.stderr)")
    }
}
