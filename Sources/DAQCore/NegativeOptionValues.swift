// `--speed -1` reaches the option as "-1": swift-argument-parser takes "-1" for an option of its
// own and answers "Missing value for '--speed <speed>'", which hides the real mistake (a negative
// number) from the user. Joined as `--speed=-1`, the option's own check names it.

public enum NegativeOptionValues {
    /// `arguments` (without the program name) with each `--name -N` written `--name=-N`, up to
    /// a `--` (what follows it is passed on as it is).
    public static func joined(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            if argument == "--" { return out + arguments[index...] }
            let next = index + 1 < arguments.endIndex ? arguments[index + 1] : ""
            if argument.hasPrefix("--"), !argument.contains("="), isNegativeNumber(next) {
                out.append("\(argument)=\(next)")
                index += 2
            } else {
                out.append(argument)
                index += 1
            }
        }
        return out
    }

    private static func isNegativeNumber(_ text: String) -> Bool {
        guard text.hasPrefix("-"), text.count > 1 else { return false }
        return Double(text) != nil
    }
}
