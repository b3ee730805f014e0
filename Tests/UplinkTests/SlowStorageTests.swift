// A device on slow storage: an SD card may take hundreds of milliseconds for one fsync (its own
// wear levelling and garbage collection), and the journal syncs in groups every 50 ms. Here every
// fdatasync and fsync of daqlink is held 300 ms by a preloaded shim and then done for real. The
// device's syncs run off its loop, so acquisition keeps appending at its rate meanwhile; entries
// still leave only once a sync covered them, and reach the collector byte-identical.
import Foundation
import Testing
import TestSupport
import Runtime

@Suite(.serialized) struct SlowStorageTests {
    /// A shared library that delays fdatasync(2) and fsync(2) by DAQLINK_TEST_SYNC_DELAY_MS, then
    /// calls the real ones (for LD_PRELOAD), compiled with the toolchain's C compiler.
    static func slowSyncShim(in directory: URL) throws -> URL {
        let source = directory.appendingPathComponent("slow-sync.c")
        let library = directory.appendingPathComponent("libslow-sync.so")
        try """
            #define _GNU_SOURCE
            #include <dlfcn.h>
            #include <stdlib.h>
            #include <time.h>
            static void hold(void) {
                const char *ms = getenv("DAQLINK_TEST_SYNC_DELAY_MS");
                long delay = ms ? atol(ms) : 0;
                struct timespec t = { delay / 1000, (delay % 1000) * 1000000L };
                while (delay > 0 && nanosleep(&t, &t) != 0) {}
            }
            int fdatasync(int fd) { hold(); return ((int (*)(int))dlsym(RTLD_NEXT, "fdatasync"))(fd); }
            int fsync(int fd) { hold(); return ((int (*)(int))dlsym(RTLD_NEXT, "fsync"))(fd); }
            """.write(to: source, atomically: true, encoding: .utf8)
        let compiled = try runProcess("/usr/bin/env", ["clang", "-shared", "-fPIC", "-O2", "-o", library.path, source.path, "-ldl"])
        #expect(compiled.status == 0, "\(compiled.stderr)")
        return library
    }

    @Test func acquisitionGoesOnWhileTheJournalSyncs() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        let shim = try Self.slowSyncShim(in: rig.work)
        let trace = rig.work.appendingPathComponent("appends.trace")
        // Parts go raw: in this debug build, coding a live part with codec 4 holds the loop for
        // about 0.3 s by itself (far less in release), which would hide what is measured here.
        try rig.startDevice(speed: "1", extra: ["--no-compression"],
                            environment: ["LD_PRELOAD": shim.path, "DAQLINK_TEST_SYNC_DELAY_MS": "300",
                                          "DAQLINK_APPEND_TRACE": trace.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        #expect(log.contains("acknowledged up to 3637"), "\(log)")
        try rig.expectIdentical("slow storage")

        // At ×1 an entry is appended every few ms. A sync on the loop stopped them for 300 ms at
        // every group commit (every 50 ms of appends), and a persisted ack cursor for 600 ms.
        let appends = try UplinkRig.appendTimes(trace)
        try #require(appends.count == 3637, "\(appends.count) appends traced")
        let longest = UplinkRig.longestGap(appends)
        #expect(longest < 150_000_000, "acquisition stood still for \(Double(longest) / 1e9) s while the journal synced")
    }

    /// A rotation synced the closing segment, the new one and the directory on the loop: three
    /// held syncs, about 0.9 s in which nothing was appended, once per segment. The device now
    /// leaves them to the next sync ticket, which renames the new segment into place once the
    /// entries before it are on the medium.
    @Test func aSegmentRotationDoesNotStopAcquisition() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        let shim = try Self.slowSyncShim(in: rig.work)
        let trace = rig.work.appendingPathComponent("appends.trace")
        try rig.startDevice(speed: "1", extra: ["--no-compression", "--segment-bytes", "131072"],
                            environment: ["LD_PRELOAD": shim.path, "DAQLINK_TEST_SYNC_DELAY_MS": "300",
                                          "DAQLINK_APPEND_TRACE": trace.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        let summary = log.split(separator: "\n").first { $0.hasPrefix("journal: ") } ?? ""
        let last = try #require(summary.split(separator: "…").last.flatMap { UInt64($0) }, "\(log)")
        #expect(log.contains("acknowledged up to \(last),"), "\(log)")
        try rig.expectIdentical("slow storage, small segments")
        let segments = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path)
        #expect(segments.filter { $0.hasSuffix(".jnl") }.count >= 8 && !segments.contains { $0.hasSuffix(".new") }, "\(segments)")

        let appends = try UplinkRig.appendTimes(trace)
        try #require(appends.count == Int(last), "\(appends.count) appends traced")
        let longest = UplinkRig.longestGap(appends)
        #expect(longest < 150_000_000, "acquisition stood still for \(Double(longest) / 1e9) s at a segment rotation")
    }

    /// At the quota every new segment needs an acknowledged one deleted, on the loop (it is part
    /// of the append). That deletion synced the journal's directory there: a held sync, once per
    /// segment, in which nothing was appended (a review). A deletion lost in a power cut only
    /// brings back a segment the collector holds, which the next one deletes again, so it goes
    /// unsynced.
    @Test func makingRoomAtTheQuotaDoesNotStopAcquisition() throws {
        let rig = try UplinkRig()
        try rig.startCollector()
        let shim = try Self.slowSyncShim(in: rig.work)
        let trace = rig.work.appendingPathComponent("appends.trace")
        try rig.startDevice(speed: "1", extra: ["--no-compression", "--segment-bytes", "131072", "--quota-bytes", "786432"],
                            environment: ["LD_PRELOAD": shim.path, "DAQLINK_TEST_SYNC_DELAY_MS": "300",
                                          "DAQLINK_APPEND_TRACE": trace.path])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        #expect(!log.contains("acquisition paused"), "the collector's acks kept up: \(log)")
        let summary = log.split(separator: "\n").first { $0.hasPrefix("journal: ") } ?? ""
        let last = try #require(summary.split(separator: "…").last.flatMap { UInt64($0) }, "\(log)")
        #expect(log.contains("acknowledged up to \(last),"), "\(log)")
        let segments = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path).filter { $0.hasSuffix(".jnl") }
        #expect(segments.count <= 6, "the quota held: \(segments)")
        let appends = try UplinkRig.appendTimes(trace)
        try #require(appends.count == Int(last), "\(appends.count) appends traced")
        let longest = UplinkRig.longestGap(appends)
        #expect(longest < 150_000_000, "acquisition stood still for \(Double(longest) / 1e9) s while room was made")
    }
}
