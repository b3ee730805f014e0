// `daqctl bench mdf` end to end on one replay of the reference log: the JSON carries our three
// writers' figures and asammdf's, all positive, and asammdf's file holds the same samples per
// group as ours. No timing is asserted: figures vary by machine.
import Foundation
import Testing
import TestSupport

@Suite("daqctl bench mdf")
struct BenchMDFCommandTests {
    @Test("--repeat 1 --runs 1 --json reports ours and asammdf's figures")
    func smallBenchmark() throws {
        let daqctl = PackagePaths.executable("daqctl").path
        let result = try runProcess(daqctl, ["bench", "mdf", "--repeat", "1", "--runs", "1", "--json",
                                             "--fixtures", PackagePaths.fixtures.appendingPathComponent("reference").path])
        try #require(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any],
                                  "not JSON: \(result.stdout)")
        #expect(object["records"] as? Int == 3636, "the reference replay's records")
        #expect((object["recordBytes"] as? Int ?? 0) > 800_000)
        let ours = object["ours"] as? [[String: Any]] ?? []
        #expect(ours.count == 3)
        func positive(_ figure: Any?, _ label: String) {
            let rate = ((figure as? [String: Any])?["megabytesPerSecond"] as? NSNumber)?.doubleValue ?? 0
            #expect(rate > 0, "\(label): \(result.stdout)")
        }
        for figure in ours { positive(figure["figure"], "\(figure["name"] ?? "")") }
        // The deflated file is the smallest; the streaming file has 2-byte record ids more than the sorted one.
        let sizes = ours.map { $0["fileBytes"] as? Int ?? 0 }
        #expect(sizes.count == 3 && sizes[1] > 0 && sizes[1] < sizes[0] && sizes[0] < sizes[2], "\(sizes)")
        let peer = object["peer"] as? [String: Any]
        #expect(peer?["available"] as? Bool == true, "peer: \(peer?["reason"] ?? "")")
        positive(peer?["plain"], "asammdf plain")
        positive(peer?["deflate"], "asammdf deflate")
        #expect(peer?["sameCycles"] as? Bool == true)
        #expect((peer?["deflateBytes"] as? Int ?? 0) > 0 && (peer?["deflateBytes"] as? Int ?? 0) < (peer?["plainBytes"] as? Int ?? 0))
    }
}
