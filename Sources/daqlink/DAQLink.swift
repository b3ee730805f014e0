// daqlink: the device agent that runs on the single-board computer.
import ArgumentParser
import DAQCore
import Uplink

@main
struct DAQLinkAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daqlink",
        abstract: "DAQLink device agent: acquire ECU data from CAN, keep it, send it, update itself.",
        version: "0.1.0 (libmosquitto \(LinkedLibraries.mosquittoVersion), \(LinkedLibraries.openSSLVersion))",
        subcommands: [RunCommand.self, BootCommand.self]
    )

    static func main() {
        main(NegativeOptionValues.joined(Array(CommandLine.arguments.dropFirst())))
    }
}
