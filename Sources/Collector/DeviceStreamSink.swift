// One device's stream on the collector: the pure CollectorStream decides, this sink keeps the
// early batches it holds and appends committed entries to the device's rebuilt journal, synced
// before any ack leaves (the rebuilt journal's last entry IS the committed high-water mark).
import DAQCore
import Delivery
import Journal
import JournalStore
import Acquisition
import MDFFiles

/// A checked batch: header, uncompressed body and each entry's byte range in the body.
struct ReceivedBatch {
    var header: UplinkBatch
    var body: [UInt8]
    var entries: [Range<Int>]
}

/// What the sink asks the network to send.
enum SinkOutput: Equatable {
    case ack(upTo: UInt64)
    case resend(from: UInt64)
}

final class DeviceStreamSink {
    let deviceID: String
    let epoch: UInt64
    private let journal: JournalWriter
    private var stream: CollectorStream
    private var held: [Int: ReceivedBatch] = [:]
    private var nextBatchID = 0
    private(set) var committedEntries: UInt64 = 0
    /// MDF files rebuilt next to the journal (`mdfDirectory`), one per measurement, from the same
    /// entries the device wrote its own files from: byte-identical to the device's `--mdf` files.
    private let mdfDirectory: String?
    private var mdf: MDFRecording?
    private(set) var committedBytes: UInt64 = 0

    /// Opens (or recovers) the device's rebuilt journal in `directory`.
    init(deviceID: String, epoch: UInt64, directory: String, mdfDirectory: String? = nil) throws(DAQError) {
        self.deviceID = deviceID
        self.epoch = epoch
        self.mdfDirectory = mdfDirectory
        // Segments are cut only where the device cut them (appendFramed), never by size; the
        // quota is not a retention policy here: the collector keeps everything.
        journal = try JournalWriter(directory: directory, configuration: JournalConfiguration(
            epoch: epoch, segmentSizeLimit: Int.max / 4, quotaBytes: Int.max / 2))
        guard journal.epoch == epoch else {
            throw DAQError(.malformedInput, "device \(deviceID) sends epoch \(epoch) but its rebuilt journal has epoch \(journal.epoch)",
                           at: InputLocation(file: directory, field: "epoch"))
        }
        stream = CollectorStream(committed: journal.lastSequence)
        if mdfDirectory != nil && journal.lastSequence > 0 { try resumeMDF(directory: directory) }
    }

    /// After a restart, rebuilds the current measurement's MDF file from the rebuilt journal (the
    /// bytes come out the same as if it had never stopped); earlier measurements' files are done.
    private func resumeMDF(directory: String) throws(DAQError) {
        var lastLayout: UInt64?
        let scan = try JournalReader(directory: directory, from: 1)
        while let entry = try scan.next() { if entry.kind == .layout { lastLayout = entry.sequence } }
        guard let lastLayout else { return }
        let reader = try JournalReader(directory: directory, from: lastLayout)
        while let entry = try reader.next() {
            try entry.framed.withUnsafeBytes { raw in
                Result { () throws(DAQError) in try recordInMDF(raw, sequence: entry.sequence) }
            }.get()
        }
        try mdf?.flush()
    }

    var committed: UInt64 { stream.committed }
    var duplicates: UInt64 { stream.duplicates }
    var gaps: UInt64 { stream.gaps }

    /// Feeds one checked batch; returns the acks/resend requests to publish.
    func receive(_ batch: ReceivedBatch, now: Int64) throws(DAQError) -> [SinkOutput] {
        nextBatchID += 1
        let id = nextBatchID
        held[id] = batch
        var outputs: [SinkOutput] = []
        var wrote = false
        for action in stream.receive(batch: id, first: batch.header.first, last: batch.header.last, now: now) {
            switch action {
            case .commit(let batchID, let first, let last):
                guard let source = held[batchID] else { preconditionFailure("commit of a batch not held") }
                try append(source, first: first, last: last)
                wrote = true
            case .release(let batchID):
                held[batchID] = nil
            case .acknowledge(let upTo):
                // Durable before the device may trim: sync, then ack.
                if wrote { try journal.sync(); try mdf?.flush(); wrote = false }
                outputs.append(.ack(upTo: upTo))
            case .requestResend(let from):
                outputs.append(.resend(from: from))
            }
        }
        if wrote { try journal.sync(); try mdf?.flush() }
        return outputs
    }

    private func append(_ batch: ReceivedBatch, first: UInt64, last: UInt64) throws(DAQError) {
        let starts = Set(batch.header.segmentStarts)
        for sequence in first...last {
            let range = batch.entries[Int(sequence - batch.header.first)]
            try batch.body.withUnsafeBytes { raw in
                Result { () throws(DAQError) in
                    try journal.appendFramed(UnsafeRawBufferPointer(rebasing: raw[range]), startsSegment: starts.contains(sequence))
                }
            }.get()
            committedEntries += 1
            committedBytes += UInt64(range.count)
            if mdfDirectory != nil {
                try batch.body.withUnsafeBytes { raw in
                    Result { () throws(DAQError) in try recordInMDF(UnsafeRawBufferPointer(rebasing: raw[range]), sequence: sequence) }
                }.get()
            }
        }
    }

    /// Feeds one committed entry to the MDF files: a layout entry starts a new measurement file
    /// (the previous one is finalized), a record goes into the current one. Entries before the
    /// first layout this collector saw (it started mid-measurement) have no file.
    private func recordInMDF(_ framed: UnsafeRawBufferPointer, sequence: UInt64) throws(DAQError) {
        guard let mdfDirectory, framed.count >= JournalFraming.overhead else { return }
        let payload = UnsafeRawBufferPointer(rebasing: framed[JournalFraming.headerLength..<(framed.count - JournalFraming.trailerLength)])
        switch JournalEntryKind(rawValue: framed[4]) {
        case .layout:
            try mdf?.finish()
            let layout = try MeasurementLayout(decoding: payload, source: "\(deviceID) seq \(sequence)")
            mdf = try MDFRecording(directory: mdfDirectory, name: "measurement-\(sequence)", layout: layout)
        case .record:
            try mdf?.append(payload)
        default:
            break
        }
    }

    func close() throws(DAQError) {
        try journal.close()
        try mdf?.finish()
    }
}
