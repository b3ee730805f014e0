// The backlog coding decision from measured link and encoder figures (pure).
import Testing
@testable import Delivery

@Suite struct CompressionGovernorTests {
    /// raw, fast (150 MB/s of input, 0.31×), strong (12 MB/s, 0.295×): the reference workload's figures.
    func governor() -> CompressionGovernor {
        CompressionGovernor(codings: [
            .init(name: "raw", secondsPerRawByte: 0, ratio: 1),
            .init(name: "fast", secondsPerRawByte: 1 / 150e6, ratio: 0.31),
            .init(name: "strong", secondsPerRawByte: 1 / 12e6, ratio: 0.295),
        ], initial: 1)
    }

    @Test func startsCompressingUntilTheLinkIsMeasured() {
        var g = governor()
        #expect(g.choice == 1)
        g.encoded(coding: 1, rawBytes: 137_000, wireBytes: 42_000, nanoseconds: 900_000)
        #expect(g.choice == 1)
        #expect(g.linkBytesPerSecond == nil)
    }

    @Test func aCellularLinkGetsTheStrongestCoding() {
        var g = governor()
        // 2 MB/s while the device waited 90 % of the period: the link sets the pace.
        g.linkPeriod(wireBytes: 200_000, nanoseconds: 100_000_000, saturatedNanoseconds: 90_000_000, busyNanoseconds: 0, publishedWireBytes: 200_000)
        #expect(g.linkBytesPerSecond == 2e6)
        #expect(g.choice == 2)
        // Both compressors drain at link speed; the smaller wire wins. Raw would take 3× as long.
        #expect(CompressionGovernor.drainTime(g.codings[2], link: 2e6) < CompressionGovernor.drainTime(g.codings[0], link: 2e6) / 3)
    }

    @Test func aDeviceBoundPeriodTriesRawAndAFastLinkKeepsIt() {
        var g = governor()
        // Compressing, the device hardly waited: 45 MB/s of wire went out as fast as it was made.
        g.linkPeriod(wireBytes: 1_125_000, nanoseconds: 25_000_000, saturatedNanoseconds: 100_000, busyNanoseconds: 25_000_000, publishedWireBytes: 1_125_000)
        #expect(g.choice == 0)
        // Raw, the broker sets the pace at 600 MB/s: raw drains 4× faster than the fast compressor.
        g.linkPeriod(wireBytes: 15_000_000, nanoseconds: 25_000_000, saturatedNanoseconds: 15_000_000, busyNanoseconds: 0, publishedWireBytes: 15_000_000)
        #expect(g.choice == 0)
    }

    @Test func rawOverALinkThatTurnsOutSlowGoesBackToCompressing() {
        var g = governor()
        g.linkPeriod(wireBytes: 1_125_000, nanoseconds: 25_000_000, saturatedNanoseconds: 0, busyNanoseconds: 25_000_000, publishedWireBytes: 1_125_000)
        #expect(g.choice == 0)
        // The raw probe waits on a 20 MB/s link (a LAN through a slow router): repeated periods
        // pull the average down until compressing is faster.
        for _ in 0..<20 { g.linkPeriod(wireBytes: 500_000, nanoseconds: 25_000_000, saturatedNanoseconds: 20_000_000, busyNanoseconds: 0, publishedWireBytes: 500_000) }
        #expect(g.choice != 0)
    }

    @Test func measuredEncoderCostsMoveTheDecision() {
        var g = governor()
        g.linkPeriod(wireBytes: 2_500_000, nanoseconds: 25_000_000, saturatedNanoseconds: 20_000_000, busyNanoseconds: 0, publishedWireBytes: 2_500_000)  // 100 MB/s
        #expect(g.choice == 1)  // fast: 6.7 ns/B beats raw's 10 ns/B
        // This device's compressor turns out 3× slower than the prior: raw is now faster.
        for _ in 0..<10 { g.encoded(coding: 1, rawBytes: 137_000, wireBytes: 42_000, nanoseconds: 2_700_000) }
        #expect(g.choice == 0)
    }

    @Test func aNewConnectionForgetsTheLink() {
        var g = governor()
        g.linkPeriod(wireBytes: 1_125_000, nanoseconds: 25_000_000, saturatedNanoseconds: 0, busyNanoseconds: 25_000_000, publishedWireBytes: 1_125_000)
        #expect(g.choice == 0)
        g.linkChanged(initial: 1)
        #expect(g.choice == 1)
        #expect(g.linkBytesPerSecond == nil)
    }
}

