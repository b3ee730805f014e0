// `--name -N` reaches the option (as `--name=-N`), so its own check names the negative number
// instead of swift-argument-parser's "Missing value for '--name'".
import DAQCore
import Testing

@Suite struct NegativeOptionValuesTests {
    @Test func aNegativeNumberAfterAnOptionIsJoinedToIt() {
        #expect(NegativeOptionValues.joined(["run", "--speed", "-1", "--duration", "-0.5", "--epoch", "-3"])
                == ["run", "--speed=-1", "--duration=-0.5", "--epoch=-3"])
    }

    @Test func everythingElseIsLeftAsItIs() {
        // Short options, an option already joined, a non-number, and all that follows `--`.
        #expect(NegativeOptionValues.joined(["-v", "--a=-1", "--b", "-x", "--c", "-", "--", "--d", "-2"])
                == ["-v", "--a=-1", "--b", "-x", "--c", "-", "--", "--d", "-2"])
        #expect(NegativeOptionValues.joined(["--last"]) == ["--last"])
    }
}
