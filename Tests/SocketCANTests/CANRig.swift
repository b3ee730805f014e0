// The vcan test rig seen from the tests: whether real SocketCAN can run here (a CAN kernel or
// linux.uml), and one shared run of the guest scenarios whose outputs the suites assert on.
import CANLogs
import DAQCore
import Foundation
import TestSupport

enum CANRig {
    static let setupScript = PackagePaths.root.appendingPathComponent("vcan-setup.sh").path

    /// A kernel with CAN (loaded, or a vcan module installed for it) or the UML guest kernel
    /// is present: the same test the rig script uses to pick its path.
    static let isAvailable: Bool = {
        let files = FileManager.default
        if files.fileExists(atPath: "/proc/net/can") { return true }
        if let release = try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines) {
            let directory = "/lib/modules/\(release)/kernel/drivers/net/can/"
            let names = (try? files.contentsOfDirectory(atPath: directory)) ?? []
            if names.contains(where: { $0.hasPrefix("vcan.ko") }) { return true }
        }
        return ["/usr/bin/linux.uml", "/usr/bin/linux"].contains { files.isExecutableFile(atPath: $0) }
    }()

    /// Runs `vcan-setup.sh ARGS…` to completion.
    static func setup(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(setupScript, arguments)
    }

    /// The outputs of one guest boot that ran every scenario (a boot costs seconds, so every
    /// test of this target shares it). Computed on first use; thread-safe as a static let.
    static let scenarios: Result<ScenarioRun, ScenarioFailure> = {
        do {
            return .success(try ScenarioRun.perform())
        } catch let failure as ScenarioFailure {
            return .failure(failure)
        } catch {
            return .failure(ScenarioFailure(message: "\(error)"))
        }
    }()
}

struct ScenarioFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// The directory the guest wrote, and the rig's own output.
struct ScenarioRun: Sendable {
    let directory: URL
    let setupStatus: Int32
    let setupOutput: String

    static func perform() throws -> ScenarioRun {
        let daqctl = PackagePaths.executable("daqctl")
        guard FileManager.default.isExecutableFile(atPath: daqctl.path) else {
            throw ScenarioFailure(message: "daqctl is not built at \(daqctl.path): run `swift build` first")
        }
        let directory = try PackagePaths.temporaryDirectory("socketcan-rig")
        for sub in ["frames", "drops", "filters", "replay"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        try ReplayFixture.log.write(to: directory.appendingPathComponent("replay/in.log"), atomically: true, encoding: .utf8)
        try ScenarioScript.errorLog.write(to: directory.appendingPathComponent("filters/errors.log"), atomically: true, encoding: .utf8)
        let script = directory.appendingPathComponent("scenarios.sh")
        try ScenarioScript.text.write(to: script, atomically: true, encoding: .utf8)

        let result = try CANRig.setup(["--count", "2", "--run", "--", "bash", script.path, directory.path, daqctl.path])
        let output = result.stdout + result.stderr
        guard result.status == 0 else {
            throw ScenarioFailure(message: "scenario script failed with status \(result.status):\n\(output)")
        }
        return ScenarioRun(directory: directory, setupStatus: result.status, setupOutput: output)
    }

    /// The text of an output file (empty if missing).
    func text(_ path: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent(path), encoding: .utf8)) ?? ""
    }

    /// Frames of a candump -l style file the guest wrote, parsed by the project's own reader.
    func frames(_ path: String) throws -> [CANFrame] {
        try parseCandump(text(path), file: path)
    }

    /// The `key=value` fields of the `summary IFACE …` line for `interface` in a listen stderr file.
    func summary(_ path: String, interface: String) -> [String: String] {
        let line = text(path).split(separator: "\n").first { $0.hasPrefix("summary \(interface) ") } ?? ""
        var fields: [String: String] = [:]
        for token in line.split(separator: " ") {
            let parts = token.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }
}

/// Parses candump -l lines with CANLogs' reader.
func parseCandump(_ text: String, file: String) throws -> [CANFrame] {
    var reader = CANLogReader(format: .candump, file: file)
    var frames: [CANFrame] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        var bytes = Array(line.utf8)
        let frame = try bytes.withUnsafeMutableBufferPointer {
            try reader.frame(fromLine: UnsafeBufferPointer($0), number: index + 1)
        }
        if let frame { frames.append(frame) }
    }
    return frames
}

/// Unwraps the shared scenario run or fails the calling test with the rig's output.
func scenarioRun() throws -> ScenarioRun {
    try CANRig.scenarios.get()
}
