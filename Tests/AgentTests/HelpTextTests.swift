// Every command's --help as an 80-column terminal (or a pipe) shows it: hand-broken lines are
// wrapped again line by line by swift-argument-parser, so a prose line broken by hand leaves an
// orphan fragment, and a preformatted line (an example, a list) longer than 80 columns breaks
// mid-command. Prose is written as one line per paragraph (`\` continuations), and preformatted
// lines fit.
import Foundation
import Testing
import TestSupport

@Suite struct HelpTextTests {
    private static func help(_ command: [String], columns: Int) throws -> String {
        try runProcess(command[0], Array(command.dropFirst()) + ["--help"], environment: ["COLUMNS": "\(columns)"]).stdout
    }

    /// The command and all its subcommands, depth first.
    private static func commands(_ command: [String]) throws -> [[String]] {
        let text = try help(command, columns: 1000)
        guard let section = text.components(separatedBy: "SUBCOMMANDS:").dropFirst().first else { return [command] }
        // The section's lines up to the first blank one: "  name   abstract" (or "  name (default)").
        let listed = section.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().prefix { !$0.isEmpty }
        let names = listed.compactMap { line -> String? in
            guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return nil }
            let name = line.dropFirst(2).prefix { $0 != " " }
            guard !name.isEmpty, name != "help", name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else { return nil }
            return String(name)
        }
        return try [command] + names.flatMap { try commands(command + [$0]) }
    }

    @Test(arguments: ["daqctl", "daqlink"])
    func everyDiscussionFitsEightyColumns(tool: String) throws {
        let all = try Self.commands([PackagePaths.executable(tool).path])
        #expect(all.count >= 3)
        for command in all {
            let name = ([tool] + command.dropFirst()).joined(separator: " ")
            let wide = try Self.help(command, columns: 1000)
            let lines = (wide.components(separatedBy: "\nUSAGE:").first ?? "").split(separator: "\n", omittingEmptySubsequences: false)
            for (index, line) in lines.enumerated().dropFirst() where line.count > 80 {
                #expect(!line.hasPrefix(" "), "\(name): a preformatted line of \(line.count) columns: \(line)")
                let next = index + 1 < lines.count ? lines[index + 1] : ""
                #expect(!(next.first?.isLowercase ?? false), "\(name): a prose line broken by hand before: \(next)")
            }
        }
    }
}
