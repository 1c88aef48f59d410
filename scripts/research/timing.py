#!/usr/bin/env python3
"""Issue #14, bar 3: does pre-pass + R slices cost no more than today's R slices?
Repeats each design REPS times (timings on a shared 2-core machine are noisy) at
160x120 and 320x240; slices are the four on povray's 32-row grid.  CPU = rusage of
each povray child (user+sys), so it includes parse and start-up.
Usage: python scripts/research/timing.py [workdir] [reps]
"""
import sys
from pathlib import Path

import common
from common import dump, parallel, run, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/timing")
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
WD.mkdir(parents=True, exist_ok=True)
ROOM = common.SCENES / "room.pov"
FROZEN = wrapper(WD / "frozen.pov", ROOM,
                 "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }")

ASOFF = wrapper(WD / "asoff.pov", ROOM, "global_settings { radiosity { always_sample off } }")


def grid_slices(h, n=4):
    step = -(-h // n)
    step = -(-step // 32) * 32
    return [(s, min(s + step - 1, h)) for s in range(1, h + 1, step)]


def main():
    res = {}
    for w, h in ((160, 120), (320, 240)):
        common.W, common.H = w, h
        common.SLICES = grid_slices(h)
        common.EDGES = [sr - 1 for sr, _ in common.SLICES[1:]]
        base = common.BASE[:2] + common.BASE[2:3] + [f"+W{w}", f"+H{h}"] + common.BASE[5:]
        key = f"{w}x{h}"
        res[key] = {"slices": common.SLICES, "reps": []}

        def sl(label, scene, rfile=None):
            jobs = [(base + [f"+I{scene}", f"+O{label}_s{i}.png", f"+SR{a}", f"+ER{b}"]
                     + ([f"Radiosity_File_Name={rfile}", "+RFI"] if rfile else []), WD, f"{label}_s{i}")
                    for i, (a, b) in enumerate(common.SLICES)]
            runs = parallel(jobs)
            px = common.stitch([WD / f"{label}_s{i}.png" for i in range(len(common.SLICES))])
            return sum(r["cpu"] for r in runs), sum(r["wall"] for r in runs), px

        for k in range(REPS):
            rep = {}
            whole = run(base + [f"+I{ROOM}", f"+O{key}_whole.png"], WD, f"{key}_whole")
            ref = common.load(WD / f"{key}_whole.png")
            rep["whole_cpu"] = whole["cpu"]
            c, wl, px = sl(f"{key}_base", ROOM)
            rep["base"] = {"cpu": c, "wall": wl, **pick(common.compare(px, ref))}
            pre = run(base + [f"+I{ROOM}", f"+O{key}_pre.png", f"Radiosity_File_Name={key}.rca", "+RFO"], WD, f"{key}_pre")
            c, wl, px = sl(f"{key}_frozen", FROZEN, f"{key}.rca")
            rep["full_prepass"] = {"pre_cpu": pre["cpu"], "cpu": c, "wall": wl, "total_cpu": pre["cpu"] + c,
                                   **pick(common.compare(px, ref))}
            pre = run(base + [f"+I{ROOM}", f"+O{key}_preh.png", f"+W{w // 2}", f"+H{h // 2}", "-A",
                              f"Radiosity_File_Name={key}_h.rca", "+RFO"], WD, f"{key}_preh")
            c, wl, px = sl(f"{key}_frozenh", FROZEN, f"{key}_h.rca")
            rep["half_prepass"] = {"pre_cpu": pre["cpu"], "cpu": c, "wall": wl, "total_cpu": pre["cpu"] + c,
                                   **pick(common.compare(px, ref))}
            # full resolution, no AA, final pass adds no samples
            pre = run(base + [f"+I{ASOFF}", f"+O{key}_prena.png", "-A",
                              f"Radiosity_File_Name={key}_na.rca", "+RFO"], WD, f"{key}_prena")
            c, wl, px = sl(f"{key}_frozenna", FROZEN, f"{key}_na.rca")
            rep["noaa_prepass"] = {"pre_cpu": pre["cpu"], "cpu": c, "wall": wl, "total_cpu": pre["cpu"] + c,
                                   **pick(common.compare(px, ref))}
            print(key, k, rep)
            res[key]["reps"].append(rep)
    dump(res, WD / "results.json")


def pick(c):
    return {"psnr": c["psnr"], "max_jump_ratio": c["max_jump_ratio"]}


if __name__ == "__main__":
    main()
