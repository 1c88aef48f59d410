#!/usr/bin/env python3
"""Issue #14, design (c): can frozen slices be pixel-identical to a whole render that
loads the same pre-pass file?  The frozen final pass still computes a few samples
where the cache has none near; a denser pre-pass (lower pretrace_end) may leave none.
Usage: python scripts/research/identity.py [workdir]
"""
import sys
from pathlib import Path

import common
from common import BASE, compare, dump, load, parallel, run, stitch, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/identity")
WD.mkdir(parents=True, exist_ok=True)
ROOM = common.SCENES / "room.pov"
FROZEN = wrapper(WD / "frozen.pov", ROOM,
                 "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }")


def main():
    res = {}
    ref0 = load(WD / "ref0.png") if (WD / "ref0.png").exists() else None
    if ref0 is None:
        run(BASE + [f"+I{ROOM}", "+Oref0.png"], WD, "ref0")
        ref0 = load(WD / "ref0.png")
    for pe in ("0.01", "0.005", "0.0025"):
        pre_scene = wrapper(WD / f"pre_{pe}.pov", ROOM,
                            f"global_settings {{ radiosity {{ pretrace_end {pe} always_sample off }} }}")
        rca = f"pe{pe}.rca"
        pre = run(BASE + [f"+I{pre_scene}", "-A", f"+Opre_{pe}.png", f"Radiosity_File_Name={rca}", "+RFO"], WD, f"pre_{pe}")
        whole = run(BASE + [f"+I{FROZEN}", f"+Owhole_{pe}.png", f"Radiosity_File_Name={rca}", "+RFI"], WD, f"whole_{pe}")
        jobs = [(BASE + [f"+I{FROZEN}", f"+Os_{pe}_{i}.png", f"+SR{a}", f"+ER{b}", f"Radiosity_File_Name={rca}", "+RFI"],
                 WD, f"s_{pe}_{i}") for i, (a, b) in enumerate(common.SLICES)]
        runs = parallel(jobs)
        px = stitch([WD / f"s_{pe}_{i}.png" for i in range(4)])
        same = compare(px, load(WD / f"whole_{pe}.png"))
        res[pe] = {"pre_cpu": pre["cpu"], "pre_samples": pre["rad_samples"],
                   "whole_new_samples": whole["rad_samples"],
                   "slice_new_samples": [r["rad_samples"] for r in runs],
                   "slices_cpu": sum(r["cpu"] for r in runs),
                   "vs_same_file_whole": {k: same[k] for k in ("psnr", "diff_px", "max_diff")},
                   "vs_single": {k: compare(px, ref0)[k] for k in ("psnr", "max_jump_ratio")}}
        print(pe, res[pe])
    dump(res, WD / "results.json")


if __name__ == "__main__":
    main()
