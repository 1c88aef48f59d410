"""Designs for the first render of a sliced radiosity still (issue #27 item 3), measured with plain povray.

    python scripts/research/prepass_designs.py SCENE.pov [--size 320x240 --repeat 3 --modes serial,parallel,...]

Runs, per repetition and in turn, each as a user would on one 2-core machine (no httpov, no sandbox; up to four
povray processes at once, like a node of 4 render processes, but pfifo's 8; every povray `+WT1 +A0.3` unless said):
  single    one povray on the whole image: the reference;
  off       4 slices on povray's 32-row grid (httpov.plan.plan_slices), each its own radiosity pretrace;
  serial    the pre-pass before issue #27: the whole image without AA through the pre-pass wrapper
            (radiosity.PREPASS_FOOTER) saving the cache (+RFO), then 4 slices loading it (LOADING_FOOTER, +RFI);
  parallel  the pre-pass split into --parts row ranges (+SR/+ER), each saving its own cache, run at once; the
            slices load the concatenation of the parts' files;
  wt2       the serial pre-pass with two threads (+WT2): the cores the waiting slices leave idle;
  stop      the serial pre-pass stopped (SIGINT) when its final pass starts (its pixel counter restarts);
  whole     the pre-pass r27b tried for issue #27: the whole image as the job asks (AA, the user's scene) with
            +RFO; its image is the frame (the slices would take their rows from it); the time is that render's;
  pstop     "parallel-stop": the parallel parts, each interrupted (SIGINT) as soon as its pretrace is over (its
            pixel counter restarts: the final pass begins; povray still writes the .rca), the slices loading the
            concatenation of the parts' files;
  pfifo     pstop with the slices' povray started at once with the parts, each reading the cache from its own named
            pipe (mkfifo): povray opens it after its start and parse, and blocks there until the merged cache is
            written into it, so the slices' start latency overlaps the parts' pretrace;
  margin    no pre-pass: each slice renders --margin rows more on each side (within the image), so its pretrace
            covers the rows around its edges too, and only its own rows are kept (one povray start, not two);
  single2   no pre-pass: one povray +WT2 on the whole image, povray's own spread (samples in another order).
Prints, per mode, wall seconds (median, min-max), the ratio to `off` (median and min-max of per-repetition ratios),
the wall seconds of a two-phase design's pre-pass (until its slices' cache is written), PSNR (8-bit RGB) of the
stitched image against `single`, the largest edge jump ratio (mean |row r - row r-1| at each slice edge, stitched /
single) and the cache's sample count. Work folders stay in /tmp/httpov-prepass-designs/.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from httpov.plan import plan_slices  # noqa: E402
from httpov.worker.radiosity import LOADING_FOOTER, PREPASS_FOOTER, check_cache  # noqa: E402

MODES = ("serial", "parallel", "wt2", "stop", "whole", "pstop", "pfifo", "margin", "single2")
COUNTER = re.compile(rb"Rendered (\d+) of")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="a .pov file that needs no file beside it")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", type=int, default=4, help="row ranges of the parallel pre-pass")
    parser.add_argument("--margin", type=int, default=16, help="rows more on each side of a slice in mode margin")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    modes = args.modes.split(",")
    d = Designs(args.scene, width, height, args.parts, args.margin)
    walls: dict[str, list[float]] = {m: [] for m in ("single", "off", *modes)}
    quality: dict[str, tuple[float, float, int]] = {}
    for rep in range(args.repeat):
        walls["single"].append(d.timed(lambda: d.run(["+Is.pov", "+Osingle.png"])))
        for mode in ("off", *modes):
            walls[mode].append(d.timed(lambda m=mode: d.mode(m)))  # type: ignore[misc]
            quality[mode] = d.quality(mode)
        print(rep, {m: round(w[-1], 2) for m, w in walls.items()}, flush=True)
    print(f"\n{args.scene.name} at {width}x{height}, +A0.3, 4 slices, {args.repeat} repetitions (median; min-max)\n")
    print("/ off: the median (min-max) of per-repetition ratios to off, measured back to back\n")
    print("| design | wall s | / off | of which pre-pass s | PSNR vs single dB | max edge jump ratio | cache samples |")
    print("|---|---|---|---|---|---|---|")
    for mode, values in walls.items():
        ratios = [a / b for a, b in zip(values, walls["off"])]
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        psnr_, jump, samples = quality.get(mode, (math.inf, 1.0, 0))
        pre = d.phase1.get(mode)
        pre_text = f"{statistics.median(pre):.2f} ({min(pre):.2f}-{max(pre):.2f})" if pre else ""
        print(f"| {mode} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) | {ratio} | "
              f"{pre_text} | {psnr_:.1f} | {jump:.2f} | {samples or ''} |")


class Designs:
    def __init__(self, scene: Path, width: int, height: int, parts: int, margin: int = 16) -> None:
        self.margin = margin
        self.work = Path("/tmp/httpov-prepass-designs") / f"{scene.stem}-{width}x{height}"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        shutil.copy(scene, self.work / "s.pov")
        (self.work / "pre.pov").write_text(f'#include "s.pov"\n{PREPASS_FOOTER}\n')
        (self.work / "load.pov").write_text(f'#include "s.pov"\n{LOADING_FOOTER}\n')
        self.width, self.height = width, height
        self.base = ["povray", "-D", "+WT1", f"+W{width}", f"+H{height}", "+A0.3", "+FN"]
        self.slices = plan_slices(height, slices=4)
        self.parts = plan_slices(height, slices=parts)
        self.pool = ThreadPoolExecutor(4)
        self.phase1: dict[str, list[float]] = {}  # wall seconds of each pre-pass (the rest: its slices)

    @staticmethod
    def timed(what: Callable[[], object]) -> float:
        started = time.perf_counter()
        what()
        return time.perf_counter() - started

    def run(self, args: list[str], threads: int = 1) -> None:
        argv = [a if a != "+WT1" else f"+WT{threads}" for a in self.base] + args
        done = subprocess.run(argv, cwd=self.work, capture_output=True, stdin=subprocess.DEVNULL)
        if done.returncode:
            raise SystemExit(done.stdout[-2000:].decode(errors="replace"))

    def parallel(self, arglists: list[list[str]]) -> None:
        list(self.pool.map(self.run, arglists))

    def mode(self, mode: str) -> None:
        started = time.perf_counter()
        for f in self.work.glob("*.rca"):
            f.unlink()
        pre = ["+Ipre.pov", "-A", "+Opre.png", "Radiosity_File_Name=all.rca", "+RFO"]
        if mode == "off":
            return self.parallel([["+Is.pov", f"+Ooff{i}.png", f"+SR{a}", f"+ER{b}"]
                                  for i, (a, b) in enumerate(self.slices)])
        if mode == "whole":
            return self.run(["+Is.pov", "+Owhole.png", "Radiosity_File_Name=all.rca", "+RFO"])
        if mode == "margin":
            m, h = self.margin, self.height
            return self.parallel([["+Is.pov", f"+Omargin{i}.png", f"+SR{max(a - m, 1)}", f"+ER{min(b + m, h)}"]
                                  for i, (a, b) in enumerate(self.slices)])
        if mode == "single2":
            return self.run(["+Is.pov", "+Osingle2.png"], threads=2)
        if mode == "serial":
            self.run(pre)
        elif mode == "wt2":
            self.run(pre, threads=2)
        elif mode == "stop":
            self.stopped(pre)
        elif mode == "parallel":
            self.parallel([["+Ipre.pov", "-A", f"+Opre{i}.png", f"+SR{a}", f"+ER{b}", f"Radiosity_File_Name=p{i}.rca",
                            "+RFO"] for i, (a, b) in enumerate(self.parts)])
            self.merge()
        elif mode == "pstop":
            list(self.pool.map(self.stopped, [
                ["+Ipre.pov", "-A", f"+Opre{i}.png", f"+SR{a}", f"+ER{b}", f"Radiosity_File_Name=p{i}.rca", "+RFO"]
                for i, (a, b) in enumerate(self.parts)]))
            self.merge()
        elif mode == "pfifo":
            return self.fifo(started)
        self.phase1.setdefault(mode, []).append(time.perf_counter() - started)
        self.parallel([["+Iload.pov", f"+O{mode}{i}.png", f"+SR{a}", f"+ER{b}", "Radiosity_File_Name=all.rca", "+RFI"]
                       for i, (a, b) in enumerate(self.slices)])

    def fifo(self, started: float) -> None:
        """pstop, the slices waiting on named pipes for the merged cache from the start."""
        slices = []
        for i, (a, b) in enumerate(self.slices):
            os.mkfifo(self.work / f"f{i}.rca")
            slices.append(subprocess.Popen(
                self.base + ["+Iload.pov", f"+Opfifo{i}.png", f"+SR{a}", f"+ER{b}", f"Radiosity_File_Name=f{i}.rca",
                             "+RFI"], cwd=self.work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL))
        list(self.pool.map(self.stopped, [
            ["+Ipre.pov", "-A", f"+Opre{i}.png", f"+SR{a}", f"+ER{b}", f"Radiosity_File_Name=p{i}.rca", "+RFO"]
            for i, (a, b) in enumerate(self.parts)]))
        self.merge()
        self.phase1.setdefault("pfifo", []).append(time.perf_counter() - started)
        merged = (self.work / "all.rca").read_bytes()
        list(self.pool.map(lambda i: (self.work / f"f{i}.rca").write_bytes(merged), range(len(self.slices))))
        if any(proc.wait() for proc in slices):
            raise SystemExit("a slice reading its cache from a named pipe failed")

    def merge(self) -> None:
        """The parts' caches concatenated (povray loads every line; a part that saved nothing adds nothing)."""
        with open(self.work / "all.rca", "wb") as out:
            for i in range(len(self.parts)):
                part = self.work / f"p{i}.rca"
                if part.is_file():
                    check_cache(part)
                    out.write(part.read_bytes())

    def stopped(self, args: list[str]) -> None:
        """povray interrupted when its pixel counter restarts: the pretrace is over, the final pass begins."""
        proc = subprocess.Popen(self.base + args, cwd=self.work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        last = -1
        while chunk := os.read(proc.stdout.fileno(), 65536):
            counts = [int(n) for n in COUNTER.findall(chunk)]
            if last >= 0 and any(b < a for a, b in zip([last, *counts], counts)):
                proc.send_signal(signal.SIGINT)
                break
            last = counts[-1] if counts else last
        proc.stdout.read()
        proc.wait()

    def rgb(self, name: str) -> bytes:
        return Image.open(self.work / name).convert("RGB").tobytes()

    def quality(self, mode: str) -> tuple[float, float, int]:
        if mode in ("whole", "single2"):
            image = Image.open(self.work / f"{mode}.png").convert("RGB")
        else:
            image = Image.new("RGB", (self.width, self.height))
            for i, (a, b) in enumerate(self.slices):
                piece = Image.open(self.work / f"{mode}{i}.png").convert("RGB")
                image.paste(piece.crop((0, a - 1, self.width, b)), (0, a - 1))
        image.save(self.work / f"{mode}.png")
        single, stitched = self.rgb("single.png"), self.rgb(f"{mode}.png")
        mse = sum((x - y) ** 2 for x, y in zip(single, stitched)) / len(single)
        psnr = math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)
        jumps = [self.jump(stitched, e) / max(self.jump(single, e), 1e-9) for _, e in self.slices[:-1]]
        samples = check_cache(self.work / "all.rca") if mode not in ("off", "margin", "single2") else 0
        return psnr, max(jumps), samples

    def jump(self, px: bytes, row: int) -> float:
        line = 3 * self.width
        return sum(abs(x - y) for x, y in zip(px[(row - 1) * line:row * line], px[row * line:(row + 1) * line])) / line


if __name__ == "__main__":
    main()
