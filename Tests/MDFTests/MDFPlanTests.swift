// `MDFWriter.plan`: a finalized file laid out from its record counts, then filled with each
// group's records at its place (`daqctl export`, which holds no journal in memory), is the file
// `finalizedFile` builds in memory, byte for byte.
import Testing
import DAQCore
import Acquisition
@testable import MDF

@Suite struct MDFPlanTests {
    private func filled(_ plan: MDFPlan, _ records: [[UInt8]]) -> [UInt8] {
        var file = [UInt8](repeating: 0, count: plan.length)
        for piece in plan.pieces { file.replaceSubrange(piece.offset..<(piece.offset + piece.bytes.count), with: piece.bytes) }
        for (group, bytes) in records.enumerated() {
            file.replaceSubrange(plan.dataOffsets[group]..<(plan.dataOffsets[group] + bytes.count), with: bytes)
        }
        return file
    }

    @Test func aPlannedFileFilledWithItsRecordsIsTheFinalizedFile() {
        let (layout, records, _) = MDFWriterTests.measure()
        let cycles = layout.groups.indices.map { UInt64(records[$0].count / RecordLayout(layout.groups[$0]).recordBytes) }
        let plan = MDFWriter.plan(layout: layout, cycles: cycles)
        #expect(plan.pieces.count == layout.groups.count)
        #expect(filled(plan, records) == MDFWriter.finalizedFile(layout: layout, records: records))
        // Pieces in file order, none overlapping a group's records.
        for (index, piece) in plan.pieces.enumerated() where index > 0 {
            #expect(piece.offset >= plan.dataOffsets[index - 1] + records[index - 1].count)
        }
    }

    @Test func groupsWithoutRecordsAndAMeasurementWithoutGroupsToo() {
        let (layout, records, _) = MDFWriterTests.measure()
        let none = records.map { _ in [UInt8]() }
        #expect(filled(MDFWriter.plan(layout: layout, cycles: none.map { _ in 0 }), none)
                == MDFWriter.finalizedFile(layout: layout, records: none))
        let empty = MeasurementLayout(start: layout.start, experiment: "empty", groups: [])
        #expect(filled(MDFWriter.plan(layout: empty, cycles: []), []) == MDFWriter.finalizedFile(layout: empty, records: []))
    }
}
