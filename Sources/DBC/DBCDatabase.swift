// A parsed DBC file: messages, value tables and nodes. Parsing lives in DBCParser*.swift.
import DAQCore

/// The messages and signals of one DBC file.
public struct DBCDatabase: Sendable {
    /// `VERSION` string.
    public var version: String
    /// Nodes from `BU_`.
    public var nodes: [String]
    /// Messages in file order.
    public var messages: [DBCMessage]
    /// Named value tables (`VAL_TABLE_`).
    public var valueTables: [String: [Int64: String]]

    public init(version: String = "", nodes: [String] = [], messages: [DBCMessage] = [],
                valueTables: [String: [Int64: String]] = [:]) {
        self.version = version
        self.nodes = nodes
        self.messages = messages
        self.valueTables = valueTables
    }

    /// Parses DBC text; `file` names the input in errors.
    public static func parse(text: String, file: String) throws(DAQError) -> DBCDatabase {
        try parse(bytes: Array(text.utf8), file: file)
    }

    /// Parses the bytes of a DBC file (UTF-8, or Latin-1/CP1252 text in quoted strings).
    public static func parse(bytes: [UInt8], file: String) throws(DAQError) -> DBCDatabase {
        try bytes.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<UInt8>) throws(DAQError) -> DBCDatabase in
            var parser = DBCParser(bytes: buffer, file: file)
            return try parser.parseDatabase()
        }
    }

    /// The message with identifier `id` (without flag bits) of the given kind.
    public func message(id: UInt32, isExtended: Bool) -> DBCMessage? {
        messages.first { $0.id == id && $0.isExtended == isExtended }
    }

    /// The message named `name`.
    public func message(named name: String) -> DBCMessage? { messages.first { $0.name == name } }
}
