// `daqctl bench decode` end to end on a small generated log: the JSON carries our figures and the
// Python peers' (python-can, cantools), all positive. No timing is asserted: figures vary by machine.
import Foundation
import Testing
import TestSupport

@Suite("daqctl bench decode")
struct BenchCommandTests {
    @Test("--frames 20000 --runs 1 --json reports ours and the peers' figures")
    func smallBenchmark() throws {
        let daqctl = PackagePaths.executable("daqctl").path
        let result = try runProcess(daqctl, ["bench", "decode", "--frames", "20000", "--runs", "1", "--json",
                                             "--fixtures", PackagePaths.fixtures.appendingPathComponent("reference").path])
        try #require(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any],
                                  "not JSON: \(result.stdout)")
        #expect(object["frames"] as? Int == 20_000)
        #expect((object["bytes"] as? Int ?? 0) > 0)
        #expect((object["decodedFrames"] as? Int ?? 0) > 0)

        func positive(_ figure: Any?, _ label: String) {
            guard let figure = figure as? [String: Any] else {
                Issue.record("\(label): missing in \(result.stdout)")
                return
            }
            #expect(figure["frames"] as? Int == 20_000, "\(label)")
            for key in ["seconds", "framesPerSecond", "megabytesPerSecond"] {
                #expect(((figure[key] as? NSNumber)?.doubleValue ?? 0) > 0, "\(label).\(key)")
            }
        }
        let ours = object["ours"] as? [String: Any]
        positive(ours?["parse"], "ours.parse")
        positive(ours?["decode"], "ours.decode")
        let peer = object["peer"] as? [String: Any]
        #expect(peer?["available"] as? Bool == true, "peer: \(peer?["reason"] ?? "")")
        positive(peer?["parse"], "peer.parse")
        positive(peer?["decode"], "peer.decode")
        let ratio = object["ratio"] as? [String: Any]
        #expect(((ratio?["decode"] as? NSNumber)?.doubleValue ?? 0) > 0)
        #expect(((ratio?["parse"] as? NSNumber)?.doubleValue ?? 0) > 0)
    }
}