@Suite struct CompressionGovernorProbeTests {
    @Test func aMeasurementReplacesAProbesAssumption() {
        var g = CompressionGovernorTests().governor()
        // The device set the pace at first (start-up): the link is assumed fast, raw is tried.
        g.linkPeriod(wireBytes: 1_125_000, nanoseconds: 25_000_000, saturatedNanoseconds: 0, busyNanoseconds: 25_000_000, publishedWireBytes: 1_125_000)
        #expect(g.choice == 0)
        // The first period paced by the link measures 2 MB/s: taken as it is, not averaged with the guess.
        g.linkPeriod(wireBytes: 20_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0, publishedWireBytes: 20_000)
        #expect(g.linkBytesPerSecond == 2e6)
        #expect(g.choice == 2)
    }

    @Test func aTailWithNothingLeftToSendSaysNothingAboutTheLink() {
        var g = CompressionGovernorTests().governor()
        g.linkPeriod(wireBytes: 20_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0, publishedWireBytes: 20_000)
        #expect(g.choice == 2)
        // Neither waiting nor busy: the backlog ran out. The slow link stays measured.
        g.linkPeriod(wireBytes: 3_500, nanoseconds: 10_000_000, saturatedNanoseconds: 0, busyNanoseconds: 1_000_000, publishedWireBytes: 3_500)
        #expect(g.linkBytesPerSecond == 2e6)
        #expect(g.choice == 2)
    }
}

@Suite struct CompressionGovernorForgettingTests {
    @Test func aCodingOnceMeasuredSlowIsTriedAgainLater() {
        var g = CompressionGovernorTests().governor()
        g.linkPeriod(wireBytes: 20_000, nanoseconds: 10_000_000, saturatedNanoseconds: 10_000_000, busyNanoseconds: 0, publishedWireBytes: 20_000)
        #expect(g.choice == 2)  // 2 MB/s: strong
        // A busy moment: strong coding measured 20× slower than its prior; fast takes over.
        for _ in 0..<5 { g.encoded(coding: 2, rawBytes: 137_000, wireBytes: 37_000, nanoseconds: 230_000_000) }
        #expect(g.choice == 1)
        // The link stays at 2 MB/s; strong's stale figure drifts back and it is chosen again.
        var periods = 0
        while g.choice != 2 && periods < 200 {
            g.linkPeriod(wireBytes: 20_000, nanoseconds: 10_000_000, saturatedNanoseconds: 10_000_000, busyNanoseconds: 0, publishedWireBytes: 20_000)
            periods += 1
        }
        #expect(g.choice == 2)
        #expect(periods > 5)
    }

    @Test func fillingTheWindowOverASlowLinkIsNotMistakenForAFastOne() {
        var g = CompressionGovernorTests().governor()
        // Just connected: busy coding the first parts, 40 KB published, 2 KB acknowledged so far.
        g.linkPeriod(wireBytes: 2_000, nanoseconds: 10_000_000, saturatedNanoseconds: 0, busyNanoseconds: 9_500_000,
                     publishedWireBytes: 40_000)
        #expect(g.linkBytesPerSecond == nil)
        #expect(g.choice == 1)
    }

    @Test func aShapersBurstBehindASlowDeviceIsNotAFastLink() {
        var g = CompressionGovernorTests().governor()
        // A debug build on a starved CPU codes 16-entry parts at ~0.55 MB/s.
        for _ in 0..<5 { g.encoded(coding: 1, rawBytes: 4_400, wireBytes: 1_700, nanoseconds: 8_000_000) }
        // Over a 100 KB/s link with a 16 KB burst (measured in a failing run): busy 23.5 of 23.8 ms,
        // 8,872 B published and 5,220 B acknowledged. The link did not keep up: nothing is assumed.
        // (Assumed 2× the input, 1.2 MB/s, the link looked fast enough to switch codings; in that
        // run, with the coders' figures of the moment, raw looked fastest and 13 raw parts followed.)
        g.linkPeriod(wireBytes: 5_220, nanoseconds: 23_785_605, saturatedNanoseconds: 0, busyNanoseconds: 23_480_762,
                     publishedWireBytes: 8_872)
        #expect(g.linkBytesPerSecond == nil)
        #expect(g.choice == 1)
        // After a slow spell refilled the burst, the link caught up on earlier parts: 6,230 B
        // acknowledged in 10.3 ms, 3,433 B published. Not device-bound either (it was assumed
        // 2.9 MB/s in another failing run).
        g.linkPeriod(wireBytes: 6_230, nanoseconds: 10_307_221, saturatedNanoseconds: 3_055_448, busyNanoseconds: 6_733_341,
                     publishedWireBytes: 3_433)
        #expect(g.linkBytesPerSecond == nil)
        #expect(g.choice == 1)
    }

