// Reads an experiment file and the DBC files it names (paths relative to the experiment file),
// and binds them. File I/O lives here so the Experiment and DBC modules stay pure.
import DAQCore
import DBC
import Experiment
import SystemIO
import Foundation

/// An experiment loaded from disk and bound to its DBC files.
public enum ExperimentLoader {
    /// `adjust` may change the parsed file before binding (command-line overrides).
    public static func load(path: String,
                            adjust: (inout ExperimentFile) throws(DAQError) -> Void = { _ throws(DAQError) in }) throws(DAQError) -> ExperimentBinding {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw DAQError(.io, "cannot read the experiment file", at: InputLocation(file: path))
        }
        var experiment = try ExperimentFile(text: text, file: path)
        try adjust(&experiment)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        var dbcs: [(database: DBCDatabase, file: String)] = []
        for entry in experiment.dbcs {
            let dbcPath = entry.path.hasPrefix("/") ? entry.path : directory.appendingPathComponent(entry.path).path
            dbcs.append((try loadDBC(path: dbcPath), dbcPath))
        }
        return try ExperimentBinding(experiment, file: path, dbcs: dbcs)
    }

    /// Reads and parses one DBC file.
    public static func loadDBC(path: String) throws(DAQError) -> DBCDatabase {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DAQError(.io, "cannot read the DBC file: \(FileProblem.unreadable(path))", at: InputLocation(file: path))
        }
        return try DBCDatabase.parse(bytes: [UInt8](data), file: path)
    }
}
