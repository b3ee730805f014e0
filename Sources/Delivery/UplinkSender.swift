// The device side of once-and-only-once delivery, as a pure state machine: which journal range
// to publish next, what is in flight, when to retry, and when the durable cursor may advance.
// It never trims on PUBACK: only the collector's end-to-end ack moves the acknowledged cursor.

/// Tunables of the device's uplink.
public struct UplinkPolicy: Sendable, Hashable {
    /// Most entries in one batch.
    public var maxBatchEntries: Int = 512
    /// How long a partly filled batch may wait for more entries (ns). Together with the journal's
    /// fsync delay this bounds frame-to-collector latency (docs/benchmarks.md, "Uplink").
    public var linger: Int64 = 20_000_000
    /// Most batches published and not yet PUBACKed.
    public var window: Int = 20
    /// Reconnect backoff: first delay and ceiling (ns); jitter is applied by the caller's random draw.
    public var backoffInitial: Int64 = 500_000_000
    public var backoffMax: Int64 = 30_000_000_000
    /// A session that lasted this long resets the backoff when it ends (ns). One the broker accepts
    /// and then ends at once (a client id taken over, publishes refused, a proxy that accepts and
    /// drops) keeps backing off instead of reconnecting twice a second for ever.
    public var stableSession: Int64 = 10_000_000_000
    /// When sent data is not acknowledged end to end within this time, the newest entry sent goes
    /// again as a probe (ns): a collector that holds everything before it acknowledges it, one
    /// that lacks some (lost on the way) asks for them as for any gap, one that is away finds it
    /// in its queue behind the rest.
    public var ackTimeout: Int64 = 10_000_000_000
    /// While probes go unanswered (a collector away for long), the wait before the next doubles up
    /// to this (ns). A collector away for an hour costs a device ~60 one-entry probes, not the
    /// whole backlog again every `ackTimeout` (measured: 1.8× the journal in 26 s, growing with
    /// the square of the outage).
    public var ackTimeoutMax: Int64 = 60_000_000_000

    public init() {}
}

/// The device uplink's decisions. Feed it events; execute the actions it returns in order.
public struct UplinkSender: Sendable {
    public enum Event: Sendable, Equatable {
        /// The journal now holds entries up to `last`.
        case journalAdvanced(last: UInt64)
        /// The MQTT session is up (TLS + CONNACK).
        case connected
        /// The connection attempt failed or the link dropped.
        case disconnected
        /// The device itself closed the connection or attempt, to connect with other credentials:
        /// no failure, so the next attempt waits the first step of the backoff only (after a
        /// short session it waited out the failures' backoff, up to `backoffMax`).
        case closedForNewCredentials
        /// The broker acknowledged the batch published with `token` (PUBACK reason code).
        case published(token: Int, reasonCode: UInt8)
        /// The collector committed everything up to `upTo` (devices/<id>/ack).
        case collectorAck(upTo: UInt64)
        /// The collector asks for entries from `from` on (devices/<id>/cmd).
        case resendRequest(from: UInt64)
        /// A timer armed earlier fired.
        case timer(Timer)
    }

    public enum Timer: Sendable, Hashable {
        case linger, reconnect, ackTimeout
    }

    public enum Action: Sendable, Equatable {
        /// Start a non-blocking connection attempt.
        case connect
        /// Read entries `first...last` (journal or ring), publish them as one QoS 1 batch with `token`.
        case publish(token: Int, first: UInt64, last: UInt64)
        /// Persist the acknowledged cursor (the journal may now retire entries up to it).
        case persistAcknowledged(UInt64)
        /// Arm (or re-arm) a timer at `deadline` on the loop's clock.
        case arm(Timer, deadline: Int64)
        /// Something needs an operator: the broker refused data (e.g. ACL).
        case alarm(String)
        /// A line for the operator, not an alarm (the collector silent, then heard again).
        case notice(String)
    }

    private enum Link: Sendable, Equatable { case down, connecting, up }

