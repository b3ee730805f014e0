// nginx for tests (the OTA update server): started from a generated nginx.conf as a child of the
// test, with the same clean-signal-mask rules as the other spawned servers (see MosquittoBroker.swift).
import Foundation

/// nginx as a child of the test (`SpawnedProcess`: posix_spawn in its own process group with an
/// EMPTY signal mask — test threads block SIGTERM and more, and a Foundation Process child would
/// inherit that); `stop()` SIGKILLs the group (master and worker) and reaps the master once.
public final class NginxServer {
    public let errorLog: URL
    private let process: SpawnedProcess

    public init(configuration: URL, state: URL) throws {
        errorLog = state.appendingPathComponent("error.log")
        // info level, so the log says why a client certificate was refused.
        process = try SpawnedProcess(["nginx", "-c", configuration.path,
                                      "-g", "daemon off; pid \(state.path)/nginx.pid; error_log \(errorLog.path) info;"],
                                     stdout: state.appendingPathComponent("stdout.log").path, stderr: nil)
    }

    public var pid: Int32 { process.pid }

    /// True until the master has exited (reaps it when it has).
    public var isRunning: Bool { process.isRunning }

    /// Kills the whole process group at once (no grace: the tests never need a clean shutdown).
    public func stop() { process.terminate(graceSeconds: 0) }

    public var log: String { (try? String(contentsOf: errorLog, encoding: .utf8)) ?? "" }
}
