// Shared helpers for the test targets: where the package, fixtures, ../shared and the built
// executables are, and running a process (our binaries, python oracles, can-utils) to completion.
import Foundation

/// Paths the tests need, found from this file's location and the running test bundle.
public enum PackagePaths {
    /// The package root (the directory holding Package.swift).
    public static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// `Fixtures/` in the package.
    public static var fixtures: URL { root.appendingPathComponent("Fixtures") }

    /// `../shared` beside the repository (real DBC files and logs, read in place, never copied).
    public static var shared: URL { root.deletingLastPathComponent().appendingPathComponent("shared") }

    /// The directory holding the built products (the test bundle's own directory).
    public static let products: URL = {
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
        return exe.deletingLastPathComponent().standardizedFileURL
            .pathComponents.contains(where: { $0.hasSuffix(".xctest") })
            ? exe.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            : exe.deletingLastPathComponent()
    }()

    /// A built executable of this package (`daqctl`, `daqlink`).
    public static func executable(_ name: String) -> URL {
        let candidates = [products.appendingPathComponent(name),
                          products.deletingLastPathComponent().appendingPathComponent(name)]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// A fresh temporary directory, unique per call. It is removed when the test process exits
    /// (a run would otherwise leave some 300 directories behind), unless DAQLINK_KEEP_TEST_DIRS is
    /// set: then they stay for a look after a failure.
    public static func temporaryDirectory(_ label: String = "daqlink-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        TemporaryDirectories.created(url.path)
        return url
    }
}

/// The test process's temporary directories, removed at its exit.
private enum TemporaryDirectories {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String] = []
    nonisolated(unsafe) private static var registered = false

    static func created(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        paths.append(path)
        guard !registered, ProcessInfo.processInfo.environment["DAQLINK_KEEP_TEST_DIRS"] == nil else { return }
        registered = true
        atexit { TemporaryDirectories.removeAll() }
    }

    private static func removeAll() {
        lock.lock()
        defer { lock.unlock() }
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
        paths.removeAll()
    }
}

/// The outcome of a finished process.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var stdoutData: Data
}

/// Runs `executable` with `arguments` to completion; `stdin` is written to its standard input.
/// Output is read concurrently so a chatty process never blocks on a full pipe.
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                       environment: [String: String]? = nil, currentDirectory: URL? = nil) throws -> ProcessResult {
    let process = Process()
    if executable.contains("/") {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
    }
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try process.run()
    let outBox = DataBox(), errBox = DataBox()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin {
        input.fileHandleForWriting.write(stdin)
        try? input.fileHandleForWriting.close()
    }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(status: process.terminationStatus,
                         stdout: String(decoding: outBox.data, as: UTF8.self),
                         stderr: String(decoding: errBox.data, as: UTF8.self),
                         stdoutData: outBox.data)
}

/// A command that runs the command after it in a mount namespace of its own (`unshare`, as
/// root) whose resolver files are written into `directory`: a resolv.conf naming `nameserver`
/// with `timeout` seconds per query, a hosts file holding only "127.0.0.1 not-the-broker"
/// (rewritable by the test: read at every lookup), and "hosts: files dns".
public func privateResolver(in directory: URL, nameserver: String, timeout: Int) throws -> (wrapper: [String], hosts: URL) {
    let resolv = directory.appendingPathComponent("resolv.conf"), hosts = directory.appendingPathComponent("hosts")
    let nsswitch = directory.appendingPathComponent("nsswitch.conf")
    try "nameserver \(nameserver)\noptions timeout:\(timeout) attempts:1\n".write(to: resolv, atomically: true, encoding: .utf8)
    try "127.0.0.1 not-the-broker\n".write(to: hosts, atomically: true, encoding: .utf8)
    try "passwd: files\ngroup: files\nhosts: files dns\n".write(to: nsswitch, atomically: true, encoding: .utf8)
    let mounts = "mount --bind \(resolv.path) /etc/resolv.conf && mount --bind \(hosts.path) /etc/hosts"
        + " && mount --bind \(nsswitch.path) /etc/nsswitch.conf && exec \"$0\" \"$@\""
    return (["/usr/bin/unshare", "--mount", "/bin/sh", "-c", mounts], hosts)
}

/// Runs a Python snippet with python3 (the oracles: cantools, python-can, asammdf, paho-mqtt).
@discardableResult
public func runPython(_ script: String, _ arguments: [String] = [], stdin: Data? = nil) throws -> ProcessResult {
    try runProcess("python3", ["-c", script] + arguments, stdin: stdin)
}

// Written by one reader thread, read after DispatchGroup.wait(): the group orders the accesses.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// Small real file systems for full-disk tests.
public enum TemporaryFilesystem {
    /// Whether this process can mount a small tmpfs (root in a container that allows it).
    public static let canMount: Bool = {
        guard getuid() == 0, let dir = try? PackagePaths.temporaryDirectory("tmpfs-probe").path else { return false }
        guard (try? runProcess("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]))?.status == 0 else {
            try? FileManager.default.removeItem(atPath: dir)
            return false
        }
        _ = try? runProcess("umount", [dir])
        try? FileManager.default.removeItem(atPath: dir)
        return true
    }()

    /// Mounts a tmpfs of `size` ("256k") on a fresh directory named after `label`, runs `body`
    /// with its path, then unmounts and removes it.
    public static func withMounted<R>(_ label: String, size: String, _ body: (String) throws -> R) throws -> R {
        let mountPoint = try PackagePaths.temporaryDirectory(label).path
        let mounted = try runProcess("mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint])
        guard mounted.status == 0 else { throw TemporaryFilesystemError(description: "mount tmpfs on \(mountPoint): \(mounted.stderr)") }
        defer {
            _ = try? runProcess("umount", ["-l", mountPoint])
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
        return try body(mountPoint)
    }
}

public struct TemporaryFilesystemError: Error, CustomStringConvertible {
    public var description: String
}
