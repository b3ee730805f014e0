// `daqlink boot`: the simulator's bootloader. Chooses the A/B slot from the persisted boot state
// (like RAUC's bootchooser), then replaces itself with that slot's `daqlink run`.
import ArgumentParser
import DAQCore
import Foundation
import Logging
import OTA
import OTADevice
import Runtime
#if canImport(Glibc)
import Glibc
#endif

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Choose the firmware slot and start `daqlink run` from it (A/B update with trial boot and rollback).",
        discussion: """
            DIR holds slots/a/daqlink and slots/b/daqlink and the persisted boot state. On the \
            first boot, slot a's binary becomes the committed factory firmware. A slot that an \
            update installed is started as a trial: each boot counts one of --trial-attempts; \
            the trial is committed only when its uplink connects and the collector acknowledges \
            a batch end to end within `run --health-timeout` seconds, otherwise (or when the \
            attempts run out, or its image does not verify) the device falls back to the \
            committed slot. Every step is persisted before the next one, so a power cut at any \
            point resumes or rolls back. Status reports go to devices/<id>/ota/status.

            Everything after `--` is passed to `daqlink run` (the slot's binary):
              daqlink boot --ota-dir /data/ota -- --experiment exp.toml \\
                --source socketcan:can0 --journal /data/journal \\
                --broker 10.0.0.5:8883 --device rig-01 --pki /etc/daqlink/pki \\
                --ota-url https://10.0.0.5:8443/ota/ --ota-key /etc/daqlink/release.pub

            See docs/ota.md.
            """
    )

    @Option(help: "The update directory (slots/a, slots/b, boot state, staging).")
    var otaDir: String

    @Option(help: "The version of the factory firmware in slot a (first boot only).")
    var factoryVersion: UInt64 = 1

    @Option(help: "Boot attempts a trial slot gets before the device falls back.")
    var trialAttempts: UInt8 = 3

    @Argument(parsing: .postTerminator, help: "Arguments for `daqlink run`.")
    var runArguments: [String] = []

    func validate() throws {
        guard trialAttempts > 0 else { throw ValidationError("--trial-attempts must be at least 1") }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .notice
            return handler
        }
        let directory = SlotDirectory(root: otaDir)
        let slot: Slot
        do {
            slot = try BootChooser(directory: directory, trialAttempts: trialAttempts)
                .choose(factoryVersion: factoryVersion, time: SystemClock.realtime() / 1_000_000_000)
        } catch {
            FileHandle.standardError.write(Data("daqlink boot: \(error)\n".utf8))
            throw ExitCode(70)
        }
        do {
            // A "reboot" re-executes with exactly these arguments, whatever the slot's binary did with its own.
            try directory.saveRunArguments(runArguments)
        } catch {
            FileHandle.standardError.write(Data("daqlink boot: \(error)\n".utf8))
            throw ExitCode(70)
        }
        let binary = directory.binaryPath(slot)
        FileHandle.standardError.write(Data("daqlink boot: starting slot \(slot.rawValue) (\(binary))\n".utf8))
        Self.exec(binary, ["run", "--ota-dir", otaDir, "--booted-slot", slot.rawValue, "--trial-attempts", String(trialAttempts)] + runArguments)
    }

    /// "Reboot": replace this process with `daqlink boot` from the committed slot.
    /// The arguments are the ones `daqlink boot` saved, never this (possibly trial) binary's own.
    static func reexecute(otaDirectory: String, trialAttempts: UInt8) throws {
        let directory = SlotDirectory(root: otaDirectory)
        let slot = directory.rebootSlot()
        let runArguments: [String]
        do { runArguments = try directory.runArguments() } catch {
            FileHandle.standardError.write(Data("daqlink: cannot reboot: \(error)\n".utf8))
            throw ExitCode(70)
        }
        exec(directory.binaryPath(slot), ["boot", "--ota-dir", otaDirectory, "--trial-attempts", String(trialAttempts), "--"] + runArguments)
    }

    private static func exec(_ binary: String, _ arguments: [String]) -> Never {
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        execv(binary, argv)
        FileHandle.standardError.write(Data("daqlink: cannot execute \(binary): \(String(cString: strerror(errno)))\n".utf8))
        Foundation.exit(70)
    }
}
