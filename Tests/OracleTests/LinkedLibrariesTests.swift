// The built tools link the C libraries the stages use (libmosquitto, OpenSSL) and report them.
import Foundation
import Testing
import TestSupport

@Test func builtToolsReportTheirLinkedLibraries() throws {
    for tool in ["daqctl", "daqlink"] {
        let result = try runProcess(PackagePaths.executable(tool).path, ["--version"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("libmosquitto 2."), "\(tool): \(result.stdout)")
        #expect(result.stdout.contains("OpenSSL 3."), "\(tool): \(result.stdout)")
    }
}