    @Test func beforeAWindowIsAcknowledgedBuffersCanFakeAFastLink() {
        var g = CompressionGovernorTests().governor()
        // The first 13 KB vanished into the link's buffers at once: looks device-bound, but cold.
        g.linkPeriod(wireBytes: 12_800, nanoseconds: 11_000_000, saturatedNanoseconds: 0, busyNanoseconds: 10_900_000,
                     publishedWireBytes: 14_700, warm: false)
        #expect(g.linkBytesPerSecond == nil)
        #expect(g.choice == 1)
    }
}

/// The link sounding: a new connection's first backlog parts, PUBACKed alone, bound the link's rate from below.
@Suite struct CompressionGovernorSoundingTests {
    @Test func aSoundingOfALocalBrokerGoesRawAtOnce() {
        var g = CompressionGovernorTests().governor()
        // 51.7 KB PUBACKed 0.2 ms after the publish began: at least 259 MB/s, faster than the fast
        // coding eats (and a fast bound stands in as twice itself).
        g.sounded(wireBytes: 51_711, nanoseconds: 200_000)
        #expect(g.linkBytesPerSecond == 2 * 51_711 / 200e-6)
        #expect(g.choice == 0)
    }

    @Test func aFastBoundStandsInAsTwiceItself() {
        var g = CompressionGovernorTests().governor()
        // 51.7 KB in 0.52 ms: at least 100 MB/s, no cellular link. Taken as it is, the fast coding
        // (150 MB/s) would look faster than the link; a local broker's first message here is slow
        // like this while its drain then carries 300–700 MB/s.
        g.sounded(wireBytes: 51_711, nanoseconds: 517_110)
        #expect(abs(g.linkBytesPerSecond! - 200e6) < 1)
        #expect(g.choice == 0)
    }

    @Test func aBoundBelowTheFastOneIsTakenAsItIs() {
        var g = CompressionGovernorTests().governor()
        // 40 MB/s could be a fast LAN behind a router: the fast coding, as before.
        g.sounded(wireBytes: 51_711, nanoseconds: 1_292_775)
        #expect(abs(g.linkBytesPerSecond! - 40e6) < 1)
        #expect(g.choice == 1)
    }

    @Test func aFastBoundThatWasWrongYieldsToTheFirstPeriodPacedByTheLink() {
        var g = CompressionGovernorTests().governor()
        g.sounded(wireBytes: 51_711, nanoseconds: 517_110)
        #expect(g.choice == 0)
        // Raw parts queue up on a 100 MB/s link: the period it paces measures it, and the fast
        // coding (which outruns it) returns.
        g.linkPeriod(wireBytes: 1_000_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 2_000_000,
                     publishedWireBytes: 2_700_000)
        #expect(abs(g.linkBytesPerSecond! - 100e6) < 1)
        #expect(g.choice == 1)
    }

    @Test func aSoundingOfACellularLinkTakesTheStrongestCodingAtOnce() {
        var g = CompressionGovernorTests().governor()
        #expect(g.choice == 1)
        // 51.7 KB in 18 ms (a 2 MB/s uplink after a 16 KB burst): the strongest coding from the next part on.
        g.sounded(wireBytes: 51_711, nanoseconds: 18_000_000)
        #expect(g.choice == 2)
    }

    @Test func aSoundingIsABoundTheFirstMeasurementReplaces() {
        var g = CompressionGovernorTests().governor()
        g.sounded(wireBytes: 51_711, nanoseconds: 200_000)
        #expect(g.choice == 0)
        // The link sets the pace at 20 MB/s (a LAN behind a slow router): taken as it is, not averaged.
        g.linkPeriod(wireBytes: 200_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0,
                     publishedWireBytes: 200_000)
        #expect(g.linkBytesPerSecond == 20e6)
        #expect(g.choice != 0)
    }

    @Test func aSoundingNeverOverridesAMeasurement() {
        var g = CompressionGovernorTests().governor()
        g.linkPeriod(wireBytes: 20_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0,
                     publishedWireBytes: 20_000)
        #expect(g.linkBytesPerSecond == 2e6)
        g.sounded(wireBytes: 51_711, nanoseconds: 200_000)
        #expect(g.linkBytesPerSecond == 2e6)
        #expect(g.choice == 2)
        // A new connection starts over, and may sound again.
        g.linkChanged(initial: 1)
        g.sounded(wireBytes: 51_711, nanoseconds: 200_000)
        #expect(g.choice == 0)
    }
}

