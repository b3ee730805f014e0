// The script the guest runs (generated into the rig's temp dir): every bus scenario in one boot,
// each writing its outputs under OUT/<scenario>/ on the host filesystem for the tests to read.
// Usage inside the guest: bash scenarios.sh OUT DAQCTL (vcan0 and vcan1 up).
import Foundation

enum ScenarioScript {
    /// An error frame (controller problem class, rx overflow detail) and a data frame, for the
    /// error-mask scenario.
    static let errorLog = """
        (1700000000.000000) can0 20000004#0001000000000000
        (1700000000.010000) can0 7FF#EE

        """

    static let text = #"""
        set -u
        out=$1
        daqctl=$2
        status=0

        # Waits until FILE contains PATTERN (a listener announces itself on stderr once bound).
        wait_for() {
            for _ in $(seq 250); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done
            echo "timed out waiting for '$2' in $1" >&2; status=1; return 1
        }

        # 1. Frames of every kind, sent by can-utils, received by daqctl listen on two buses.
        d=$out/frames
        date +%s%N >"$d/before-ns"
        "$daqctl" listen --on vcan0,vcan1 --count 9 --duration 20 >"$d/listen.log" 2>"$d/listen.err" &
        p=$!
        wait_for "$d/listen.err" "listening on vcan1"
        cansend vcan0 123#DEADBEEF
        cansend vcan0 000#
        cansend vcan0 1ABCDEF0#0102030405060708
        cansend vcan0 321##100112233445566778899AABB
        cansend vcan0 322##20011
        cansend vcan0 12345678##3000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F
        cansend vcan0 7FF#R
        cansend vcan0 0000ABCD#R5
        cansend vcan1 456##01122334455667788
        wait $p; echo $? >"$d/listen.rc"
        date +%s%N >"$d/after-ns"

        # 2. Overload: a listener with the smallest receive buffer is stopped while cangen floods
        #    2000 frames; then one marker frame carries the kernel's drop total (SO_RXQ_OVFL).
        d=$out/drops
        "$daqctl" listen --on vcan0 --rcvbuf 1 --duration 30 >"$d/listen.log" 2>"$d/listen.err" &
        p=$!
        wait_for "$d/listen.err" "listening on vcan0"
        kill -STOP $p
        cangen vcan0 -g 0 -n 2000 -I 100 -L 8 -D i
        kill -CONT $p
        # Once the listener has printed what was queued, its queue is empty and the marker fits.
        wait_for "$d/listen.log" "#"
        cansend vcan0 7FF#AA
        wait_for "$d/listen.log" "7FF#AA"
        kill -INT $p; wait $p; echo $? >"$d/listen.rc"

        # 3. Id filters (11- and 29-bit, inverted) on vcan0; error-frame mask on vcan1.
        d=$out/filters
        "$daqctl" listen --on vcan0 --filter 100:7FF --filter 12345678:1FFFFFFF --count 2 --duration 20 \
            >"$d/accept.log" 2>"$d/accept.err" &
        p1=$!
        "$daqctl" listen --on vcan0 --filter 100~7FF --count 3 --duration 20 >"$d/invert.log" 2>"$d/invert.err" &
        p2=$!
        "$daqctl" listen --on vcan1 --count 2 --duration 20 >"$d/errors-all.log" 2>"$d/errors-all.err" &
        p3=$!
        "$daqctl" listen --on vcan1 --error-mask 0 --count 1 --duration 20 >"$d/errors-none.log" 2>"$d/errors-none.err" &
        p4=$!
        for f in accept invert errors-all errors-none; do wait_for "$d/$f.err" "listening on"; done
        cansend vcan0 100#01
        cansend vcan0 200#02
        cansend vcan0 12345678#03
        cansend vcan0 00000100#04
        "$daqctl" replay --to vcan1 --speed max "$d/errors.log" 2>"$d/errors-replay.err" || status=1
        for p in $p1 $p2 $p3 $p4; do wait $p || status=1; done

        # 4. Replay at original speed, recorded by candump and by daqctl listen; then at max speed.
        d=$out/replay
        n=$(grep -c . "$d/in.log")
        stdbuf -oL candump -L vcan0 >"$d/candump.log" &
        c=$!
        # candump has no ready signal: probe with id 7FE until it logs one.
        for _ in $(seq 250); do cansend vcan0 7FE#00; grep -q . "$d/candump.log" && break; sleep 0.02; done
        "$daqctl" listen --on vcan0 --count "$n" --duration 20 >"$d/listen.log" 2>"$d/listen.err" &
        p=$!
        wait_for "$d/listen.err" "listening on vcan0"
        "$daqctl" replay --to vcan0 "$d/in.log" 2>"$d/replay.err"; echo $? >"$d/replay.rc"
        wait $p; echo $? >"$d/listen.rc"
        sleep 0.2
        kill -INT $c; wait $c
        "$daqctl" listen --on vcan0 --count "$n" --duration 20 >"$d/listen-max.log" 2>"$d/listen-max.err" &
        p=$!
        wait_for "$d/listen-max.err" "listening on vcan0"
        "$daqctl" replay --to vcan0 --speed max "$d/in.log" 2>"$d/replay-max.err"; echo $? >"$d/replay-max.rc"
        wait $p; echo $? >"$d/listen-max.rc"

        exit $status
        """#
}

/// The log that the replay scenario plays: every frame kind, gaps of 5–40 ms and one of 300 ms.
enum ReplayFixture {
    static let lines: [(offsetMicros: Int, body: String)] = [
        (0, "100#00"),
        (10_000, "101#0102"),
        (20_000, "7FF#FFFFFFFFFFFFFFFF"),
        (25_000, "000#"),
        (40_000, "18FEF100#11223344"),
        (60_000, "1FFFFFFF#0000000000000000"),
        (70_000, "200##100112233445566778899AABB"),
        (80_000, "201##2DEADBEEF"),
        (90_000, "0CF00400##3" + (0..<64).map { String(format: "%02X", $0) }.joined()),
        (100_000, "202##0"),
        (130_000, "123#R"),
        (140_000, "124#R8"),
        (150_000, "18DAF110#R3"),
        (450_000, "300#CAFE"),
        (460_000, "301#BABE"),
        (480_000, "302##1" + String(repeating: "5A", count: 48)),
        (500_000, "303#0102030405060708"),
        (540_000, "304#01"),
        (545_000, "305#02"),
        (550_000, "306#03"),
    ]

    /// The log's span in seconds and the one long gap (before line 13) in seconds.
    static let spanSeconds = 0.55
    static let longGapIndex = 13
    static let longGapSeconds = 0.3

    static var log: String {
        lines.map { line in
            let micros = line.offsetMicros
            return "(1700000000.\(String(format: "%06d", micros))) can0 \(line.body)"
        }.joined(separator: "\n") + "\n"
    }
}
