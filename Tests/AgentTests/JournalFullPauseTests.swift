// JournalFullPause: when a paused acquisition tries the journal again, and what a pause reports.
@testable import Agent
import Testing

@Suite struct JournalFullPauseTests {
    private let ms: Int64 = 1_000_000

    /// A pause is said once, and tried again only when the journal can retire a segment: a small
    /// record that fits the room left must not end it (it would pause again at the next one).
    @Test func aPauseEndsOnlyWhenRoomCanBeMade() {
        var pause = JournalFullPause()
        #expect(pause.shouldTry(roomCanBeMade: false, now: 0))
        let began = pause.paused(now: 10 * ms)
        #expect(began)
        pause.notKept(5)
        #expect(!pause.shouldTry(roomCanBeMade: false, now: 0))
        #expect(pause.shouldTry(roomCanBeMade: true, now: 0))
        // Still full when tried (the ack covered less than was needed): the same pause.
        let again = pause.paused(now: 260 * ms)
        #expect(!again)
        pause.notKept(3)
        let resumed = pause.resumed(now: 510 * ms)
        #expect(resumed?.recordsNotKept == 8 && resumed?.seconds == 0.5)
        let notPaused = pause.resumed(now: 520 * ms)
        #expect(pause.shouldTry(roomCanBeMade: false, now: 0) && notPaused == nil)
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

    /// A pause that is the disk's (not the quota's) is tried again once a second whatever the
    /// journal can retire: room may come from elsewhere (another file deleted), and acks may free
    /// nothing. A quota pause is not.
    @Test func aDiskFullPauseIsTriedAgainOnceASecond() {
        var pause = JournalFullPause()
        _ = pause.paused(now: 0, disk: true)
        #expect(!pause.shouldTry(roomCanBeMade: false, now: 999 * ms))
        #expect(pause.shouldTry(roomCanBeMade: false, now: 1_000 * ms))
        _ = pause.paused(now: 1_000 * ms, disk: true)
        #expect(!pause.shouldTry(roomCanBeMade: false, now: 1_500 * ms), "counted from the last try")
        #expect(!pause.shouldTry(roomCanBeMade: false, now: 2_000 * ms, diskHasRoom: false), "not at any free byte")
        var quota = JournalFullPause()
        _ = quota.paused(now: 0)
        #expect(!quota.shouldTry(roomCanBeMade: false, now: 60_000 * ms))
    }
}
