#!/usr/bin/env python3
"""Issue #14, follow-ups to section 3 (docs/RADIOSITY.md "Further checks"):
  vain   : Radiosity_Vain_Pretrace=off on the pre-pass: same samples? cheaper?
  hr     : High_Reproducibility=on: does it make frozen slices pixel-identical to a
           whole render that loads the same file (design c)?
  heavy  : bar 3 with an expensive final pass (320x240, +A0.05 +R4): does the
           pre-pass overhead shrink relative to today's slices?
Usage: python scripts/research/extras.py [workdir] [reps]
"""
import sys
from pathlib import Path

import common
from common import compare, diff_pixels, dump, load, parallel, run, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/extras")
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
WD.mkdir(parents=True, exist_ok=True)
ROOM = common.SCENES / "room.pov"
FROZEN = wrapper(WD / "frozen.pov", ROOM,
                 "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }")
ASOFF = wrapper(WD / "asoff.pov", ROOM, "global_settings { radiosity { always_sample off } }")


def setup(w, h, aa=("+A0.3",)):
    common.W, common.H = w, h
    step = -(-(-(-h // 4)) // 32) * 32
    common.SLICES = [(s, min(s + step - 1, h)) for s in range(1, h + 1, step)]
    common.EDGES = [a - 1 for a, _ in common.SLICES[1:]]
    return ["povray", "-D", "+WT1", f"+W{w}", f"+H{h}", *aa, "+FN"]


def sl(base, label, scene, extra=()):
    jobs = [(base + [f"+I{scene}", f"+O{label}_s{i}.png", f"+SR{a}", f"+ER{b}", *extra], WD, f"{label}_s{i}")
            for i, (a, b) in enumerate(common.SLICES)]
    runs = parallel(jobs)
    return sum(r["cpu"] for r in runs), common.stitch([WD / f"{label}_s{i}.png" for i in range(len(common.SLICES))])


def main():
    res = {"vain": [], "hr": {}, "heavy": []}
    base = setup(320, 240)
    for k in range(REPS):
        e = {}
        for vp in ("on", "off"):
            r = run(base + [f"+I{ASOFF}", "-A", f"+Ovain_{vp}.png", f"Radiosity_Vain_Pretrace={vp}",
                            f"Radiosity_File_Name=vain_{vp}.rca", "+RFO"], WD, f"vain_{vp}")
            e[vp] = {"cpu": r["cpu"], "rad_cpu": r["radiosity"]["cpu"], "samples": r["rad_samples"]}
        e["same_image"] = diff_pixels(load(WD / "vain_on.png"), load(WD / "vain_off.png")) == 0
        e["same_file"] = (WD / "vain_on.rca").read_bytes() == (WD / "vain_off.rca").read_bytes()
        res["vain"].append(e)
        print("vain", e)

    rf = ["Radiosity_File_Name=vain_on.rca", "+RFI"]
    for hr in ("off", "on"):
        extra = (f"High_Reproducibility={hr}", *rf)
        run(base + [f"+I{FROZEN}", f"+Ohr_{hr}_whole.png", *extra], WD, f"hr_{hr}_whole")
        _, px = sl(base, f"hr_{hr}", FROZEN, extra)
        res["hr"][hr] = {"diff_px": diff_pixels(px, load(WD / f"hr_{hr}_whole.png")),
                         **{k: v for k, v in compare(px, load(WD / f"hr_{hr}_whole.png")).items() if k != "jumps"}}
        print("hr", hr, res["hr"][hr])

    base = setup(320, 240, ("+A0.05", "+R4"))
    for k in range(REPS):
        e = {}
        w = run(base + [f"+I{ROOM}", "+Oheavy_whole.png"], WD, "heavy_whole")
        ref = load(WD / "heavy_whole.png")
        e["whole_cpu"] = w["cpu"]
        c, px = sl(base, "heavy_base", ROOM)
        e["base"] = {"cpu": c, "psnr": compare(px, ref)["psnr"], "jump": compare(px, ref)["max_jump_ratio"]}
        for name, pre_extra in (("half", ("+W160", "+H120")), ("full_noaa", ())):
            p = run(base + [f"+I{ASOFF}", "-A", *pre_extra, f"Radiosity_File_Name=heavy_{name}.rca", "+RFO",
                            f"+Oheavy_pre_{name}.png"], WD, f"heavy_pre_{name}")
            c, px = sl(base, f"heavy_{name}", FROZEN, (f"Radiosity_File_Name=heavy_{name}.rca", "+RFI"))
            cm = compare(px, ref)
            e[name] = {"pre_cpu": p["cpu"], "cpu": c, "total_cpu": p["cpu"] + c, "psnr": cm["psnr"],
                       "jump": cm["max_jump_ratio"], "ratio_to_base": (p["cpu"] + c) / e["base"]["cpu"]}
        res["heavy"].append(e)
        print("heavy", e)
    dump(res, WD / "results.json")


if __name__ == "__main__":
    main()
