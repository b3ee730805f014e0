// Where a measurement's MDF files are cut: only record sizes and record times decide, so the
// device and the collector cut at the same records.
import Testing
import Acquisition
@testable import MDF

@Suite struct MDFFileSplitTests {
    /// A 20-byte journal record payload of group 0 at `seconds`.
    static func payload(_ seconds: Double) -> [UInt8] {
        var bytes: [UInt8] = [1, 0]
        withUnsafeBytes(of: seconds.bitPattern.littleEndian) { bytes += $0 }
        return bytes + [UInt8](repeating: 0, count: 10)
    }

    static func cuts(_ files: MeasurementFiles, head: Int, times: [Double]) -> [Int] {
        var split = MDFFileSplit(files: files, headBytes: head)
        return times.enumerated().compactMap { index, time in
            payload(time).withUnsafeBytes { split.startsNewFile($0) } ? index : nil
        }
    }

    @Test func bySizeEveryFileStaysWithinTheLimit() {
        // 1000-byte head + 20-byte records, limit 1100: five records per file.
        let cuts = Self.cuts(MeasurementFiles(splitBytes: 1100), head: 1000, times: (0..<12).map(Double.init))
        #expect(cuts == [5, 10])
        // A record larger than the limit still gets a file of its own, never an empty one.
        #expect(Self.cuts(MeasurementFiles(splitBytes: 10), head: 1000, times: [0, 1, 2]) == [1, 2])
    }

    @Test func byTimeFilesFollowWindowsOfMeasurementTime() {
        let times = [0, 0.5, 0.999, 1.0, 1.2, 3.7, 3.9, 4.0]
        #expect(Self.cuts(MeasurementFiles(splitNanoseconds: 1_000_000_000), head: 100, times: times) == [3, 5, 7])
        // Time never goes backwards for the split: an older record stays in the current file.
        #expect(Self.cuts(MeasurementFiles(splitNanoseconds: 1_000_000_000), head: 100, times: [0, 2.5, 1.5, 2.9, 3.0]) == [1, 4])
        #expect(Self.cuts(MeasurementFiles(), head: 100, times: times) == [])
    }

    @Test func fileNamesSortInOrder() {
        #expect(MDFFileSplit.fileName("measurement-7", part: 1) == "measurement-7.mf4")
        #expect(MDFFileSplit.fileName("measurement-7", part: 2) == "measurement-7_0002.mf4")
        #expect(MDFFileSplit.fileName("measurement-7", part: 12345) == "measurement-7_12345.mf4")
        let names = [1, 2, 10, 3].map { MDFFileSplit.fileName("measurement-7", part: $0) }
        #expect(names.sorted() == [1, 2, 3, 10].map { MDFFileSplit.fileName("measurement-7", part: $0) })
    }
}
