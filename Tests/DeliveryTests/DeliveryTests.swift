// Delivery state machines: event → action sequences, and a seeded simulation of a lossy,
// duplicating, reordering link between sender and collector that must end byte-for-byte complete.
import Testing
@testable import Delivery

@Suite struct UplinkSenderTests {
    var policy: UplinkPolicy {
        var p = UplinkPolicy()
        p.maxBatchEntries = 4
        p.window = 2
        p.linger = 100
        return p
    }

    /// Acknowledged up to 2 of 12, connected, its first window (3…6, 7…10) PUBACKed.
    func senderWithTwoBatchesTaken() -> UplinkSender {
        var sender = UplinkSender(policy: policy, acknowledged: 2, journalEnd: 12)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        _ = sender.on(.published(token: 1, reasonCode: 0), now: 1)
        _ = sender.on(.published(token: 2, reasonCode: 0), now: 1)
        return sender
    }

    @Test func publishesFullBatchesWithinTheWindowAndLingersOnPartialOnes() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 0)
        #expect(sender.start() == [.connect])
        #expect(sender.on(.connected, now: 0) == [])
        #expect(sender.on(.journalAdvanced(last: 2), now: 1) == [.arm(.linger, deadline: 101)])
        #expect(sender.on(.journalAdvanced(last: 3), now: 50) == [])
        #expect(sender.on(.timer(.linger), now: 101) == [.publish(token: 1, first: 1, last: 3)])
        // Steady state: the batch before was partial, so the next partial one lingers too.
        #expect(sender.on(.journalAdvanced(last: 4), now: 120) == [.arm(.linger, deadline: 220)])
        #expect(sender.on(.journalAdvanced(last: 12), now: 130) == [.publish(token: 2, first: 4, last: 7)])
        #expect(sender.on(.published(token: 1, reasonCode: 0), now: 131) == [
            .arm(.ackTimeout, deadline: 131 + policy.ackTimeout), .publish(token: 3, first: 8, last: 11),
        ])
        // 8…11 was full (a burst): the lone entry 12 after it goes as soon as the window has room.
        #expect(sender.on(.published(token: 2, reasonCode: 0), now: 132) == [.publish(token: 4, first: 12, last: 12)])
        #expect(sender.on(.timer(.linger), now: 220).isEmpty)
    }

    @Test func aBacklogsTailGoesWithoutLingering() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 10)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [
            .publish(token: 1, first: 1, last: 4), .publish(token: 2, first: 5, last: 8),
        ])
        // The batch before was full: entries 9 and 10 are the backlog's tail, sent once there is room.
        #expect(sender.on(.published(token: 1, reasonCode: 0), now: 2) == [
            .arm(.ackTimeout, deadline: 2 + policy.ackTimeout), .publish(token: 3, first: 9, last: 10),
        ])
        // Caught up: the next partial batch lingers again.
        #expect(sender.on(.journalAdvanced(last: 11), now: 3).isEmpty)
        #expect(sender.on(.published(token: 2, reasonCode: 0), now: 4) == [.arm(.linger, deadline: 104)])
    }

    @Test func pubackNeverTrimsOnlyTheCollectorsAckDoes() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 4)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 1, last: 4)])
        _ = sender.on(.published(token: 1, reasonCode: 0), now: 1)
        #expect(sender.acknowledged == 0)
        #expect(sender.on(.collectorAck(upTo: 4), now: 2) == [.persistAcknowledged(4)])
        #expect(sender.acknowledged == 4)
    }

    @Test func reconnectResendsFromTheAcknowledgedCursorWithBackoff() {
        var sender = UplinkSender(policy: policy, acknowledged: 4, journalEnd: 12)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 5, last: 8), .publish(token: 2, first: 9, last: 12)])
        #expect(sender.on(.disconnected, now: 10, jitter: 0) == [.arm(.reconnect, deadline: 10 + policy.backoffInitial / 2)])
        #expect(sender.on(.timer(.reconnect), now: 20) == [.connect])
        #expect(sender.on(.disconnected, now: 30, jitter: 0) == [.arm(.reconnect, deadline: 30 + policy.backoffInitial)])
        _ = sender.on(.timer(.reconnect), now: 40)
        #expect(sender.on(.connected, now: 50) == [.publish(token: 3, first: 5, last: 8), .publish(token: 4, first: 9, last: 12)])
    }

    /// Sessions the broker accepts and ends at once (publishes refused, a client id taken over)
    /// keep backing off; one that lasted `stableSession` starts the backoff afresh. Before, every
    /// accepted session reset it: a reconnect about twice a second for ever.
    @Test func onlyASessionThatLastedResetsTheBackoff() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 4)
        _ = sender.start()
        var now: Int64 = 0
        var delays: [Int64] = []
        for _ in 0..<4 {
            _ = sender.on(.connected, now: now)
            now += 1_000_000  // ended 1 ms after it was accepted
            for case .arm(.reconnect, let deadline) in sender.on(.disconnected, now: now, jitter: 0) { delays.append(deadline - now) }
            now += 1_000_000_000
            _ = sender.on(.timer(.reconnect), now: now)
        }
        #expect(delays == [1, 2, 4, 8].map { policy.backoffInitial * $0 / 2 })
        _ = sender.on(.connected, now: now)
        now += policy.stableSession
        var after: [Int64] = []
        for case .arm(.reconnect, let deadline) in sender.on(.disconnected, now: now, jitter: 0) { after.append(deadline - now) }
        #expect(after == [policy.backoffInitial / 2])
    }

    /// A session the device closes itself to connect with other credentials is no failure: the
    /// next attempt waits the first step of the backoff, however short the session and however
    /// many failures came before (the check of new credentials drops the old ones' session right
    /// after its CONNACK, and the new ones' attempt waited up to `backoffMax`).
    @Test func aSessionClosedForNewCredentialsStartsTheBackoffAfresh() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 4)
        _ = sender.start()
        var now: Int64 = 0
        for _ in 0..<6 {
            now += 1_000_000_000
            _ = sender.on(.disconnected, now: now, jitter: 0)
            _ = sender.on(.timer(.reconnect), now: now)
        }
        _ = sender.on(.connected, now: now)
        now += 1_000_000
        var delays: [Int64] = []
        for case .arm(.reconnect, let deadline) in sender.on(.closedForNewCredentials, now: now, jitter: 0) { delays.append(deadline - now) }
        #expect(delays == [policy.backoffInitial / 2])
        // The failures after it back off from the start again.
        _ = sender.on(.timer(.reconnect), now: now)
        delays = []
        for case .arm(.reconnect, let deadline) in sender.on(.disconnected, now: now, jitter: 0) { delays.append(deadline - now) }
        #expect(delays == [policy.backoffInitial])
    }

    @Test func refusedPublishRaisesAnAlarmAndNoSubscriberIsCountedUndelivered() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 16)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        let refused = sender.on(.published(token: 1, reasonCode: 0x87), now: 1)
        #expect(refused.contains(.alarm("the broker refuses this device's data: reason code 0x87 not authorized (the broker's ACL: is --device "
                                        + "the certificate's CN?) (first for entries 1…4; every refused batch is counted in the summary)")))
        _ = sender.on(.published(token: 2, reasonCode: 0x10), now: 2)
        #expect(sender.undelivered == 1)
        #expect(sender.acknowledged == 0)
        // The same refusal again, on this connection or the next: counted, not alarmed (twenty
        // batches a second each logged an ALARM line for as long as the ACL was wrong).
        let again = sender.on(.published(token: 3, reasonCode: 0x87), now: 3)
        #expect(!again.contains { if case .alarm = $0 { return true } else { return false } })
        #expect(sender.refused == 2)
        _ = sender.on(.disconnected, now: 4, jitter: 0)
        _ = sender.on(.timer(.reconnect), now: 5)
        let next = sender.on(.connected, now: 6)
        let token = next.compactMap { if case .publish(let token, _, _) = $0 { return token } else { return nil } }.first!
        #expect(!sender.on(.published(token: token, reasonCode: 0x87), now: 7).contains { if case .alarm = $0 { return true } else { return false } })
        #expect(sender.refused == 3)
    }

    @Test func resendRequestRewindsToWhereTheCollectorAsks() {
        var sender = senderWithTwoBatchesTaken()
        #expect(sender.on(.resendRequest(from: 7), now: 2) == [.publish(token: 4, first: 7, last: 10), .publish(token: 5, first: 11, last: 12)])
        #expect(sender.refilling == nil)
    }

    /// A reconnect sends from the first entry the broker did not take: what it PUBACKed with
    /// success sits in the collector's durable queue, and with the collector away it was the
    /// whole backlog again at every reconnect. No subscriber (0x10) took nothing; a resend
    /// request says the collector lacks what it names, whatever the broker PUBACKed.
    @Test func aReconnectSendsFromTheFirstEntryTheBrokerDidNotTake() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 12)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 1, last: 4), .publish(token: 2, first: 5, last: 8)])
        _ = sender.on(.published(token: 2, reasonCode: 0), now: 1)  // 5…8 taken before 1…4: not joined yet
        #expect(sender.queuedThrough == 0)
        _ = sender.on(.published(token: 1, reasonCode: 0), now: 1)
        #expect(sender.queuedThrough == 8)
        _ = sender.on(.published(token: 3, reasonCode: 0x10), now: 2)  // 9…12: no subscriber
        #expect(sender.queuedThrough == 8)
        _ = sender.on(.disconnected, now: 3, jitter: 0)
        _ = sender.on(.timer(.reconnect), now: 300)
        // (The ack timer armed at the first PUBACK is still running: no second one.)
        #expect(sender.on(.connected, now: 400) == [.publish(token: 4, first: 9, last: 12)])
        // The collector lacks 5…: the broker lost them (a full queue, a snapshot lost in a crash).
        _ = sender.on(.resendRequest(from: 5), now: 401)
        #expect(sender.queuedThrough == 4)
        _ = sender.on(.disconnected, now: 402, jitter: 0)
        _ = sender.on(.timer(.reconnect), now: 700)
        #expect(sender.on(.connected, now: 800).first == .publish(token: 7, first: 5, last: 8))
        // Acknowledged end to end counts as taken.
        _ = sender.on(.collectorAck(upTo: 10), now: 801)
        #expect(sender.queuedThrough == 10)
    }

    /// Behind a hole that stays (a batch the broker refused, the collector away) what the broker
    /// takes is kept as one merged range, not one range a PUBACK (sorted again at each).
    @Test func rangesTakenBehindAHoleStayMerged() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 4)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        _ = sender.on(.published(token: 1, reasonCode: 0x95), now: 1)  // 1…4 refused: the hole
        var token = 1
        for end in stride(from: UInt64(8), through: 400, by: 4) {
            for case .publish(let next, _, _) in sender.on(.journalAdvanced(last: end), now: Int64(end)) { token = next }
            _ = sender.on(.published(token: token, reasonCode: 0), now: Int64(end) + 1)
        }
        #expect(sender.queuedThrough == 0)
        #expect(sender.rangesTakenAhead == 1)
    }

    /// After a restart, what the last run noted the broker took: sending starts after it, the ack
    /// timeout is armed at the connect (so the probe asks), and a note beyond the journal or
    /// below the cursor is clamped.
    @Test func aRestartStartsAfterWhatTheBrokerTookBefore() {
        var sender = UplinkSender(policy: policy, acknowledged: 2, journalEnd: 12, queuedThrough: 8)
        #expect(sender.queuedThrough == 8)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 9, last: 12), .arm(.ackTimeout, deadline: policy.ackTimeout)])
        #expect(UplinkSender(policy: policy, acknowledged: 2, journalEnd: 12, queuedThrough: 99).queuedThrough == 12)
        #expect(UplinkSender(policy: policy, acknowledged: 5, journalEnd: 12, queuedThrough: 3).queuedThrough == 5)
    }

    /// An ack beyond the journal's end (the collector holds entries a damaged tail cut on the
    /// device) moves nothing, and must not trap on an empty range of taken entries.
    @Test func anAckBeyondAnEmptyJournalMovesNothing() {
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 0)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        _ = sender.on(.collectorAck(upTo: 5), now: 1)
        #expect(sender.acknowledged == 0 && sender.queuedThrough == 0)
    }

    /// The same with entries numbered after the cut: the collector's ack beyond the journal's end
    /// names its own entries, not these. Before, it was cut to the journal's end and taken: the
    /// cursor covered new entries the collector refuses (they differ from its own under the same
    /// numbers), and retention could delete them. Now nothing moves, with one alarm, and acks
    /// beyond that end stay refused while the journal grows past them; acks below it are taken.
    @Test func anAckBeyondTheJournalsEndNeverCoversItsNewEntries() {
        var sender = UplinkSender(policy: policy, acknowledged: 850, journalEnd: 900)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        _ = sender.on(.journalAdvanced(last: 920), now: 1)
        let first = sender.on(.collectorAck(upTo: 1000), now: 2)
        #expect(first.filter { if case .alarm = $0 { true } else { false } }.count == 1, "\(first)")
        #expect(!first.contains(.persistAcknowledged(920)) && sender.acknowledged == 850 && sender.divergedAfter == 920)
        _ = sender.on(.journalAdvanced(last: 1100), now: 3)
        let again = sender.on(.collectorAck(upTo: 1000), now: 4)
        #expect(sender.acknowledged == 850 && !again.contains { if case .alarm = $0 { true } else { false } }, "\(again)")
        _ = sender.on(.collectorAck(upTo: 880), now: 5)
        #expect(sender.acknowledged == 880)

        // A restart keeps it (the uplink's note); a resend request at or below it (the copy set
        // aside, rebuilt from the device) ends it, and acks are taken again.
        var restarted = UplinkSender(policy: policy, acknowledged: 880, journalEnd: 1200, divergedAfter: 920)
        _ = restarted.start()
        _ = restarted.on(.connected, now: 0)
        _ = restarted.on(.collectorAck(upTo: 1000), now: 1)
        #expect(restarted.acknowledged == 880)
        _ = restarted.on(.resendRequest(from: 1001), now: 2)
        #expect(restarted.divergedAfter == 920, "the copy in conflict asks from beyond its mark: no rebuild")
        let rebuilt = restarted.on(.resendRequest(from: 1), now: 3)
        #expect(restarted.divergedAfter == nil && rebuilt.contains { if case .notice = $0 { true } else { false } }, "\(rebuilt)")
        _ = restarted.on(.collectorAck(upTo: 1000), now: 4)
        #expect(restarted.acknowledged == 1000)
    }

    /// A collector away while the link is up: the broker PUBACKs everything (its durable session
    /// queues it) and no end-to-end ack comes. Each ack timeout sends one entry from the cursor,
    /// the waits doubling up to `ackTimeoutMax`, with one line for the operator; the backlog is
    /// not published again (it was, in full, at every timeout: 1.8× the journal in 26 s).
    @Test func aCollectorAwayGetsOneEntryProbesAtLongerAndLongerIntervals() {
        let s: Int64 = 1_000_000_000
        var policy = self.policy
        policy.ackTimeout = 10 * s
        policy.ackTimeoutMax = 50 * s
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 8)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 1, last: 4), .publish(token: 2, first: 5, last: 8)])
        #expect(sender.on(.published(token: 1, reasonCode: 0), now: 1 * s) == [.arm(.ackTimeout, deadline: 11 * s)])
        #expect(sender.on(.published(token: 2, reasonCode: 0), now: 1 * s).isEmpty)
        #expect(sender.on(.timer(.ackTimeout), now: 11 * s) == [.publish(token: 3, first: 8, last: 8), .arm(.ackTimeout, deadline: 31 * s)])
        #expect(sender.on(.published(token: 3, reasonCode: 0), now: 12 * s).isEmpty)
        let second = sender.on(.timer(.ackTimeout), now: 31 * s)
        #expect(second.first == .notice("no end-to-end ack for 31 s though the broker takes the data: is the collector running? "
                                        + "(asking with the newest entry at longer and longer intervals, up to every 50 s; the journal keeps everything)"))
        #expect(Array(second.dropFirst()) == [.publish(token: 4, first: 8, last: 8), .arm(.ackTimeout, deadline: 71 * s)])
        _ = sender.on(.published(token: 4, reasonCode: 0), now: 32 * s)
        #expect(sender.on(.timer(.ackTimeout), now: 71 * s) == [.publish(token: 5, first: 8, last: 8), .arm(.ackTimeout, deadline: 121 * s)])
        _ = sender.on(.published(token: 5, reasonCode: 0), now: 72 * s)
        #expect(sender.on(.timer(.ackTimeout), now: 121 * s) == [.publish(token: 6, first: 8, last: 8), .arm(.ackTimeout, deadline: 171 * s)])
        // The collector is back and reads its queue: everything was there.
        let back = sender.on(.collectorAck(upTo: 8), now: 130 * s)
        #expect(back == [.persistAcknowledged(8), .notice("the collector acknowledges again, after 130 s without an ack")])
        #expect(sender.on(.timer(.ackTimeout), now: 171 * s).isEmpty)
    }

    /// The probe meets a collector that lacks what went before it (a broker that dropped it, no
    /// subscriber then): the collector holds it as ahead of a gap and asks for the gap, and the
    /// rest goes again from there.
    @Test func aProbeAheadOfAGapBringsTheRestAgain() {
        var policy = self.policy
        policy.ackTimeout = 10
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 8)
        var collector = CollectorStream(committed: 0)
        _ = sender.start()
        _ = sender.on(.connected, now: 0)
        _ = sender.on(.published(token: 1, reasonCode: 0x10), now: 1)
        _ = sender.on(.published(token: 2, reasonCode: 0x10), now: 1)
        #expect(sender.undelivered == 2)
        let probe = sender.on(.timer(.ackTimeout), now: 11)
        #expect(probe == [.publish(token: 3, first: 8, last: 8), .arm(.ackTimeout, deadline: 31)])
        #expect(collector.receive(batch: 1, first: 8, last: 8, now: 12) == [.requestResend(from: 1)])
        #expect(sender.on(.resendRequest(from: 1), now: 13) == [.publish(token: 4, first: 1, last: 4), .publish(token: 5, first: 5, last: 8)])
    }

    /// The collector asks again every second while its gap lasts; on a slow link the rewound
    /// window takes longer than that to arrive, and each request sent it once more. A request for
    /// the same place waits for the PUBACK of the rewind's first batch.
    @Test func aRepeatedRequestForTheSamePlaceWaitsForTheRewindsFirstBatch() {
        var sender = senderWithTwoBatchesTaken()
        #expect(sender.on(.resendRequest(from: 5), now: 2) == [.publish(token: 4, first: 5, last: 8), .publish(token: 5, first: 9, last: 12)])
        #expect(sender.on(.resendRequest(from: 5), now: 1_002).isEmpty)
        #expect(sender.on(.resendRequest(from: 5), now: 2_002).isEmpty)
        // Another place is another gap: at once.
        #expect(sender.on(.resendRequest(from: 3), now: 2_003) == [.publish(token: 6, first: 3, last: 6), .publish(token: 7, first: 7, last: 10)])
        // The rewind's first batch reached the broker, and the collector still asks: again.
        _ = sender.on(.published(token: 6, reasonCode: 0), now: 2_004)
        #expect(sender.on(.resendRequest(from: 3), now: 3_003).first == .publish(token: 9, first: 3, last: 6))
    }

    /// A request from at or below the acknowledged cursor is the collector's own loss (a damaged
    /// tail cut, a restored backup): the entries go again, with one alarm, and the cursor stays.
    /// (The old rule, never below the cursor, left such a collector waiting at its gap for ever.)
    @Test func aResendRequestBelowTheCursorRefillsTheCollector() {
        var sender = UplinkSender(policy: policy, acknowledged: 8, journalEnd: 12)
        _ = sender.start()
        #expect(sender.on(.connected, now: 0) == [.publish(token: 1, first: 9, last: 12)])
        let refill = sender.on(.resendRequest(from: 3), now: 1)
        #expect(refill.filter { if case .alarm = $0 { return true } else { return false } }.count == 1)
        #expect(refill.contains(.alarm("the collector asks again for entries from 3, which it had acknowledged up to 8: its copy lost them; they go again from what the journal still holds")))
        #expect(refill.contains(.publish(token: 2, first: 3, last: 6)) && refill.contains(.publish(token: 3, first: 7, last: 10)))
        #expect(sender.refilling == 3 && sender.acknowledged == 8)
        // The same loss asked again while it refills: no second alarm.
        #expect(!sender.on(.resendRequest(from: 5), now: 2).contains { if case .alarm = $0 { return true } else { return false } })
        // Acks at or below the cursor move nothing; one past it ends the refill.
        _ = sender.on(.collectorAck(upTo: 6), now: 3)
        #expect(sender.acknowledged == 8 && sender.refilling == 3)
        _ = sender.on(.collectorAck(upTo: 10), now: 4)
        #expect(sender.refilling == nil && sender.acknowledged == 10)
    }
}

