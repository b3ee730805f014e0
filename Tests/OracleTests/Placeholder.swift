// Tests for this stage arrive with it.
import Testing
import Foundation
import TestSupport

@Test func builtExecutablesAreFound() throws {
    let result = try runProcess(PackagePaths.executable("daqctl").path, ["--version"])
    #expect(result.status == 0)
    #expect(result.stdout.contains("libmosquitto"))
}
