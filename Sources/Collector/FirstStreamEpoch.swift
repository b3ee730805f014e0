// The epoch of the stream a device's first copy holds (`<out>/<device>/`), recorded beside its
// journal. A copy beside the first is named after its epoch (`epoch-<E>/`); the first copy could
// hold any of the device's streams, and a copy of one segment whose header is damaged past repair
// (more than one bit, no other segment) has no other source of it.
import DAQCore
import Foundation
import PKI

enum FirstStreamEpoch {
    static let fileName = "stream-epoch"

    /// The recorded epoch in `directory` (`<out>/<device>`), nil if none is (a copy from before
    /// it was recorded, or an unreadable record).
    static func read(in directory: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: "\(directory)/\(fileName)", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first.flatMap { UInt64($0) }
    }

    /// Records `epoch` in `directory`, durably (`AtomicFile`: a new file synced and renamed over
    /// the old, the directory synced).
    static func record(_ epoch: UInt64, in directory: String) throws(DAQError) {
        let path = "\(directory)/\(fileName)"
        do {
            try AtomicFile.write(Array("\(epoch)\n".utf8), to: path, mode: AtomicFile.publicMode)
        } catch {
            throw error as? DAQError ?? DAQError(.io, "cannot record the stream's epoch: \(error)", at: InputLocation(file: path))
        }
    }
}
