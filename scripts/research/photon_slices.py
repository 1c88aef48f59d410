#!/usr/bin/env python3
"""Issue #14: shoot photons once and load them in every slice?  Section 4 of docs/RADIOSITY.md.

Tries three ways to add save_file/load_file without editing the user's scene:
  header  : povray +HI<file> (Include_Header) holding global_settings { photons { save_file } }
  footer  : a wrapper scene that #includes the user's scene, then the same block
  copy    : a copy of the scene with save_file/load_file inserted inside the scene's own
            global_settings photons { } block (the user's file is untouched)
Usage: python scripts/research/photon_slices.py [workdir] [reps]
"""
import re
import sys
from pathlib import Path

from common import BASE, SCENES, SLICES, diff_pixels, dump, load, parallel, psnr, run, stitch, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/photons")
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
WD.mkdir(parents=True, exist_ok=True)
SCENE = SCENES / "caustics.pov"


def inject(src, dst, stmt):
    """Copy src to dst with stmt inserted after the first 'photons {' inside global_settings."""
    text = src.read_text()
    g = text.index("global_settings")
    m = re.compile(r"photons\s*\{").search(text, g)
    dst.write_text(text[:m.end()] + f" {stmt} " + text[m.end():])
    return dst


def slices(label, scene):
    jobs = [(BASE + [f"+I{scene}", f"+O{label}_s{i}.png", f"+SR{sr}", f"+ER{er}"], WD, f"{label}_s{i}")
            for i, (sr, er) in enumerate(SLICES)]
    runs = parallel(jobs)
    return runs, stitch([WD / f"{label}_s{i}.png" for i in range(len(SLICES))])


def main():
    res = {"placement": {}, "reps": []}
    ref = run(BASE + [f"+I{SCENE}", "+Oref.png"], WD, "ref")
    ref2 = run(BASE + [f"+I{SCENE}", "+Oref2.png"], WD, "ref2")
    refpx = load(WD / "ref.png")
    res["ref"], res["ref_repeat_diff_px"] = ref, diff_pixels(refpx, load(WD / "ref2.png"))

    # 1. where can save_file come from?
    (WD / "hdr_save.inc").write_text('global_settings { photons { save_file "hdr.ph" } }\n')
    r = run(BASE + ["+HIhdr_save.inc", f"+I{SCENE}", "+Ohdr.png"], WD, "hdr")
    res["placement"]["header"] = {"file_written": (WD / "hdr.ph").exists(), "photons_shot": r["photons_shot"]}
    wrapper(WD / "ftr_save.pov", SCENE, 'global_settings { photons { save_file "ftr.ph" } }')
    r = run(BASE + [f"+I{WD / 'ftr_save.pov'}", "+Oftr.png"], WD, "ftr")
    res["placement"]["footer"] = {"file_written": (WD / "ftr.ph").exists(), "photons_shot": r["photons_shot"],
                                  "diff_px_vs_ref": diff_pixels(load(WD / "ftr.png"), refpx)}
    save_copy = inject(SCENE, WD / "copy_save.pov", 'save_file "copy.ph"')
    load_copy = inject(SCENE, WD / "copy_load.pov", 'load_file "copy.ph"')
    # pre-pass: shooting does not depend on the image window, so render one row only
    pre = run(BASE + [f"+I{save_copy}", "+Opre.png", "+SR1", "+ER1"], WD, "pre")
    res["placement"]["copy"] = {"file_written": (WD / "copy.ph").exists(),
                                "file_bytes": (WD / "copy.ph").stat().st_size, "photons_shot": pre["photons_shot"]}
    r = run(BASE + [f"+I{load_copy}", "+Owhole_load.png"], WD, "whole_load")
    res["placement"]["copy"].update(loaded=r["photon_loaded"], photons_shot_when_loading=r["photons_shot"],
                                    whole_load_diff_px_vs_ref=diff_pixels(load(WD / "whole_load.png"), refpx),
                                    whole_load_psnr=psnr(load(WD / "whole_load.png"), refpx))
    res["whole_load"] = r

    # 2. timing and identity, repeated: today's slices vs pre-pass + loading slices
    for k in range(REPS):
        rep = {}
        runs, px = slices(f"base{k}", SCENE)
        rep["base"] = {"cpu": sum(x["cpu"] for x in runs), "wall": sum(x["wall"] for x in runs),
                       "photon_cpu": sum(x["photon"]["cpu"] for x in runs if x["photon"]),
                       "diff_px": diff_pixels(px, refpx)}
        pre = run(BASE + [f"+I{save_copy}", f"+Opre{k}.png", "+SR1", "+ER1"], WD, f"pre{k}")
        runs, px = slices(f"load{k}", load_copy)
        rep["load"] = {"pre_cpu": pre["cpu"], "pre_wall": pre["wall"],
                       "cpu": sum(x["cpu"] for x in runs), "wall": sum(x["wall"] for x in runs),
                       "all_loaded": all(x["photon_loaded"] for x in runs),
                       "diff_px": diff_pixels(px, refpx), "psnr": psnr(px, refpx)}
        rep["load"]["total_cpu"] = rep["load"]["pre_cpu"] + rep["load"]["cpu"]
        res["reps"].append(rep)
        print(k, rep)
    dump(res, WD / "results.json")
    print(res["placement"], "ref repeat diff", res["ref_repeat_diff_px"])


if __name__ == "__main__":
    main()
