// JournalFullPause: when a paused acquisition tries the journal again, and what a pause reports.
@testable import Agent
import Testing

@Suite struct JournalFullPauseTests {
    private let ms: Int64 = 1_000_000

    /// A pause is said once, and tried again only when the journal can retire a segment: a small
    /// record that fits the room left must not end it (it would pause again at the next one).
    @Test func aPauseEndsOnlyWhenRoomCanBeMade() {
        var pause = JournalFullPause()
        #expect(pause.shouldTry(roomCanBeMade: false))
        let began = pause.paused(now: 10 * ms)
        #expect(began)
        pause.notKept(5)
        #expect(!pause.shouldTry(roomCanBeMade: false))
        #expect(pause.shouldTry(roomCanBeMade: true))
        // Still full when tried (the ack covered less than was needed): the same pause.
        let again = pause.paused(now: 260 * ms)
        #expect(!again)
        pause.notKept(3)
        let resumed = pause.resumed(now: 510 * ms)
        #expect(resumed?.recordsNotKept == 8 && resumed?.seconds == 0.5)
        let notPaused = pause.resumed(now: 520 * ms)
        #expect(pause.shouldTry(roomCanBeMade: false) && notPaused == nil)
    }

    @Test func aSecondPauseCountsApartAndTheTotalsAddUp() {
        var pause = JournalFullPause()
        _ = pause.paused(now: 0)
        pause.notKept(4)
        _ = pause.resumed(now: 100 * ms)
        let second = pause.paused(now: 1_000 * ms)
        #expect(second)
        pause.notKept(6)
        #expect(pause.pauses == 2 && pause.notKeptTotal == 10)
        // A pause still under way at the end counts up to then.
        #expect(pause.pausedSeconds(now: 1_200 * ms) == 0.3)
        let resumed = pause.resumed(now: 1_200 * ms)
        #expect(resumed?.recordsNotKept == 6)
    }
}
