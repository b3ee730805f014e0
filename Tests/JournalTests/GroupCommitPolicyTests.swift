// Group commit: event → action sequences under a virtual clock.
import Testing
import TestSupport
import Journal

@Suite struct GroupCommitPolicyTests {
    private let config = GroupCommitPolicy.Configuration(maxPendingBytes: 1_000, maxDelayNanoseconds: 50)

    private func run(_ events: [GroupCommitPolicy.Event]) -> [GroupCommitPolicy.Action] {
        var policy = GroupCommitPolicy(config)
        return events.map { policy.on($0) }
    }

    @Test func firstAppendArmsTheTimerAndItsFiringSyncs() {
        #expect(run([.appended(bytes: 100, now: 10), .appended(bytes: 100, now: 20), .timerFired(now: 60), .synced])
                == [.armTimer(deadline: 60), .none, .syncNow, .none])
    }

    @Test func byteThresholdSyncsBeforeTheDeadline() {
        #expect(run([.appended(bytes: 600, now: 0), .appended(bytes: 400, now: 5), .synced, .timerFired(now: 50)])
                == [.armTimer(deadline: 50), .syncNow, .none, .none])
    }

    @Test func oneLargeAppendSyncsAtOnce() {
        #expect(run([.appended(bytes: 5_000, now: 0), .synced]) == [.syncNow, .none])
    }

    @Test func earlyTimerIsRearmedAndLateLoopSyncsOnAppend() {
        #expect(run([.appended(bytes: 1, now: 0), .timerFired(now: 30), .appended(bytes: 1, now: 70)])
                == [.armTimer(deadline: 50), .armTimer(deadline: 50), .syncNow])
    }

    @Test func afterSyncTheNextAppendStartsANewWindow() {
        #expect(run([.appended(bytes: 10, now: 0), .timerFired(now: 50), .synced,
                     .appended(bytes: 10, now: 200), .timerFired(now: 249), .timerFired(now: 250)])
                == [.armTimer(deadline: 50), .syncNow, .none, .armTimer(deadline: 250), .armTimer(deadline: 250), .syncNow])
    }

    @Test func pendingBytesCountsUntilSynced() {
        var policy = GroupCommitPolicy(config)
        _ = policy.on(.appended(bytes: 30, now: 0))
        _ = policy.on(.appended(bytes: 12, now: 1))
        #expect(policy.pendingBytes == 42)
        _ = policy.on(.synced)
        #expect(policy.pendingBytes == 0)
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func neverLeavesBytesUnsyncedPastTheDeadline(seed: UInt64) {
        // Random appends and timer firings: whenever the caller obeys the actions, no append waits
        // longer than the delay after the deadline-driving timer fires, and no batch exceeds the limit
        // by more than one append.
        var random = SeededGenerator(seed: seed)
        var policy = GroupCommitPolicy(config)
        var now: Int64 = 0
        var armed: Int64?
        var pending = 0
        var oldest: Int64?
        for _ in 0..<5_000 {
            now += Int64.random(in: 0...20, using: &random)
            var action: GroupCommitPolicy.Action
            if let deadline = armed, now >= deadline {
                armed = nil
                action = policy.on(.timerFired(now: now))
            } else {
                let bytes = Int.random(in: 1...300, using: &random)
                pending += bytes
                oldest = oldest ?? now
                action = policy.on(.appended(bytes: bytes, now: now))
                #expect(pending - bytes < config.maxPendingBytes)
            }
            switch action {
            case .syncNow:
                #expect(policy.on(.synced) == .none)
                pending = 0
                oldest = nil
                armed = nil
            case .armTimer(let deadline):
                #expect(deadline == oldest! + config.maxDelayNanoseconds)
                armed = deadline
            case .none: break
            }
            if let oldest { #expect(now - oldest < config.maxDelayNanoseconds + 20) }
        }
    }
}
