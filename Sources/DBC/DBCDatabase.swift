// A parsed DBC file. (Stage placeholder: parser and decoder arrive with the DBC work.)
import DAQCore

/// The messages and signals of one DBC file.
public struct DBCDatabase: Sendable {
    public init() {}
}
