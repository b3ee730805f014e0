// daqctl: the fleet-side and developer tools of DAQLink.
import ArgumentParser
import Runtime
import Uplink

@main
struct DAQCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daqctl",
        abstract: "DAQLink fleet and developer tools: logs and DBC files, buses, journals, PKI, collector, MDF, OTA, demo.",
        version: "0.1.0 (libmosquitto \(LinkedLibraries.mosquittoVersion), \(LinkedLibraries.openSSLVersion))",
        subcommands: [
            FramesCommand.self, DecodeCommand.self, ListenCommand.self, ReplayCommand.self, ECUSimCommand.self,
            JournalCommand.self, PKICommand.self, BrokerConfigCommand.self, CollectCommand.self, VerifyCommand.self,
            BenchCommand.self, DemoCommand.self, ExportCommand.self, InspectCommand.self, OTACommand.self,
        ]
    )

    /// The collector (and the bench's peers) take a stream of ~137 KB messages: freed blocks are
    /// kept for the next one (`HeapReuse`).
    static func main() {
        HeapReuse.apply()
        main(nil)
    }
}
