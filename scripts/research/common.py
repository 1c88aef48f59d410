"""Shared helpers for the radiosity/photon research scripts (issue #14).

Runs the real povray (no bubblewrap: the sandbox does not change what povray
computes), one thread per process (+WT1), at most two processes at once.
Pure Python image maths (Pillow only): 160x120 images are small.
"""
import concurrent.futures
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SCENES = HERE / "scenes"
W, H = 160, 120
BASE = ["povray", "-D", "+WT1", f"+W{W}", f"+H{H}", "+A0.3", "+FN"]
# 1-based, on povray's 32-row render-block grid.
SLICES = [(1, 32), (33, 64), (65, 96), (97, 120)]
EDGES = [32, 64, 96]  # 0-based index of the first row of the next slice


def run(args, cwd, label=""):
    """Run povray; return wall, CPU (rusage of the child) and parsed log figures."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    log = p.stdout.read().decode("utf-8", "replace")
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if label:
        (cwd / f"{label}.log").write_text(" ".join(args) + "\n\n" + log)
    if p.returncode != 0:
        raise RuntimeError(f"povray failed ({p.returncode}): {' '.join(args)}\n{log[-2000:]}")
    return {"cmd": " ".join(args), "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
            **parse_log(log)}


def parse_log(log):
    out = {}
    for name in ("Photon", "Radiosity", "Trace"):
        m = re.search(rf"{name} Time:\s+(No \w+|.*?\(([\d.]+) seconds\)\s*\n\s*using (\d+) thread\(s\) with ([\d.]+) CPU-seconds)", log)
        if m and m.group(1).startswith("No "):
            out[name.lower()] = None
        elif m:
            out[name.lower()] = {"wall": float(m.group(2)), "cpu": float(m.group(4))}
    passes = re.findall(r"^\s+(\d+|Final)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", log, re.M)
    out["rad_passes"] = {p[0]: int(p[3]) for p in passes}
    m = re.search(r"Radiosity samples calculated:\s+(\d+)", log)
    out["rad_samples"] = int(m.group(1)) if m else None
    m = re.search(r"Number of photons shot:\s+(\d+)", log)
    out["photons_shot"] = int(m.group(1)) if m else None
    out["photon_loaded"] = "Starting the load of photon file" in log
    out["warnings"] = sorted(set(re.findall(r"^.*(?:Warning|Error):.*$", log, re.M)) - {""})
    return out


def parallel(jobs, workers=2):
    """jobs: list of (args, cwd, label). At most `workers` povray at once."""
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda j: run(*j), jobs))


def load(path):
    im = Image.open(path).convert("RGB")
    assert im.size == (W, H), im.size
    return list(im.getdata())  # row-major list of (r, g, b)


def stitch(paths):
    """Rows of slice i come from file i (files are full-size, other rows black)."""
    out = [None] * (W * H)
    for (sr, er), p in zip(SLICES, paths):
        px = load(p)
        for y in range(sr - 1, er):
            out[y * W:(y + 1) * W] = px[y * W:(y + 1) * W]
    return out


def save(px, path):
    im = Image.new("RGB", (W, H))
    im.putdata(px)
    im.save(path)


def psnr(a, b):
    se = sum((x - y) ** 2 for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    if se == 0:
        return math.inf
    return 10 * math.log10(255 ** 2 / (se / (len(a) * 3)))


def diff_pixels(a, b):
    return sum(1 for pa, pb in zip(a, b) if pa != pb)


def max_diff(a, b):
    return max((abs(x - y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)), default=0)


def row_jump(px, edge):
    """Mean absolute difference (0-255, per channel) between rows edge-1 and edge."""
    a, b = px[(edge - 1) * W:edge * W], px[edge * W:(edge + 1) * W]
    return sum(abs(x - y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)) / (W * 3)


def compare(stitched, ref):
    """PSNR, differing pixels, and the edge-jump ratio against a reference."""
    jumps = []
    for e in EDGES:
        js, jr = row_jump(stitched, e), row_jump(ref, e)
        jumps.append({"edge": e, "sliced": round(js, 3), "single": round(jr, 3),
                      "ratio": round(js / jr, 3) if jr else None})
    return {"psnr": round(psnr(stitched, ref), 2), "diff_px": diff_pixels(stitched, ref),
            "max_diff": max_diff(stitched, ref), "jumps": jumps,
            "max_jump_ratio": max(j["ratio"] for j in jumps if j["ratio"] is not None)}


def wrapper(path, scene, footer):
    """A scene that includes the user's scene unchanged and appends a footer."""
    Path(path).write_text(f'#include "{scene}"\n{footer}\n')
    return Path(path)


def dump(obj, path):
    Path(path).write_text(json.dumps(obj, indent=1, default=str))


def cpu_of(r):
    return r["cpu"]