@Suite struct CollectorStreamTests {
    /// Batches held ahead of a gap are bounded by bytes as well as by count: 64 batches of the
    /// largest body a batch may state would have held 2.5 GiB per stream.
    @Test func heldBatchesAreBoundedByBytes() {
        var stream = CollectorStream(committed: 0, holdLimit: 64, holdByteLimit: 1_000, resendInterval: 100)
        #expect(stream.receive(batch: 1, first: 5, last: 5, bytes: 600, now: 0) == [.requestResend(from: 1)])
        #expect(stream.heldCount == 1)
        // Over the bytes: dropped (the resend from the gap brings it again), the first one kept.
        #expect(stream.receive(batch: 2, first: 6, last: 6, bytes: 600, now: 1) == [.release(batch: 2)])
        #expect(stream.receive(batch: 3, first: 7, last: 7, bytes: 400, now: 2) == [])
        #expect(stream.heldCount == 2)
        // The gap filled: both held ones commit and their bytes are free again.
        #expect(stream.receive(batch: 4, first: 1, last: 4, bytes: 10, now: 3) == [
            .commit(batch: 4, first: 1, last: 4), .release(batch: 4), .commit(batch: 1, first: 5, last: 5), .release(batch: 1),
            .acknowledge(upTo: 5)])
        // Batch 3 (400 bytes) still waits for 6: another 1,000 would be over the limit.
        #expect(stream.receive(batch: 5, first: 8, last: 8, bytes: 1_000, now: 4) == [.release(batch: 5), .requestResend(from: 6)])
        #expect(stream.heldCount == 1)
    }

    /// A gap counts as repaired only once the resent entries filled it: a collector that asked
    /// and got nothing (its disk still full) said "1 gaps repaired".
    @Test func aGapIsRepairedOnlyWhenTheResentEntriesFillIt() {
        var stream = CollectorStream(committed: 0, resendInterval: 100)
        _ = stream.receive(batch: 1, first: 1, last: 4, now: 0)
        #expect(stream.receive(batch: 2, first: 9, last: 12, now: 1) == [.requestResend(from: 5)])
        #expect(stream.gaps == 1 && stream.gapsFilled == 0)
        _ = stream.receive(batch: 3, first: 5, last: 8, now: 2)
        #expect(stream.gaps == 1 && stream.gapsFilled == 1 && stream.committed == 12)
    }

    @Test func commitsInOrderDropsDuplicatesAndRepairsGaps() {
        var stream = CollectorStream(committed: 0, resendInterval: 100)
        #expect(stream.receive(batch: 1, first: 1, last: 4, now: 0) == [
            .commit(batch: 1, first: 1, last: 4), .release(batch: 1), .acknowledge(upTo: 4)])
        #expect(stream.receive(batch: 2, first: 1, last: 4, now: 1) == [.release(batch: 2), .acknowledge(upTo: 4)])
        #expect(stream.receive(batch: 3, first: 9, last: 12, now: 2) == [.requestResend(from: 5)])
        #expect(stream.receive(batch: 4, first: 13, last: 14, now: 3) == [], "same gap: no second request within the interval")
        #expect(stream.receive(batch: 5, first: 3, last: 8, now: 4) == [
            .commit(batch: 5, first: 5, last: 8), .release(batch: 5),
            .commit(batch: 3, first: 9, last: 12), .release(batch: 3),
            .commit(batch: 4, first: 13, last: 14), .release(batch: 4),
            .acknowledge(upTo: 14)])
        #expect(stream.committed == 14)
        #expect(stream.duplicates == 6)
        // A duplicate is acknowledged up to its own last entry, which the caller compared, not up
        // to everything committed: the device would retire the batches in flight after it unseen.
        #expect(stream.receive(batch: 6, first: 3, last: 6, now: 5) == [.release(batch: 6), .acknowledge(upTo: 6)])
    }

    /// A held batch that cannot be committed after all (its codec-3 body fails to decode once its
    /// context is there): back to what the journal holds, held batches dropped, the rest asked again.
    @Test func aFailedCommitRewindsToTheJournalAndAsksAgain() {
        var stream = CollectorStream(committed: 0, resendInterval: 100)
        _ = stream.receive(batch: 1, first: 1, last: 4, now: 0)
        #expect(stream.receive(batch: 2, first: 9, last: 12, now: 1) == [.requestResend(from: 5)])
        #expect(stream.receive(batch: 3, first: 13, last: 14, now: 2) == [])
        #expect(stream.receive(batch: 4, first: 5, last: 8, now: 3) == [
            .commit(batch: 4, first: 5, last: 8), .release(batch: 4),
            .commit(batch: 2, first: 9, last: 12), .release(batch: 2),
            .commit(batch: 3, first: 13, last: 14), .release(batch: 3),
            .acknowledge(upTo: 14)])
        // The sink wrote 5…8, then batch 2 failed: nothing after 8 may count as committed.
        var rewound = CollectorStream(committed: 0, resendInterval: 100)
        _ = rewound.receive(batch: 1, first: 1, last: 4, now: 0)
        _ = rewound.receive(batch: 2, first: 9, last: 12, now: 1)
        _ = rewound.receive(batch: 3, first: 13, last: 14, now: 2)
        _ = rewound.receive(batch: 4, first: 5, last: 8, now: 3)
        #expect(rewound.commitFailed(committed: 8, now: 4) == [.requestResend(from: 9)])
        #expect(rewound.committed == 8)
        #expect(rewound.receive(batch: 5, first: 13, last: 14, now: 5) == [], "gap 9… already asked for")
        #expect(rewound.receive(batch: 6, first: 9, last: 12, now: 6) == [
            .commit(batch: 6, first: 9, last: 12), .release(batch: 6),
            .commit(batch: 5, first: 13, last: 14), .release(batch: 5),
            .acknowledge(upTo: 14)])
        // Held batches are released by a rewind.
        var holding = CollectorStream(committed: 0, resendInterval: 100)
        _ = holding.receive(batch: 1, first: 3, last: 4, now: 0)
        #expect(holding.commitFailed(committed: 0, now: 200) == [.release(batch: 1), .requestResend(from: 1)])
        #expect(holding.heldCount == 0)
    }
}

