// The device's alarms over a fault that lasts months: each text kept once, at most a hundred kept,
// the rest counted (a failing cursor write or a refused connection used to append a string at
// every attempt).
import Testing
@testable import Agent

@Suite struct UplinkCountersTests {
    @Test func alarmsAreKeptOnceEachAndBounded() {
        var counters = UplinkCounters()
        let first = counters.alarm("cannot persist the ack cursor: disk full")
        let again = counters.alarm("cannot persist the ack cursor: disk full")
        #expect(first && !again)
        #expect(counters.alarms.count == 1)
        for index in 0..<150 { counters.alarm("damaged segment \(index)") }
        #expect(counters.alarms.count == UplinkCounters.alarmLimit && counters.alarmsNotKept == 51)
    }
}
