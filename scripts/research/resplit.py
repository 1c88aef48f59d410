"""Splitting a running slice again through its checkpoint (issue #28 item 2), measured with plain povray.

    python scripts/research/resplit.py [--size 1920x1440 --processes 2 --repeat 3]

The question: can the farm split the remaining rows of a still's slowest slice when processes fall idle, and how
close to the ideal (the frame's CPU time / processes) does that bring a still whose cost is uneven over its rows?
The still is bench_tail.py's (an empty sky over three quarters, reflective spheres under an area light below), at
`+WT1 +A0.3` like a farm's slice. Per repetition, in turn:
  ideal    --processes povray each on the whole frame at once, that wall time / processes (the frame's CPU time /
           processes on a quiet machine, and the same under the machine's load); its image is the reference;
  even     2 x processes slices on povray's block grid (plan.plan_slices, as --slices auto cuts a new scene), handed
           to --processes povray processes at a time in row order;
  resplit  the same slices; whenever a process is idle and none is waiting, the running slice with the most rows
           left (read from povray's "Rendered N of M" counter; rows are done a block row of 32 at a time with +WT1)
           is split: it is interrupted (SIGINT: povray writes its .pov-state), continued with `+C` and `+ER` at the
           block-grid row halfway through what it had left, and the idle process renders the rest as a new slice.
Prints the wall times, their ratio to the ideal, the splits made, and whether the stitched image equals `single`
pixel for pixel. Work folders stay in /tmp/httpov-resplit/.
"""
from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_tail import SCENE, STILL_LOOK  # noqa: E402
from PIL import Image  # noqa: E402

from httpov.plan import RENDER_BLOCK_SIZE, plan_slices  # noqa: E402

COUNTER = re.compile(rb"Rendered (\d+) of")
BLOCK = RENDER_BLOCK_SIZE


class Slice:
    """One povray process rendering rows first..last of the frame (1-based), possibly continued after a split."""

    def __init__(self, run: Run, first: int, last: int, name: str) -> None:
        self.run, self.first, self.last, self.name = run, first, last, name
        self.pixels = 0  # povray's counter, of this process's rows
        self.proc: subprocess.Popen[bytes] | None = None
        self.split_to: int | None = None

    def rows_done(self) -> int:
        """Whole block rows finished (+WT1 renders the blocks in order, a block row at a time)."""
        return self.pixels // (self.run.width * BLOCK) * BLOCK

    def rows_left(self) -> int:
        return self.last - self.first + 1 - self.rows_done()

    def render(self, resume: bool = False) -> None:
        argv = [*self.run.base, "+Is.pov", f"+O{self.name}.png", f"+SR{self.first}", f"+ER{self.last}"]
        restored = self.pixels if resume else 0  # a continued povray counts only the pixels it renders itself
        self.proc = subprocess.Popen([*argv, "+C"] if resume else argv, cwd=self.run.work, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            counts = COUNTER.findall(chunk)
            if counts:
                self.pixels = restored + int(counts[-1])
        code = self.proc.wait()
        if self.split_to is None:
            if code:
                raise SystemExit(f"povray failed on {self.name}")
            return
        self.last, self.split_to = self.split_to, None
        if code:  # interrupted by the split (povray wrote its state): continue up to the new last row
            self.render(resume=True)


class Run:
    def __init__(self, work: Path, width: int, height: int, processes: int) -> None:
        self.work, self.width, self.height, self.processes = work, width, height, processes
        self.base = ["povray", "-D", "+WT1", f"+W{width}", f"+H{height}", "+A0.3", "+FN"]
        self.lock = threading.Lock()
        self.waiting: list[Slice] = []
        self.running: list[Slice] = []
        self.done: list[Slice] = []
        self.splits = 0

    def go(self, resplit: bool) -> float:
        self.waiting = [Slice(self, a, b, f"s{i}") for i, (a, b) in enumerate(plan_slices(self.height,
                                                                                         slices=2 * self.processes))]
        started = time.perf_counter()
        workers = [threading.Thread(target=self.worker, args=(resplit,)) for _ in range(self.processes)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - started

    def worker(self, resplit: bool) -> None:
        while True:
            with self.lock:
                piece = self.waiting.pop(0) if self.waiting else (self.split() if resplit else None)
                if piece is None:
                    return
                self.running.append(piece)
            piece.render()
            with self.lock:
                self.running.remove(piece)
                self.done.append(piece)

    def split(self) -> Slice | None:
        """The running slice with the most rows left gives its second half (on the block grid) to a new slice."""
        candidates = [s for s in self.running if s.split_to is None and s.proc is not None]
        if not candidates:
            return None
        slowest = max(candidates, key=Slice.rows_left)
        current = slowest.first + slowest.rows_done() + BLOCK - 1  # the block row it renders now
        cut = current + (slowest.last - current) // 2 // BLOCK * BLOCK
        if cut <= current or cut >= slowest.last:
            return None
        new = Slice(self, cut + 1, slowest.last, f"x{self.splits}")
        self.splits += 1
        slowest.split_to = cut
        assert slowest.proc is not None
        slowest.proc.send_signal(signal.SIGINT)
        return new

    def stitched(self) -> Image.Image:
        out = Image.new("RGB", (self.width, self.height))
        for piece in self.done:
            part = Image.open(self.work / f"{piece.name}.png").convert("RGB")
            box = (0, piece.first - 1, self.width, piece.last)
            out.paste(part.crop(box), box)
        return out


def ideal(work: Path, width: int, height: int, processes: int) -> float:
    """The ideal under this machine's load: `processes` povray each rendering the whole frame at once, that wall time
    divided by their number (on a quiet machine with a core a process, the frame's CPU time / processes)."""
    argv = ["povray", "-D", "+WT1", f"+W{width}", f"+H{height}", "+A0.3", "+FN", "+Is.pov"]
    started = time.perf_counter()
    procs = [subprocess.Popen([*argv, f"+Osingle{i or ''}.png"], cwd=work, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(processes)]
    if any(p.wait() for p in procs):
        raise SystemExit("povray failed on the whole frame")
    return (time.perf_counter() - started) / processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1440")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path("/tmp/httpov-resplit") / args.size
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # without the area light's jitter (random): pixels can then be compared with the single render
    (work / "s.pov").write_text(SCENE.format(tag="resplit", look=STILL_LOOK).replace(" jitter", ""))
    rows: dict[str, list[float]] = {"even": [], "resplit": []}
    for rep in range(args.repeat):
        best = ideal(work, width, height, args.processes)
        reference = Image.open(work / "single.png").convert("RGB")
        line = [f"ideal {best:.1f} s"]
        for mode in ("even", "resplit"):
            run = Run(work, width, height, args.processes)
            wall = run.go(resplit=mode == "resplit")
            same = run.stitched().tobytes() == reference.tobytes()
            rows[mode].append(wall / best)
            line.append(f"{mode} {wall:.1f} s = {wall / best:.2f}x ideal, {run.splits} splits, "
                        f"{'pixel-identical' if same else 'PIXELS DIFFER'}")
        print(f"{rep}: " + "; ".join(line), flush=True)
    for mode, ratios in rows.items():
        print(f"{mode}: {statistics.median(ratios):.2f}x ideal ({min(ratios):.2f}-{max(ratios):.2f}), "
              f"{args.processes} processes, {args.size}")


if __name__ == "__main__":
    main()