    public let policy: UplinkPolicy
    /// Everything up to here is committed by the collector (persisted by the caller).
    public private(set) var acknowledged: UInt64
    /// Last entry in the journal.
    public private(set) var journalEnd: UInt64
    /// The journal's end when the collector acknowledged beyond it (nil: it never did). Its copy
    /// then holds entries this journal lost (a damaged tail cut at the start, storage that lost
    /// what it had synced), and this journal's entries after that end, numbered again, are not
    /// the ones it holds: acks beyond it are not taken until the collector asks for entries at or
    /// below it (its copy set aside and rebuilt from this journal). Kept across restarts by the
    /// caller.
    public private(set) var divergedAfter: UInt64?
    /// First entry not yet published on this connection.
    public private(set) var nextToSend: UInt64
    private var link: Link = .down
    private var inFlight: [(token: Int, first: UInt64, last: UInt64)] = []
    private var nextToken = 1
    private var attempts = 0
    /// When the current session was accepted (nil while the link is down).
    private var connectedAt: Int64?
    private var lingerArmed = false
    /// The last batch published was full: a backlog is draining, so its tail goes at once
    /// instead of lingering for entries that are not coming faster than the backlog went.
    private var catchingUp = false
    private var ackTimerArmed = false
    /// The last rewind for a resend request: where to, and the token of its first batch.
    private var rewind: (from: UInt64, token: Int)?
    /// Ack timeouts in a row without the cursor moving; sets the wait before the next probe.
    private var silentTimeouts = 0
    /// When the cursor last moved, or the link first came up (for the operator's lines).
    private var lastProgress: Int64?
    /// Batches PUBACKed with 0x10 (no subscriber: the broker dropped them).
    public private(set) var undelivered = 0
    /// Batches the broker refused (PUBACK ≥ 0x80). Each reason code raises one alarm in a run: a
    /// refusal (an ACL, a size limit) meets every batch, twenty a second, and (mosquitto ends the
    /// session after an ACL refusal) every reconnect.
    public private(set) var refused = 0
    private var refusedCodes: Set<UInt8> = []
    /// The last PUBACK said no subscriber (0x10): no collector session at the broker.
    private var noSubscriber = false
    /// Where the collector asked again for acknowledged entries it lost, until its acks pass the
    /// cursor again (one alarm for each such refill).
    public private(set) var refilling: UInt64?
    /// Every entry up to here is acknowledged end to end, or the broker took it (PUBACK 0: queued
    /// for the collector's durable session) on some connection of this run. A reconnect sends
    /// from after it: what the broker already holds is not sent into its queue again, which with
    /// the collector away cost the whole backlog at every reconnect. What the broker then loses
    /// anyway (a full queue dropped silently, a snapshot lost with a crash) the collector finds
    /// as a gap behind later entries or the probe, and asks for (`resendRequest`).
    public private(set) var queuedThrough: UInt64
    /// Ranges the broker took beyond `queuedThrough`, not yet joined to it (PUBACKs of a window).
    private var queuedAhead: [ClosedRange<UInt64>] = []
    /// Ranges the broker took beyond a hole (merged; one per hole).
    public var rangesTakenAhead: Int { queuedAhead.count }

    /// `acknowledged` is the persisted cursor; `journalEnd` the journal's last entry at start;
    /// `queuedThrough` what the broker took for the collector before a restart, as the last run
    /// noted it (a note too high costs a gap the collector asks for; too low, a resend).
    /// `divergedAfter`: as the run before left it (the uplink's note beside the journal).
    public init(policy: UplinkPolicy = UplinkPolicy(), acknowledged: UInt64, journalEnd: UInt64, queuedThrough: UInt64 = 0,
                divergedAfter: UInt64? = nil) {
        self.policy = policy
        self.divergedAfter = divergedAfter
        self.acknowledged = acknowledged
        self.journalEnd = max(journalEnd, acknowledged)
        nextToSend = acknowledged + 1
        self.queuedThrough = max(acknowledged, min(queuedThrough, self.journalEnd))
    }