/// A sounding slowed by preemption is taken again: the best of a few stands.
@Suite struct CompressionGovernorResoundingTests {
    @Test func aPreemptedSoundingIsTakenAgainAndTheFastestBoundStands() {
        var g = CompressionGovernorTests().governor()
        // 51.7 KB PUBACKed after 1.72 ms (the device preempted meanwhile): 30 MB/s, no cellular link,
        // yet the coding stays compressed. Sound again.
        g.sounded(wireBytes: 51_711, nanoseconds: 1_722_109)
        #expect(g.choice == 1)
        #expect(g.wantsSounding)
        // The next one comes back in 0.42 ms: 124 MB/s, taken as twice itself; raw, and no more soundings.
        g.sounded(wireBytes: 51_711, nanoseconds: 416_824)
        #expect(abs(g.linkBytesPerSecond! - 2 * 51_711 / 416_824e-9) < 1)
        #expect(g.choice == 0)
        #expect(!g.wantsSounding)
        // A slower one after it (were it made) lowers nothing.
        g.sounded(wireBytes: 51_711, nanoseconds: 1_722_109)
        #expect(g.choice == 0)
    }

    @Test func aCellularSoundingIsFinal() {
        var g = CompressionGovernorTests().governor()
        // 51.7 KB in 18 ms: a round trip over 4G is in it. Another would hold the uplink for one more.
        g.sounded(wireBytes: 51_711, nanoseconds: 18_000_000)
        #expect(g.choice == 2)
        #expect(!g.wantsSounding)
    }

    @Test func aLinkThatStaysSlowIsSoundedThreeTimesAtMost() {
        var g = CompressionGovernorTests().governor()
        #expect(!g.wantsSounding)
        // A 40 MB/s LAN: each sounding says so, and the third is the last.
        for sounding in 1...CompressionGovernor.maxSoundings {
            g.sounded(wireBytes: 51_711, nanoseconds: 1_292_775)
            #expect(g.choice == 1)
            #expect(g.wantsSounding == (sounding < CompressionGovernor.maxSoundings))
        }
        // A new connection may run over another link: it sounds afresh.
        g.linkChanged(initial: 1)
        g.sounded(wireBytes: 51_711, nanoseconds: 1_292_775)
        #expect(g.wantsSounding)
    }

    @Test func aPeriodWhileThePathFillsLowersNoBound() {
        var g = CompressionGovernorTests().governor()
        g.sounded(wireBytes: 51_711, nanoseconds: 522_557)
        #expect(g.choice == 0)
        let bound = g.linkBytesPerSecond!
        // The first 10 ms: 3.77 MB sent, 1.15 MB acknowledged (the rest on its way), 111 MB/s.
        g.linkPeriod(wireBytes: 1_146_492, nanoseconds: 10_330_900, saturatedNanoseconds: 6_219_350, busyNanoseconds: 9_095_853,
                     publishedWireBytes: 3_772_003, warm: false)
        #expect(g.linkBytesPerSecond == bound)
        #expect(g.choice == 0)
        // Once a window is acknowledged, the same rate is a measurement: zstd-1 outruns it.
        g.linkPeriod(wireBytes: 1_146_492, nanoseconds: 10_330_900, saturatedNanoseconds: 6_219_350, busyNanoseconds: 9_095_853,
                     publishedWireBytes: 1_146_492)
        #expect(abs(g.linkBytesPerSecond! - 1_146_492 / 10_330_900e-9) < 1)
        #expect(g.choice == 1)
    }

    @Test func aFasterPeriodWhileThePathFillsRaisesTheBound() {
        var g = CompressionGovernorTests().governor()
        g.sounded(wireBytes: 51_711, nanoseconds: 18_000_000)
        #expect(g.choice == 2)
        g.linkPeriod(wireBytes: 4_000_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0,
                     publishedWireBytes: 4_000_000, warm: false)
        #expect(g.linkBytesPerSecond == 400e6)
        #expect(g.choice == 0)
    }

    @Test func aMeasuredLinkIsNotSounded() {
        var g = CompressionGovernorTests().governor()
        g.sounded(wireBytes: 51_711, nanoseconds: 1_292_775)
        #expect(g.wantsSounding)
        // A period paced by the link measured it: no bound says more than that.
        g.linkPeriod(wireBytes: 400_000, nanoseconds: 10_000_000, saturatedNanoseconds: 9_000_000, busyNanoseconds: 0,
                     publishedWireBytes: 400_000)
        #expect(!g.wantsSounding)
    }
}
