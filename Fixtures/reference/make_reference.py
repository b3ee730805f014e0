#!/usr/bin/env python3
"""Generates the reference workload fixtures (seed 000, Fig. 4): a DBC for one engine ECU whose
signals fill a 5 ms group of 162 channels, a 10 ms group of 64, and two crank-synchronous event
groups of 34 and 28, plus a 10 s candump log of that ECU's traffic: the 5 ms messages on can0 (~8,200 frames/s, ~90 % of
a 1 Mbit/s bus), everything else on can1.

Run once by hand (needs cantools from PyPI for encoding); the outputs are committed:
    python3 Fixtures/reference/make_reference.py Fixtures/reference
The log is deterministic (seeded) so the fixtures never churn.
"""
import math, random, sys, os, zlib

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)
rng = random.Random(20261121)

# (message prefix, id base, count of messages, signals per message, cycle ms)
layout = [
    ("EngFast", 0x100, 41, 4, 5),    # 164 signals, 162 used by CG0 "Time 5ms"
    ("EngSlow", 0x200, 16, 4, 10),   # 64 signals  -> CG1 "Time 10ms"
    ("Seg2", 0x300, 9, 4, 0),        # 36 signals, 34 used -> CG2 "Seg 2" (event)
    ("Seg1", 0x380, 7, 4, 0),        # 28 signals -> CG3 "Seg 1" (event)
]
units = ["rpm", "degC", "kPa", "%", "V", "mg/stroke", "deg", "lambda"]
lines = ['VERSION "DAQLink reference workload 1"', "", "NS_ :", "", "BS_:", "", "BU_: ECM DAQ", ""]
val_lines, valtype_lines, attr_lines, comments = [], [], [], []
messages = []
for prefix, base, count, per, cycle in layout:
    for m in range(count):
        mid = base + m
        name = f"{prefix}_{m:02d}"
        lines.append(f"BO_ {mid} {name}: 8 ECM")
        sigs = []
        for s in range(per):
            sname = f"{name}_S{s}"
            kind = (m * per + s) % 8
            unit = units[kind]
            if kind == 3:   # big-endian (Motorola), unsigned
                start = 16 * s + 7
                order, sign, factor, offset, lo, hi = "0", "+", 0.0015259, 0, 0, 100
            elif kind == 5:  # signed little-endian
                start = 16 * s
                order, sign, factor, offset, lo, hi = "1", "-", 0.01, 0, -327.68, 327.67
            elif kind == 6:  # big-endian signed
                start = 16 * s + 7
                order, sign, factor, offset, lo, hi = "0", "-", 0.1, 0, -3276.8, 3276.7
            else:            # unsigned little-endian with offset
                start = 16 * s
                order, sign, factor, offset, lo, hi = "1", "+", 0.25, -40 if kind == 1 else 0, -40 if kind == 1 else 0, 16343.75
            lines.append(f' SG_ {sname} : {start}|16@{order}{sign} ({factor},{offset}) [{lo}|{hi}] "{unit}" DAQ')
            sigs.append(sname)
        lines.append("")
        if cycle:
            attr_lines.append(f'BA_ "GenMsgCycleTime" BO_ {mid} {cycle};')
        messages.append((mid, name, sigs, cycle, prefix))

# A status message with a value table and a multiplexed diagnostics message (realistic extras).
lines += ['BO_ 1280 EngStatus: 8 ECM',
          ' SG_ EngState : 0|3@1+ (1,0) [0|7] "" DAQ',
          ' SG_ EngCounter : 4|4@1+ (1,0) [0|15] "" DAQ',
          ' SG_ EngTorque : 8|16@1- (0.1,0) [-3276.8|3276.7] "Nm" DAQ', '',
          'BO_ 1281 EngDiag: 8 ECM',
          ' SG_ DiagMux M : 0|8@1+ (1,0) [0|255] "" DAQ',
          ' SG_ DiagOilLevel m0 : 8|16@1+ (0.01,0) [0|655.35] "l" DAQ',
          ' SG_ DiagBattery m1 : 8|16@1+ (0.001,0) [0|65.535] "V" DAQ',
          ' SG_ DiagRuntime m2 : 8|32@1+ (1,0) [0|4294967295] "s" DAQ', '']
val_lines.append('VAL_ 1280 EngState 0 "Off" 1 "Crank" 2 "Idle" 3 "PartLoad" 4 "FullLoad" 5 "Overrun" 6 "Fault" 7 "SNA" ;')
attr_lines.append('BA_ "GenMsgCycleTime" BO_ 1280 100;')
attr_lines.append('BA_ "GenMsgCycleTime" BO_ 1281 100;')
lines += ['BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000;', 'BA_DEF_DEF_ "GenMsgCycleTime" 0;']
lines += attr_lines + [""] + val_lines + [""]
with open(os.path.join(out, "engine.dbc"), "w") as f:
    f.write("\n".join(lines) + "\n")