    /// Batches published and not yet PUBACKed.
    public var inFlightCount: Int { inFlight.count }
    /// Whether the batch published with `token` is still one the sender waits for (a rewind or a
    /// reconnect gives up the batches in flight).
    public func isInFlight(token: Int) -> Bool { inFlight.contains { $0.token == token } }
    public var isConnected: Bool { link == .up }

    /// The first actions at start: connect.
    public mutating func start() -> [Action] {
        link = .connecting
        return [.connect]
    }

    /// `jitter` in [0, 1) comes from the caller's random source (the machine has none of its own).
    public mutating func on(_ event: Event, now: Int64, jitter: Double = 0.5) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .journalAdvanced(let last):
            journalEnd = max(journalEnd, last)
            fill(now: now, into: &actions, lingerExpired: false)

        case .connected:
            link = .up
            connectedAt = now
            // Whatever was in flight on the old connection is unknown: send again from the first
            // entry the broker did not take.
            inFlight.removeAll()
            if lastProgress == nil { lastProgress = now }
            nextToSend = queuedThrough + 1
            fill(now: now, into: &actions, lingerExpired: false)
            if queuedThrough > acknowledged && !ackTimerArmed {
                // The broker holds the rest for the collector: if no ack comes, the probe asks.
                ackTimerArmed = true
                actions.append(.arm(.ackTimeout, deadline: now + policy.ackTimeout))
            }

        case .disconnected, .closedForNewCredentials:
            link = .down
            if event == .closedForNewCredentials { attempts = 0 }
            if let since = connectedAt, now - since >= policy.stableSession { attempts = 0 }
            connectedAt = nil
            inFlight.removeAll()
            nextToSend = acknowledged + 1
            lingerArmed = false
            attempts += 1
            let exponent = Double(min(attempts - 1, 16))
            let base = min(Double(policy.backoffInitial) * pow2(exponent), Double(policy.backoffMax))
            // Full jitter in [base/2, base): spreads a fleet's reconnects after a broker restart.
            let delay = Int64(base / 2 + base / 2 * min(max(jitter, 0), 0.999_999))
            actions.append(.arm(.reconnect, deadline: now + delay))

        case .published(let token, let reasonCode):
            guard let index = inFlight.firstIndex(where: { $0.token == token }) else { break }
            let batch = inFlight.remove(at: index)
            if reasonCode == 0 { brokerTook(batch.first...batch.last) }
            if reasonCode < 0x80 { noSubscriber = reasonCode == 0x10 }
            if reasonCode == 0x10 {
                // Accepted and dropped: no subscriber. The collector will ask again or the ack
                // timeout resends; nothing is trimmed.
                undelivered += 1
            } else if reasonCode >= 0x80 {
                refused += 1
                if refusedCodes.insert(reasonCode).inserted {
                    actions.append(.alarm("the broker refuses this device's data: \(MQTTReasonCode.describe(Int(reasonCode))) "
                                          + "(first for entries \(batch.first)…\(batch.last); every refused batch is counted in the summary)"))
                }
            }
            if !ackTimerArmed && acknowledged < journalEnd {
                ackTimerArmed = true
                actions.append(.arm(.ackTimeout, deadline: now + policy.ackTimeout))
            }
            fill(now: now, into: &actions, lingerExpired: false)

