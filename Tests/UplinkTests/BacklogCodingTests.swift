// Draining a backlog. The body coding follows the link: raw when the link outruns the compressor (a local
// broker), the strongest compression when the link is the bottleneck (a cellular uplink) — each
// ending byte-identical. Real mosquitto (mTLS), the real collector and daqlink; the slow link is
// the fault proxy's uplink rate limit. And the collector cuts its segments where the device did.
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct BacklogCodingTests {
    /// Builds a backlog (the fixture acquired with the link down), then drains it with
    /// `--batch-entries 16` (≈ 228 batches, so the window fills and the link gets measured) while
    /// the device replays a single frame. Returns the drain's log.
    private func drainBacklog(_ rig: UplinkRig, uplinkBytesPerSecond: Int?, batchEntries: Int = 16,
                              segmentBytes: Int = 8 << 20) throws -> String {
        rig.proxy.set(.down)
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "1", "--segment-bytes", "\(segmentBytes)"])
        let (_, backlogLog) = rig.waitForDevice()
        #expect(backlogLog.contains("acknowledged up to 0"), "\(backlogLog)")
        let oneFrame = rig.work.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: oneFrame, atomically: true, encoding: .utf8)
        rig.proxy.limitUplink(bytesPerSecond: uplinkBytesPerSecond)
        rig.proxy.set(.up)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--batch-entries", "\(batchEntries)",
                                                  "--segment-bytes", "\(segmentBytes)", "--log-level", "debug"])
        let (status, log) = rig.waitForDevice()
        #expect(status == 0, "\(log)")
        let verify = try rig.verify()
        #expect(verify.status == 0 && verify.stdout.contains("byte-identical: yes"), "\(verify.stdout)\n\(rig.read("collector"))")
        return log
    }

    /// "uplink parts: raw R, zstd-1 F, codec-4 S; …" of a daqlink summary.
    private func parts(_ log: String) -> [String: Int] {
        guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("uplink parts: ") }) else { return [:] }
        var result: [String: Int] = [:]
        for item in line.dropFirst("uplink parts: ".count).split(separator: ";")[0].split(separator: ",") {
            let words = item.split(separator: " ")
            if words.count == 2, let count = Int(words[1]) { result[String(words[0])] = count }
        }
        return result
    }

    @Test func aBacklogGoesRawWhenTheLinkOutrunsTheCompressor() throws {
        let rig = try UplinkRig()
        let log = try drainBacklog(rig, uplinkBytesPerSecond: nil)
        let counts = parts(log)
        // The first batches go compressed until the link is measured (a debug build's compressor is
        // slow and the tests share two cores, so that can take dozens of these small parts); then raw.
        #expect(3 * (counts["raw"] ?? 0) > (counts["zstd-1"] ?? 0) + (counts["codec-4"] ?? 0), "\(log)")
        let periods = log.split(separator: "\n").filter { $0.contains("link period:") }
        #expect(periods.last?.hasSuffix("coding raw") == true, "\(log)")
    }

    @Test func aBacklogGoesCompressedOverASlowLinkWhichIsMeasured() throws {
        let rig = try UplinkRig()
        // 100 KB/s (0.8 Mbit/s, a weak cellular uplink): ~1 MB of backlog compresses to ~0.3 MB.
        // (Slow enough that even a debug build's compressor beats sending raw by far. Which
        // compressor wins depends on the build's speed: a debug build's codec 4 is slower than this
        // link, a release build's is not — the bench shows codec 4 taking over at 16 Mbit/s.)
        let log = try drainBacklog(rig, uplinkBytesPerSecond: 100_000)
        let counts = parts(log)
        #expect(counts["raw"] == 0, "\(log)")
        // Wire bytes over journal bytes: raw would be ~1.03. Which compressor the governor picks
        // depends on how fast this debug build codes on a CPU shared with the other suites: codec
        // 4 when it keeps up with the link (~0.29 on these 16-entry parts), else zstd-1 (~0.40).
        let wire = log.split(separator: "\n").first { $0.hasPrefix("uplink: ") } ?? ""
        let words = wire.split(separator: " ")
        let journalBytes = words.firstIndex(of: "journal").flatMap { Double(words[$0 - 1]) } ?? 0
        let wireBytes = words.firstIndex(of: "wire").flatMap { Double(words[$0 - 1]) } ?? .infinity
        let ratio = wireBytes / max(1, journalBytes)
        #expect(ratio < 0.45, "\(wire)")
        if counts["zstd-1"] == 0 { #expect(ratio < 0.32, "all codec 4: \(wire)") }
        // The governor's estimate of the link: 100 KB/s of TLS records, within 30 %.
        let summary = log.split(separator: "\n").first { $0.hasPrefix("uplink parts: ") } ?? ""
        let link = summary.components(separatedBy: "link ≈ ").last.flatMap { Double($0.split(separator: " ")[0]) } ?? 0
        #expect(link > 0.07 && link < 0.13, "\(summary)")
    }

    /// A new connection's first full part goes alone and bounds the link's rate from below
    /// (`CompressionGovernor.sounded`): over the slow link that bound is below 2× the link (the
    /// proxy's 16 KB burst is under half the part) and the strongest coding follows at once; on
    /// loopback it is far above the slow link. (512-entry parts: ~40 KB of wire each.)
    @Test func theFirstFullPartSoundsTheLink() throws {
        for (rate, range, coding) in [(100_000, 1.0..<200_000.0, "codec-4"), (nil, 1e6..<1e12, nil)] as [(Int?, Range<Double>, String?)] {
            let rig = try UplinkRig()
            let log = try drainBacklog(rig, uplinkBytesPerSecond: rate, batchEntries: 512)
            let line = log.split(separator: "\n").first { $0.contains("link sounding: ") } ?? ""
            let sounded = line.components(separatedBy: "link ≈ ").last.flatMap { Double($0.split(separator: " ")[0]) } ?? 0
            #expect(range.contains(sounded), "\(rate.map(String.init) ?? "loopback"): \(line)\n\(log)")
            if let coding { #expect(line.hasSuffix("coding \(coding)"), "\(line)") }
        }
    }

    /// A sounding whose PUBACK does not come in time (here a 10 KB/s link: the first ~40 KB part
    /// takes seconds) is given up after 2 s, and the uplink goes on publishing.
    @Test func aSoundingThatTakesTooLongIsGivenUp() throws {
        let rig = try UplinkRig()
        rig.proxy.set(.down)
        try rig.startDevice(speed: "max", extra: ["--drain-timeout", "1"])
        _ = rig.waitForDevice()
        let oneFrame = rig.work.appendingPathComponent("one-frame.log")
        let first = try String(contentsOfFile: UplinkRig.log, encoding: .utf8).split(separator: "\n")[0]
        try (first + "\n").write(to: oneFrame, atomically: true, encoding: .utf8)
        rig.proxy.limitUplink(bytesPerSecond: 10_000)
        rig.proxy.set(.up)
        try rig.startCollector()
        try rig.startDevice(speed: "max", extra: ["--source", "replay:\(oneFrame.path)", "--drain-timeout", "5", "--log-level", "debug"])
        let (_, log) = rig.waitForDevice()
        let lines = log.split(separator: "\n")
        let givenUp = lines.firstIndex { $0.contains("link sounding: no PUBACK within 2000 ms; given up") }
        #expect(givenUp != nil, "\(log)")
        #expect(!lines.contains { $0.contains("link sounding: ") && $0.contains("PUBACKed") }, "\(log)")
        // Published on after it: link periods count parts sent after the sounding's.
        let sentAfter = lines[(givenUp ?? lines.endIndex)...].contains { $0.contains("link period:") && !$0.contains("(0 B sent)") }
        #expect(sentAfter, "\(log)")
    }

    /// Every batch starts on an entry, so every segment start of the device's journal is some
    /// batch's first entry: the collector must cut its copy there too (the batch says so).
    @Test func batchesThatStartASegmentCutTheCollectorsSegmentThere() throws {
        let rig = try UplinkRig()
        let log = try drainBacklog(rig, uplinkBytesPerSecond: nil, batchEntries: 1, segmentBytes: 32 << 10)
        // The backlog (the reference journal, a layout repeat opening each segment after the
        // first) and this run's own layout entry, all acknowledged.
        let next = log.split(separator: "\n").first { $0.contains("journal: next seq ") }
            .flatMap { $0.split(separator: "next seq ").last?.split(separator: ",").first }.flatMap { UInt64($0) }
        let backlog = try #require(next, "\(log)")
        #expect(backlog > 3637 && log.contains("acknowledged up to \(backlog)"), "\(log)")
        let segments = try FileManager.default.contentsOfDirectory(atPath: rig.journal.path).filter { $0.hasSuffix(".jnl") }
        #expect(segments.count > 20, "\(segments)")
    }
}