/// Sender and collector joined by a seeded faulty link: loss, duplication, reordering, outages.
@Suite struct DeliverySimulationTests {
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func chance(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1_000_000 < p }
    }

    @Test(arguments: Array(UInt64(1)...20))
    func everyEntryArrivesOnceInOrder(seed: UInt64) {
        var rng = Rng(state: seed)
        var policy = UplinkPolicy()
        policy.maxBatchEntries = 7
        policy.window = 4
        policy.linger = 5
        policy.ackTimeout = 200
        policy.backoffInitial = 20
        var sender = UplinkSender(policy: policy, acknowledged: 0, journalEnd: 0)
        var stream = CollectorStream(committed: 0, holdLimit: 3, resendInterval: 30)
        var rebuilt: [UInt64] = []
        var toCollector: [(at: Int64, first: UInt64, last: UInt64, token: Int)] = []
        var toDevice: [(at: Int64, event: UplinkSender.Event)] = []
        var timers: [(at: Int64, timer: UplinkSender.Timer)] = []
        var up = false
        var batchID = 0
        var batchRanges: [Int: ClosedRange<UInt64>] = [:]
        let total: UInt64 = 2_000
        var produced: UInt64 = 0

        func run(_ actions: [UplinkSender.Action], now: Int64) {
            for action in actions {
                switch action {
                case .connect:
                    toDevice.append((now + 3, rng.chance(0.2) ? .disconnected : .connected))
                case .publish(let token, let first, let last):
                    guard up else { continue }
                    if !rng.chance(0.1) { toCollector.append((now + Int64(rng.next() % 10), first, last, token)) }
                    if rng.chance(0.05) { toCollector.append((now + Int64(rng.next() % 40), first, last, token)) }
                    toDevice.append((now + 2, .published(token: token, reasonCode: 0)))
                case .arm(let timer, let deadline):
                    timers.removeAll { $0.timer == timer }
                    timers.append((deadline, timer))
                case .persistAcknowledged, .alarm, .notice:
                    break
                }
            }
        }

        run(sender.start(), now: 0)
        var now: Int64 = 0
        while now < 200_000 && (rebuilt.count < Int(total)) {
            now += 1
            if produced < total && now % 2 == 0 {
                produced += 1
                run(sender.on(.journalAdvanced(last: produced), now: now), now: now)
            }
            if up && rng.chance(0.002) {
                up = false
                toCollector.removeAll { _ in rng.chance(0.5) }
                run(sender.on(.disconnected, now: now, jitter: Double(rng.next() % 100) / 100), now: now)
            }
            for message in toCollector.filter({ $0.at <= now }).sorted(by: { $0.at < $1.at }) {
                batchID += 1
                batchRanges[batchID] = message.first...message.last
                for action in stream.receive(batch: batchID, first: message.first, last: message.last, now: now) {
                    switch action {
                    case .commit(let batch, let first, let last):
                        #expect(batchRanges[batch]!.contains(first) && batchRanges[batch]!.contains(last))
                        rebuilt.append(contentsOf: first...last)
                    case .acknowledge(let upTo):
                        if !rng.chance(0.1) { toDevice.append((now + 4, .collectorAck(upTo: upTo))) }
                    case .requestResend(let from):
                        toDevice.append((now + 4, .resendRequest(from: from)))
                    case .release:
                        break
                    }
                }
            }
            toCollector.removeAll { $0.at <= now }
            for message in toDevice.filter({ $0.at <= now }) {
                if case .connected = message.event { up = true }
                if case .disconnected = message.event { up = false }
                if !up, case .published = message.event { continue }
                run(sender.on(message.event, now: now), now: now)
            }
            toDevice.removeAll { $0.at <= now }
            for timer in timers.filter({ $0.at <= now }) {
                timers.removeAll { $0.timer == timer.timer }
                run(sender.on(.timer(timer.timer), now: now), now: now)
            }
        }
        #expect(rebuilt == Array(1...total), "seed \(seed): \(rebuilt.count) entries rebuilt")
        #expect(stream.committed == total)
    }
}

