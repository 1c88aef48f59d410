#!/usr/bin/env python3
"""Issue #14: which povray settings make a radiosity still rendered as row
slices match a single whole-image render?  Sections 2 and 3 of docs/RADIOSITY.md.

Usage: python scripts/research/radiosity_slices.py [workdir]   (default /tmp/httpov-research/slices)
Writes <workdir>/results.json and prints the tables.
"""
import sys
from pathlib import Path

from common import BASE, SCENES, SLICES, compare, dump, load, parallel, run, save, stitch, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/slices")
WD.mkdir(parents=True, exist_ok=True)
ROOM = SCENES / "room.pov"

# Footers appended after the user's scene by a wrapper (the user's file is not edited).
# A second radiosity{} block merges with the scene's: only the named fields change.
FOOTERS = {
    "none": None,
    "pt1": "global_settings { radiosity { pretrace_start 1 pretrace_end 1 } }",
    "as_off": "global_settings { radiosity { always_sample off } }",
    "pt1_as_off": "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }",
    # a converged render, to judge absolute quality (not a farm setting)
    "converged": "global_settings { radiosity { count 400 error_bound 0.3 pretrace_end 0.005 nearest_count 10 } }",
}


def scene_for(footer):
    if FOOTERS[footer] is None:
        return ROOM
    return wrapper(WD / f"wrap_{footer}.pov", ROOM, FOOTERS[footer])


def whole(label, footer="none", rfile=None, rfo=False, extra=()):
    args = BASE + [f"+I{scene_for(footer)}", f"+O{label}.png", *extra]
    if rfile:
        args += [f"Radiosity_File_Name={rfile}", "+RFO" if rfo else "+RFI"]
    r = run(args, WD, label)
    return r


def slices(label, footer="none", rfile=None):
    jobs = []
    for i, (sr, er) in enumerate(SLICES):
        args = BASE + [f"+I{scene_for(footer)}", f"+O{label}_s{i}.png", f"+SR{sr}", f"+ER{er}"]
        if rfile:
            args += [f"Radiosity_File_Name={rfile}", "+RFI"]
        jobs.append((args, WD, f"{label}_s{i}"))
    runs = parallel(jobs)
    px = stitch([WD / f"{label}_s{i}.png" for i in range(len(SLICES))])
    save(px, WD / f"{label}_stitched.png")
    return runs, px


def main():
    res = {"refs": {}, "prepasses": {}, "designs": {}}
    # References
    for name, kw in {
        "ref0": {},
        "converged": {"footer": "converged"},
    }.items():
        res["refs"][name] = whole(name, **kw)
    # Pre-passes (write the sample file)
    pre = {
        "P_full": {"extra": ()},                                   # same settings as the user's render
        "P_noAA_asoff": {"extra": ("-A",), "footer": "as_off"},    # no AA, final pass adds no samples
        "P_half_noAA": {"extra": ("-A", "+W80", "+H60")},          # half resolution, no AA
    }
    for name, kw in pre.items():
        res["prepasses"][name] = whole(name, rfile=f"{name}.rca", rfo=True, **kw)
    # References that load a pre-pass file (design c)
    for pname in pre:
        for footer in ("none", "pt1_as_off"):
            lab = f"ref_{pname}_{footer}"
            res["refs"][lab] = whole(lab, footer=footer, rfile=f"{pname}.rca")
    img = {k: load(WD / f"{k}.png") for k in res["refs"]}

    designs = {
        "base": dict(footer="none", rfile=None, prepass=None),
        "A_full_rfi": dict(footer="none", rfile="P_full.rca", prepass="P_full"),
        "B_full_rfi_pt1": dict(footer="pt1", rfile="P_full.rca", prepass="P_full"),
        "B_full_rfi_asoff": dict(footer="as_off", rfile="P_full.rca", prepass="P_full"),
        "B_full_rfi_pt1_asoff": dict(footer="pt1_as_off", rfile="P_full.rca", prepass="P_full"),
        "D_noAA_asoff_pt1_asoff": dict(footer="pt1_as_off", rfile="P_noAA_asoff.rca", prepass="P_noAA_asoff"),
        "D_half_pt1_asoff": dict(footer="pt1_as_off", rfile="P_half_noAA.rca", prepass="P_half_noAA"),
        "D_half_rfi": dict(footer="none", rfile="P_half_noAA.rca", prepass="P_half_noAA"),
    }
    for name, d in designs.items():
        runs, px = slices(name, d["footer"], d["rfile"])
        entry = {"footer": FOOTERS[d["footer"]], "prepass": d["prepass"], "slices": runs,
                 "slices_cpu": sum(r["cpu"] for r in runs), "slices_wall": sum(r["wall"] for r in runs),
                 "vs_ref0": compare(px, img["ref0"]), "vs_converged": compare(px, img["converged"])}
        if d["prepass"]:
            entry["prepass_cpu"] = res["prepasses"][d["prepass"]]["cpu"]
            entry["prepass_wall"] = res["prepasses"][d["prepass"]]["wall"]
            same = f"ref_{d['prepass']}_{d['footer']}"
            if same in img:
                entry["vs_same_ref"] = {"ref": same, **compare(px, img[same])}
        res["designs"][name] = entry
    # How far apart are legitimate whole renders? (noise floor)
    res["ref_vs_ref0"] = {k: compare(img[k], img["ref0"]) for k in img if k != "ref0"}
    res["ref_vs_converged"] = {k: compare(img[k], img["converged"]) for k in img if k != "converged"}
    dump(res, WD / "results.json")
    report(res)


def report(res):
    print("## references / pre-passes: cpu s, wall s, radiosity samples")
    for grp in ("refs", "prepasses"):
        for k, r in res[grp].items():
            print(f"| {grp} | {k} | {r['cpu']:.2f} | {r['wall']:.2f} | {r['rad_samples']} | {r['rad_passes']} |")
    print("\n## whole renders vs ref0 / converged: PSNR dB")
    for k, c in res["ref_vs_ref0"].items():
        print(f"| {k} | {c['psnr']} | {res['ref_vs_converged'].get(k, {}).get('psnr')} |")
    print("\n## designs")
    print("| design | PSNR vs ref0 | max jump ratio vs ref0 | PSNR vs same-file ref | diff px vs same | PSNR vs converged | pre-pass cpu | slices cpu | total cpu | slices wall |")
    for k, e in res["designs"].items():
        s = e.get("vs_same_ref", {})
        pc = e.get("prepass_cpu", 0.0)
        print(f"| {k} | {e['vs_ref0']['psnr']} | {e['vs_ref0']['max_jump_ratio']} | {s.get('psnr', '-')} | {s.get('diff_px', '-')} | "
              f"{e['vs_converged']['psnr']} | {pc:.2f} | {e['slices_cpu']:.2f} | {pc + e['slices_cpu']:.2f} | {e['slices_wall']:.2f} |")
    print("\n## edge jumps (sliced / single at rows 32,64,96, mean abs 0-255)")
    for k, e in res["designs"].items():
        print(k, [(j["sliced"], j["single"]) for j in e["vs_ref0"]["jumps"]])


if __name__ == "__main__":
    main()
