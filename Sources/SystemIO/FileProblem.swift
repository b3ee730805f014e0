// Why a file given on the command line or in a config cannot be read, in the system's words.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

public enum FileProblem {
    /// What a directory given where a file is wanted is called.
    public static let directory = "is a directory, not a file"

    /// Whether `path` is a directory (a file was wanted there).
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    /// The reason `path` cannot be read as a file: missing, a directory, no permission, …
    public static func unreadable(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return String(cString: strerror(errno)) }
        if info.st_mode & S_IFMT == S_IFDIR { return directory }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        close(fd)
        return "cannot be read"
    }
}