        case .collectorAck(let upTo):
            // Beyond what this journal holds (or held when that was first seen): the collector's
            // entries there are others than this journal's. Taken up to the journal's end, the
            // cursor covered new entries the collector refuses as differing from its own, and
            // retention could delete them. Nothing moves; the journal keeps everything.
            if upTo > (divergedAfter ?? journalEnd) {
                if divergedAfter == nil {
                    divergedAfter = journalEnd
                    actions.append(.alarm("the collector acknowledges up to \(upTo), beyond this journal's end \(journalEnd): its copy holds "
                                          + "entries this journal no longer has (a damaged tail cut at the start, storage that lost what it "
                                          + "had synced?), and the entries numbered after \(journalEnd) here are not those; acknowledgements "
                                          + "beyond \(journalEnd) are not taken (also after a restart) until the collector asks for entries at or below "
                                          + "\(journalEnd), its copy rebuilt from this journal; the journal keeps everything (docs/uplink.md)"))
                }
                break
            }
            guard upTo > acknowledged else { break }
            refilling = nil
            acknowledged = min(upTo, journalEnd)
            actions.append(.persistAcknowledged(acknowledged))
            queuedThrough = max(queuedThrough, acknowledged)
            joinQueuedAhead()
            if silentTimeouts >= 2 {
                actions.append(.notice("the collector acknowledges again, after \(Self.seconds(now - (lastProgress ?? now))) s without an ack"))
            }
            silentTimeouts = 0
            lastProgress = now
            if nextToSend <= acknowledged { nextToSend = acknowledged + 1 }
            inFlight.removeAll { $0.last <= acknowledged }
            if acknowledged < journalEnd {
                ackTimerArmed = true
                actions.append(.arm(.ackTimeout, deadline: now + policy.ackTimeout))
            } else {
                ackTimerArmed = false
            }
            fill(now: now, into: &actions, lingerExpired: false)

        case .resendRequest(let from):
            // The collector asks from just after what it holds. Acks and requests leave it in
            // that order, so one from at or below the acknowledged cursor means its copy lost
            // entries it had acknowledged (a damaged tail cut at its restart, a restored backup,
            // an emptied output directory): they go again from what the journal still holds,
            // instead of leaving the collector waiting at a gap for ever. The cursor stays.
            let start = max(from, 1)
            // At or below where the two diverged: the collector's copy was set aside and is
            // rebuilt from this journal (its copy in conflict asks for nothing below its mark).
            if let diverged = divergedAfter, start <= diverged {
                divergedAfter = nil
                actions.append(.notice("the collector asks for entries from \(start), at or below where its copy and this journal "
                                       + "diverged (\(diverged)): its copy is rebuilt from this journal, and its acks are taken again"))
            }
            // The collector asks again every second while its gap lasts. A rewind to the same place
            // whose first batch is still on its way would send the window once more for each
            // request (six times over a 1 Mbit/s link): it waits for that batch's PUBACK.
            if let last = rewind, last.from == start, inFlight.contains(where: { $0.token == last.token }) { break }
            // What the collector lacks is not held by the broker, whatever it PUBACKed.
            queuedThrough = min(queuedThrough, start - 1)
            queuedAhead.removeAll()
            if start <= acknowledged && refilling == nil {
                refilling = start
                actions.append(.alarm("the collector asks again for entries from \(start), which it had acknowledged up to "
                    + "\(acknowledged): its copy lost them; they go again from what the journal still holds"))
            }
            if start < nextToSend {
                nextToSend = start
                inFlight.removeAll()
            }
            let before = actions.count
            fill(now: now, into: &actions, lingerExpired: true)
            rewind = actions[before...].lazy.compactMap { action -> (UInt64, Int)? in
                if case .publish(let token, let first, _) = action, first == start { return (start, token) } else { return nil }
            }.first

        case .timer(.linger):
            lingerArmed = false
            fill(now: now, into: &actions, lingerExpired: true)

        case .timer(.reconnect):
            if link == .down {
                link = .connecting
                actions.append(.connect)
            }