# 10 s of traffic: cyclic messages at their cycle, segment messages crank-synchronous (every 180 deg
# at a varying engine speed), status/diag at 100 ms. Values: ramps, sines, noise, counters.
import cantools
db = cantools.database.load_file(os.path.join(out, "engine.dbc"))
frames = []
t0 = 1_763_700_000.0
def phys(sig, t, i):
    lo, hi = sig.minimum, sig.maximum
    span = hi - lo
    shape = zlib.crc32(sig.name.encode()) % 3
    if shape == 0:   v = lo + span * (0.5 + 0.4 * math.sin(2 * math.pi * t / (2 + i % 7)))
    elif shape == 1: v = lo + span * ((t / 10.0 + i * 0.01) % 1.0) * 0.9
    else:            v = lo + span * (0.5 + 0.3 * math.sin(2 * math.pi * t / 7) + 0.002 * rng.uniform(-1, 1))  # slow drift + sensor noise of a few LSB
    return min(max(v, lo), hi)
duration = 10.0
for mid, name, sigs, cycle, prefix in messages:
    if not cycle: continue
    msg = db.get_message_by_frame_id(mid)
    phase = rng.uniform(0, cycle / 1000.0)
    k = 0
    while True:
        t = phase + k * cycle / 1000.0 + rng.uniform(0, 0.00005)
        if t >= duration: break
        data = msg.encode({s.name: phys(s, t, j) for j, s in enumerate(msg.signals)}, strict=False)
        frames.append((t, mid, data.hex().upper(), 'can0' if prefix == 'EngFast' else 'can1'))
        k += 1
# crank-synchronous segments: engine speed 800..3000 rpm; a segment every 180 deg crank
t, angle_events = 0.0, 0
while t < duration:
    rpm = 1900 + 1100 * math.sin(2 * math.pi * t / 10.0)
    seg_dt = (60.0 / rpm) / 2
    group = "Seg2" if angle_events % 2 == 0 else "Seg1"
    # The segment's messages go out back to back in id order (~130 µs apart at 1 Mbit/s);
    # the experiment triggers the group on the last one, when every value is fresh.
    burst = [m for m in messages if m[4] == group]
    for k, (mid, name, sigs, cycle, prefix) in enumerate(burst):
        msg = db.get_message_by_frame_id(mid)
        data = msg.encode({s.name: phys(s, t, j) for j, s in enumerate(msg.signals)}, strict=False)
        frames.append((t + 0.00013 * k, mid, data.hex().upper(), 'can1'))
    t += seg_dt
    angle_events += 1
status, diag = db.get_message_by_name("EngStatus"), db.get_message_by_name("EngDiag")
for k in range(int(duration * 10)):
    t = k * 0.1 + 0.003
    frames.append((t, 1280, status.encode({"EngState": 3 if k > 5 else 2, "EngCounter": k % 16, "EngTorque": 120.0 + k}).hex().upper(), 'can1'))
    mux = k % 3
    sig = {0: {"DiagOilLevel": 4.5}, 1: {"DiagBattery": 13.8}, 2: {"DiagRuntime": 3600 + k}}[mux]
    frames.append((t + 0.001, 1281, diag.encode({"DiagMux": mux, **sig}).hex().upper(), 'can1'))
frames.sort()
with open(os.path.join(out, "engine-10s.log"), "w") as f:
    for t, mid, data, bus in frames:
        f.write(f"({t0 + t:.6f}) {bus} {mid:03X}#{data}\n")
print(len(frames), "frames")

# The experiment: the seed's four channel groups over this DBC.
def names(prefix, count):
    out = []
    for mid, name, sigs, cycle, p in messages:
        if p == prefix:
            out += [f"{name}.{s}" for s in sigs]
    return out[:count]
def channel_list(items):
    return "[\n" + "".join(f'    "{c}",\n' for c in items) + "]"
exp = f'''# The reference workload of seed 000 (Fig. 4): one engine ECU, four channel groups.
# Edit freely: comments are allowed; errors name the line and the field.
name = "reference"

[[dbc]]
file = "engine.dbc"        # relative to this file
buses = ["can0", "can1"]   # frames of other buses are counted, not decoded

[[group]]
name = "Time 5ms"
raster_ms = 5
storage = "raw"            # DBC raw integers (MDF linear conversion gives physical values)
channels = {channel_list(names("EngFast", 162))}

[[group]]
name = "Time 10ms"
raster_ms = 10
channels = {channel_list(names("EngSlow", 64))}

[[group]]
name = "Seg 2"
on_message = "Seg2_08"     # crank-synchronous: one record per segment event (last message of the burst)
channels = {channel_list(names("Seg2", 34))}

[[group]]
name = "Seg 1"
on_message = "Seg1_06"
channels = {channel_list(names("Seg1", 28))}

[[group]]
name = "Engine state"
on_change = "EngStatus.EngState"
channels = ["EngStatus.EngState", "EngStatus.EngTorque:float64", "EngDiag.DiagOilLevel:float32"]
'''
with open(os.path.join(out, "reference.toml"), "w") as f:
    f.write(exp)
