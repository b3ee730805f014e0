// daqctl: the fleet-side and developer tools of DAQLink.
import ArgumentParser
import DAQCore
import Runtime
import Uplink

@main
struct DAQCtl: ParsableCommand {
    /// What `daqctl --version` prints.
    static let version = "0.1.0 (libmosquitto \(LinkedLibraries.mosquittoVersion), \(LinkedLibraries.openSSLVersion))"

    // No `version:` here: swift-argument-parser would then treat `--version` as "show the version"
    // in every subcommand too (it looks at the whole command stack), shadowing the release version
    // of `ota sign --version <n>` whenever that command's parse fails. main() answers `daqctl --version`.
    static let configuration = CommandConfiguration(
        commandName: "daqctl",
        abstract: "DAQLink fleet and developer tools: logs and DBC files, buses, journals, PKI, collector, MDF, OTA, demo.",
        discussion: "`daqctl --version` shows the version and the libmosquitto and OpenSSL it links.",
        subcommands: [
            FramesCommand.self, DecodeCommand.self, ListenCommand.self, ReplayCommand.self, ECUSimCommand.self,
            JournalCommand.self, PKICommand.self, BrokerConfigCommand.self, CollectCommand.self, VerifyCommand.self,
            BenchCommand.self, DemoCommand.self, ExportCommand.self, InspectCommand.self, OTACommand.self,
        ]
    )

    /// The collector (and the bench's peers) take a stream of ~137 KB messages: freed blocks are
    /// kept for the next one (`HeapReuse`).
    static func main() {
        if CommandLine.arguments.dropFirst().elementsEqual(["--version"]) {
            print(version)
            return
        }
        HeapReuse.apply()
        main(NegativeOptionValues.joined(Array(CommandLine.arguments.dropFirst())))
    }
}