        case .timer(.ackTimeout):
            ackTimerArmed = false
            if link == .up && acknowledged < journalEnd && nextToSend > acknowledged + 1 {
                // Sent, but not committed end to end. Either the collector is away (the broker
                // queues for it) or what it lacks was lost on the way (a broker that dropped it, no
                // subscriber then). The newest entry sent asks which: behind a gap, the collector
                // asks for the gap. The backlog is not sent again into a queue that holds it.
                silentTimeouts += 1
                if silentTimeouts == 2 {
                    actions.append(.notice("no end-to-end ack for \(Self.seconds(now - (lastProgress ?? now))) s "
                        + (noSubscriber ? "and the broker has no subscriber for the data (it drops it): is the collector's session gone? "
                                        : "though the broker takes the data: is the collector running? ")
                        + "(asking with the newest entry at longer and longer intervals, up to every "
                        + "\(Self.seconds(policy.ackTimeoutMax)) s; the journal keeps everything)"))
                }
                let token = nextToken
                nextToken += 1
                inFlight.append((token, nextToSend - 1, nextToSend - 1))
                actions.append(.publish(token: token, first: nextToSend - 1, last: nextToSend - 1))
            }
            if acknowledged < journalEnd {
                ackTimerArmed = true
                let wait = min(policy.ackTimeout << Int64(min(silentTimeouts, 16)), max(policy.ackTimeoutMax, policy.ackTimeout))
                actions.append(.arm(.ackTimeout, deadline: now + wait))
            }
        }
        return actions
    }

    /// The broker took `entries` (or the collector acknowledged them): joins them to
    /// `queuedThrough` when they continue it.
    private mutating func brokerTook(_ entries: ClosedRange<UInt64>) {
        if entries.upperBound > queuedThrough { insertQueuedAhead(entries) }
        joinQueuedAhead()
    }

    /// Adds `entries` to the ranges taken ahead, merged with those it touches or overlaps: kept
    /// as they came, behind a hole that stays (a batch the broker refused, the collector away),
    /// the list grew by one range a PUBACK, sorted again at each.
    private mutating func insertQueuedAhead(_ entries: ClosedRange<UInt64>) {
        var merged = entries
        queuedAhead.removeAll { range in
            guard range.lowerBound <= merged.upperBound + 1, merged.lowerBound <= range.upperBound + 1 else { return false }
            merged = min(range.lowerBound, merged.lowerBound)...max(range.upperBound, merged.upperBound)
            return true
        }
        let index = queuedAhead.firstIndex { $0.lowerBound > merged.lowerBound } ?? queuedAhead.count
        queuedAhead.insert(merged, at: index)
    }

    /// Joins the ranges taken ahead that now continue `queuedThrough`.
    private mutating func joinQueuedAhead() {
        while let next = queuedAhead.first, next.lowerBound <= queuedThrough + 1 {
            queuedThrough = max(queuedThrough, next.upperBound)
            queuedAhead.removeFirst()
        }
    }

    /// Publishes full batches while the window allows; a partial batch waits for the linger timer,
    /// unless it is the tail of a backlog (the batch before it was full).
    private mutating func fill(now: Int64, into actions: inout [Action], lingerExpired: Bool) {
        guard link == .up else { return }
        var lingerDone = lingerExpired
        while inFlight.count < policy.window && nextToSend <= journalEnd {
            let available = journalEnd - nextToSend + 1
            let count = min(available, UInt64(policy.maxBatchEntries))
            if count < UInt64(policy.maxBatchEntries) && !lingerDone && !catchingUp {
                if !lingerArmed {
                    lingerArmed = true
                    actions.append(.arm(.linger, deadline: now + policy.linger))
                }
                return
            }
            let token = nextToken
            nextToken += 1
            let last = nextToSend + count - 1
            catchingUp = count == UInt64(policy.maxBatchEntries)
            inFlight.append((token, nextToSend, last))
            actions.append(.publish(token: token, first: nextToSend, last: last))
            nextToSend = last + 1
            lingerDone = lingerExpired
        }
    }
}

extension UplinkSender {
    /// Whole seconds of a span in ns, for the operator's lines.
    static func seconds(_ nanoseconds: Int64) -> Int64 { (nanoseconds + 500_000_000) / 1_000_000_000 }
}

private func pow2(_ exponent: Double) -> Double {
    var value = 1.0
    var remaining = Int(exponent)
    while remaining > 0 { value *= 2; remaining -= 1 }
    return value
}