@Suite struct BacklogProgressTests {
    private let second: Int64 = 1_000_000_000

    @Test func aBacklogSaysItsSizeItsProgressAndWhenItIsDrained() throws {
        // 40,000 entries of 250 bytes: 10 MB behind the cursor at 100.
        var progress = try #require(BacklogProgress(acknowledged: 100, journalEnd: 40_100, bytesPerEntry: 250, now: 0))
        #expect(progress.startLine == "backlog: 40000 entries (≈ 10.0 MB), seq 101…40100, draining")
        #expect(progress.acknowledged(upTo: 4_100, now: 2 * second) == nil, "not before the interval")
        let line = progress.acknowledged(upTo: 10_100, now: 10 * second)
        #expect(line?.line == "backlog: 10000 of 40000 entries acknowledged (25 %), ≈ 0.3 MB/s, about 30 s left")
        #expect(line?.drained == false)
        #expect(progress.acknowledged(upTo: 10_100, now: 30 * second) == nil, "no ack, no line")
        let done = progress.acknowledged(upTo: 40_200, now: 40 * second)
        #expect(done?.line == "backlog: 40000 entries (≈ 10.0 MB) drained in 40.0 s (≈ 0.3 MB/s)" && done?.drained == true)
    }

    @Test func aSmallBacklogSaysNothing() {
        #expect(BacklogProgress(acknowledged: 10, journalEnd: 20, bytesPerEntry: 250, now: 0) == nil)
        #expect(BacklogProgress(acknowledged: 10, journalEnd: 10, bytesPerEntry: 250, now: 0) == nil)
    }
}
