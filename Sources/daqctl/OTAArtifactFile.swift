// File helpers for `daqctl ota`: streaming SHA-256 of an artifact, whole-file reads with a size
// cap, and atomic 0644 replacement of published files.
import DAQCore
import Foundation
import SystemIO
import Uplink

enum ArtifactFile {
    /// Largest file `read` loads into memory (artifacts are streamed for hashing, copied whole).
    static let maximumReadSize = 1 << 30

    /// SHA-256 (hex) and length of the file at `path`.
    static func digest(_ path: String) throws -> (String, UInt64) {
        guard let found = SHA256Digest.file(path) else { throw DAQError(.io, "cannot read: \(FileProblem.unreadable(path))", at: InputLocation(file: path)) }
        return (found.sha256, found.length)
    }

    /// The whole file at `path`.
    static func read(_ path: String) throws -> [UInt8] {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard let size = attributes?[.size] as? Int else { throw DAQError(.io, "cannot open", at: InputLocation(file: path)) }
        guard size <= maximumReadSize else { throw DAQError(.unsupported, "larger than \(maximumReadSize) bytes", at: InputLocation(file: path)) }
        guard let data = FileManager.default.contents(atPath: path) else { throw DAQError(.io, "cannot read: \(FileProblem.unreadable(path))", at: InputLocation(file: path)) }
        return [UInt8](data)
    }

    /// Replaces `path` atomically (temporary file + rename) with mode 0644.
    static func write(_ bytes: [UInt8], to path: String) throws {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        } catch {
            throw DAQError(.io, "cannot write: \(FileFailure.reason(error, path: path))", at: InputLocation(file: path))
        }
    }
}
