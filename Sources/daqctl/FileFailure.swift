// Why Foundation could not read or write a file, in the words of the system (strerror), not
// Foundation's ("The operation could not be completed. (NSCocoaErrorDomain error 512.)").
import Foundation
import SystemIO
#if canImport(Glibc)
import Glibc
#endif

enum FileFailure {
    /// The reason behind `error` for `path`: a directory where a file is wanted is named as such.
    static func reason(_ error: any Error, path: String) -> String {
        if FileProblem.isDirectory(path) { return FileProblem.directory }
        var current = error as NSError
        while true {
            if current.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(current.code))) }
            guard let underlying = current.userInfo[NSUnderlyingErrorKey] as? NSError else { break }
            current = underlying
        }
        switch CocoaError.Code(rawValue: (error as NSError).code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        default: return "\(error)"
        }
    }
}

/// Entries a journal reader passed as unreadable (damaged storage), said in one line.
enum UnreadableEntries {
    /// "N entries unreadable (damaged storage)<what>: seq a…b, c, …" for the first few runs.
    static func line(_ runs: [ClosedRange<UInt64>], what: String = "") -> String {
        let count = runs.reduce(UInt64(0)) { $0 + $1.upperBound - $1.lowerBound + 1 }
        let named = runs.prefix(5).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)…\($0.upperBound)" }
        return "\(count) entries unreadable (damaged storage)\(what): seq " + named.joined(separator: ", ") + (runs.count > 5 ? ", …" : "")
    }
}
