// The one error type of DAQLink: a code, a human message, and where the bad input was.

/// Where in an input a problem was found: file, line and (when known) the field or column.
public struct InputLocation: Sendable, Hashable, CustomStringConvertible {
    /// File path as the user gave it (`-` for standard input).
    public var file: String
    /// 1-based line number, when the input is line-oriented.
    public var line: Int?
    /// The field, column or token that was wrong, when known.
    public var field: String?

    public init(file: String, line: Int? = nil, field: String? = nil) {
        self.file = file
        self.line = line
        self.field = field
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let field { text += " [\(field)]" }
        return text
    }
}

/// An error with a stable code, a message for a person, and the input location it came from.
public struct DAQError: Error, Sendable, CustomStringConvertible {
    /// Stable, machine-readable category.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Input that does not follow its format (log line, DBC, config).
        public static let malformedInput = Code("malformed-input")
        /// Input that is well-formed but asks for something not supported.
        public static let unsupported = Code("unsupported")
        /// A system call or library call failed.
        public static let system = Code("system")
        /// A file could not be opened or read.
        public static let io = Code("io")
    }

    public var code: Code
    public var message: String
    public var location: InputLocation?

    public init(_ code: Code, _ message: String, at location: InputLocation? = nil) {
        self.code = code
        self.message = message
        self.location = location
    }

    /// A malformed-input error at `file:line`, naming the field that was wrong.
    public static func malformed(_ message: String, file: String, line: Int?, field: String? = nil) -> DAQError {
        DAQError(.malformedInput, message, at: InputLocation(file: file, line: line, field: field))
    }

    public var description: String {
        if let location { return "\(location): \(message)" }
        return message
    }
}
