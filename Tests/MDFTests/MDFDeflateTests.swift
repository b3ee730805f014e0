// daqctl export --deflate: ##DZ blocks (transposition + deflate). asammdf, the oracle, reads every
// channel of the compressed file exactly as it reads the plain one.
import Foundation
import Testing
import TestSupport

@Suite struct MDFDeflateTests {
    static let compare = """
        import sys, numpy as np
        from asammdf import MDF
        a, b = MDF(sys.argv[1]), MDF(sys.argv[2])
        compared = 0
        for gi, g in enumerate(a.groups):
            for ch in g.channels:
                x = a.get(ch.name, group=gi, raw=True, ignore_invalidation_bits=True)
                y = b.get(ch.name, group=gi, raw=True, ignore_invalidation_bits=True)
                if not (np.array_equal(x.samples, y.samples) and np.array_equal(x.timestamps, y.timestamps)):
                    print("differs:", ch.name); sys.exit(1)
                if (x.invalidation_bits is None) != (y.invalidation_bits is None) or (
                        x.invalidation_bits is not None and not np.array_equal(x.invalidation_bits, y.invalidation_bits)):
                    print("invalidation differs:", ch.name); sys.exit(1)
                compared += 1
        print(compared)
        """

    @Test func deflatedExportReadsTheSameAsThePlainOne() throws {
        guard case .success(let reference) = MDFExportTests.reference else {
            Issue.record("reference export failed: \(MDFExportTests.reference)")
            return
        }
        let deflated = reference.directory.appendingPathComponent("ref-dz.mf4").path
        let export = try runProcess(MDFExportTests.daqctl, ["export", "--journal", reference.journal, "--format", "mdf",
                                                            "--deflate", "--out", deflated])
        #expect(export.status == 0, "\(export.stderr)")
        let result = try runPython(Self.compare, [reference.mdf, deflated])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == 296, "channels compared: \(result.stdout)")
        let plain = try FileManager.default.attributesOfItem(atPath: reference.mdf)[.size] as! Int
        let compact = try FileManager.default.attributesOfItem(atPath: deflated)[.size] as! Int
        #expect(compact < plain * 3 / 4, "\(compact) bytes deflated vs \(plain) plain")
        let inspect = try runProcess(MDFExportTests.daqctl, ["inspect", deflated])
        #expect(inspect.status == 0 && inspect.stdout.contains("(DZ)"), "\(inspect.stdout)\(inspect.stderr)")
    }
}
