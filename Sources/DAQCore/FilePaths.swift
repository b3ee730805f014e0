// Path arithmetic shared by every module that makes a file durable (its directory is synced too).

/// The directory holding `path`: "." for a bare name, "/" for a file in the root.
public func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
