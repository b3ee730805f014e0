// daqctl: the fleet-side and developer tools of DAQLink.
import ArgumentParser
import Uplink

@main
struct DAQCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daqctl",
        abstract: "DAQLink fleet and developer tools: read and decode CAN logs, replay onto a bus.",
        version: "0.1.0 (libmosquitto \(LinkedLibraries.mosquittoVersion), \(LinkedLibraries.openSSLVersion))",
        subcommands: [FramesCommand.self, DecodeCommand.self, ListenCommand.self, ReplayCommand.self, JournalCommand.self,
                      BenchCommand.self, ECUSimCommand.self]
    )
}
