// Why a file given on the command line or in a config cannot be read, in the system's words.
import DAQCore
#if canImport(Glibc)
import Glibc
#endif

public enum FileProblem {
    /// The reason `path` cannot be read as a file: missing, a directory, no permission, …
    public static func unreadable(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return String(cString: strerror(errno)) }
        if info.st_mode & S_IFMT == S_IFDIR { return "is a directory, not a file" }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        close(fd)
        return "cannot be read"
    }
}
