#!/usr/bin/env python3
"""Issue #14, section 3 (e): a pre-pass that stops when its pretrace is done.

povray's progress line 'Rendered N of M pixels' counts up through all pretrace
passes, then starts again from a small N for the final pass.  When N drops we send
SIGINT: povray prints 'Render cancelled by user', exits 2, and the radiosity file
(+RFO) already holds every pretrace sample.  The slices then load it with the
frozen footer (pretrace_start 1 pretrace_end 1 always_sample off).
Usage: python scripts/research/abort_prepass.py [workdir] [reps]
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import common
from common import compare, dump, load, parallel, run, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/abort")
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
WD.mkdir(parents=True, exist_ok=True)
ROOM = common.SCENES / "room.pov"
FROZEN = wrapper(WD / "frozen.pov", ROOM,
                 "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }")
PROGRESS = re.compile(rb"Rendered (\d+) of \d+ pixels \(\d+%\)$")


def prepass_until_final(args, label):
    """Run povray; SIGINT it as soon as the final pass starts. Returns cpu, wall, exit, stop time."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, cwd=WD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    buf, last, sent = b"", 0, None
    while True:
        c = p.stdout.read(1)
        if not c:
            break
        buf += c
        if sent is None and c == b")":
            m = PROGRESS.search(buf[-64:])
            if m:
                n = int(m.group(1))
                if n < last:
                    p.send_signal(signal.SIGINT)
                    sent = time.monotonic() - t0
                last = n
    _, status, ru = os.wait4(p.pid, 0)
    (WD / f"{label}.log").write_text(" ".join(args) + "\n\n" + buf.decode("utf-8", "replace"))
    return {"cpu": ru.ru_utime + ru.ru_stime, "wall": time.monotonic() - t0, "sigint_at": sent,
            "exit": os.waitstatus_to_exitcode(status), "cancelled": b"Render cancelled by user" in buf}


def main():
    res = {}
    for w, h in ((160, 120), (320, 240)):
        common.W, common.H = w, h
        step = -(-(-(-h // 4)) // 32) * 32
        common.SLICES = [(s, min(s + step - 1, h)) for s in range(1, h + 1, step)]
        common.EDGES = [a - 1 for a, _ in common.SLICES[1:]]
        base = ["povray", "-D", "+WT1", f"+W{w}", f"+H{h}", "+A0.3", "+FN"]
        key = f"{w}x{h}"
        res[key] = []

        def sl(label, scene, extra=()):
            jobs = [(base + [f"+I{scene}", f"+O{label}_s{i}.png", f"+SR{a}", f"+ER{b}", *extra], WD, f"{label}_s{i}")
                    for i, (a, b) in enumerate(common.SLICES)]
            runs = parallel(jobs)
            return sum(r["cpu"] for r in runs), common.stitch([WD / f"{label}_s{i}.png" for i in range(4)])

        for k in range(REPS):
            e = {}
            whole = run(base + [f"+I{ROOM}", f"+O{key}_whole.png"], WD, f"{key}_whole")
            ref = load(WD / f"{key}_whole.png")
            e["whole_cpu"] = whole["cpu"]
            c, px = sl(f"{key}_base", ROOM)
            e["base"] = {"cpu": c, **pick(compare(px, ref))}
            for name, extra in (("stop", ()), ("stop_noAA", ("-A",))):
                rca = f"{key}_{name}.rca"
                pre = prepass_until_final(base + [f"+I{ROOM}", *extra, f"+O{key}_{name}_pre.png",
                                                  f"Radiosity_File_Name={rca}", "+RFO"], f"{key}_{name}_pre")
                pre["rca_lines"] = len((WD / rca).read_text().splitlines())
                c, px = sl(f"{key}_{name}", FROZEN, (f"Radiosity_File_Name={rca}", "+RFI"))
                e[name] = {"pre": pre, "cpu": c, "total_cpu": pre["cpu"] + c,
                           "ratio_to_base": (pre["cpu"] + c) / e["base"]["cpu"], **pick(compare(px, ref))}
            print(key, k, e)
            res[key].append(e)
    dump(res, WD / "results.json")


def pick(c):
    return {"psnr": c["psnr"], "max_jump_ratio": c["max_jump_ratio"]}


if __name__ == "__main__":
    main()
