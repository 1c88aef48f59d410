#!/usr/bin/env python3
"""Issue #14: a static-lighting radiosity animation with a shared sample cache.
Section 5 of docs/RADIOSITY.md.  10-frame fly-through of the static room (room_fly.ini).

Flicker: the camera moves, so no pixel is static in image space.  We render a
better-converged reference sequence (count 200, nearest_count 10) and call a pixel
"static" between frames i and i+1 when the reference changes there by at most 2/255
in every channel (flat walls, floor, ceiling whose look the camera move does not change).
flicker = mean |F(i+1) - F(i)| over those pixels and channels, averaged over the 9 pairs.
Also reported: temporal error = mean |(F(i+1)-F(i)) - (R(i+1)-R(i))| over all pixels.
Usage: python scripts/research/flythrough.py [workdir]
"""
import sys
from pathlib import Path

from common import BASE, SCENES, H, W, dump, load, parallel, run, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/fly")
WD.mkdir(parents=True, exist_ok=True)
INI = SCENES / "room_fly.ini"
ROOM = SCENES / "room.pov"
N = 10
FOOT = {
    "pt1_as_off": "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }",
    "refq": "global_settings { radiosity { count 200 nearest_count 10 } }",
}


def scene(footer):
    return ROOM if footer is None else wrapper(WD / f"wrap_{footer}.pov", ROOM, FOOT[footer])


def frames_cmd(label, footer, sf, ef, rfile=None, mode=None, extra=()):
    args = BASE + [str(INI), f"+I{scene(footer)}", f"+O{label}.png", f"+SF{sf}", f"+EF{ef}", *extra]
    if rfile:
        args += [f"Radiosity_File_Name={rfile}"] + {"in": ["+RFI"], "out": ["+RFO"], "inout": ["+RFI", "+RFO"]}[mode]
    return args


def seq(label, footer=None, rfile=None):
    """All 10 frames, two povray processes of 5 frames each (two at once)."""
    runs = parallel([(frames_cmd(label, footer, 1, 5, rfile, "in"), WD, f"{label}_a"),
                     (frames_cmd(label, footer, 6, 10, rfile, "in"), WD, f"{label}_b")])
    return runs, [load(WD / f"{label}{i:02d}.png") for i in range(1, N + 1)]


def flicker(F, R):
    fl, te = [], []
    for i in range(N - 1):
        s = n = t = 0
        for f0, f1, r0, r1 in zip(F[i], F[i + 1], R[i], R[i + 1]):
            for c in range(3):
                t += abs((f1[c] - f0[c]) - (r1[c] - r0[c]))
            if max(abs(r1[c] - r0[c]) for c in range(3)) <= 2:
                s += sum(abs(f1[c] - f0[c]) for c in range(3))
                n += 3
        fl.append(s / n)
        te.append(t / (W * H * 3))
    return {"flicker_static": round(sum(fl) / len(fl), 3), "temporal_err": round(sum(te) / len(te), 3),
            "static_fraction": None, "per_pair_flicker": [round(x, 3) for x in fl]}


def static_fraction(R):
    tot = 0
    for i in range(N - 1):
        tot += sum(1 for r0, r1 in zip(R[i], R[i + 1]) if max(abs(a - b) for a, b in zip(r0, r1)) <= 2)
    return tot / ((N - 1) * W * H)


def main():
    res = {"modes": {}}
    runs, R = seq("ref", "refq")
    res["ref"] = {"cpu": sum(r["cpu"] for r in runs), "wall": max(r["wall"] for r in runs)}
    sf = static_fraction(R)
    res["static_fraction"] = sf

    def record(name, runs, F, pre=None):
        e = {"cpu": sum(r["cpu"] for r in runs), "wall": max(r["wall"] for r in runs), **flicker(F, R)}
        e["static_fraction"] = sf
        if pre:
            e["prepass_cpu"] = sum(p["cpu"] for p in pre)
            e["prepass_wall"] = sum(p["wall"] for p in pre)
        e["total_cpu"] = e["cpu"] + e.get("prepass_cpu", 0)
        res["modes"][name] = e
        print(name, {k: v for k, v in e.items() if k != "per_pair_flicker"})

    runs, F = seq("perframe")
    record("perframe", runs, F)

    # pre-pass A: frame 1 only (its image is frame 1 of a per-frame render)
    preA = [run(frames_cmd("preA", None, 1, 1, "f1.rca", "out"), WD, "preA")]
    for footer in (None, "pt1_as_off"):
        runs, F = seq(f"f1_{footer}", footer, "f1.rca")
        record(f"shared_f1_{footer}", runs, F, preA)

    # pre-pass B: frames 1, 4, 7, 10 accumulated into one file (+RFI +RFO), no AA
    preB = [run(frames_cmd("preB", None, 1, 1, "multi.rca", "out", ("-A",)), WD, "preB1")]
    sizes = [(WD / "multi.rca").stat().st_size]
    for f in (4, 7, 10):
        preB.append(run(frames_cmd("preB", None, f, f, "multi.rca", "inout", ("-A",)), WD, f"preB{f}"))
        sizes.append((WD / "multi.rca").stat().st_size)
    res["multi_rca_sizes"] = sizes
    res["preB_samples"] = [p["rad_samples"] for p in preB]
    for footer in (None, "pt1_as_off"):
        runs, F = seq(f"multi_{footer}", footer, "multi.rca")
        record(f"shared_multi_{footer}", runs, F, preB)
    dump(res, WD / "results.json")


if __name__ == "__main__":
    main()
