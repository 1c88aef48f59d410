"""povray with and without httpov's quick waits (httpov/worker/waits.c), taking turns: wall time, CPU and pixels.

    python scripts/bench_waits.py [--repeat 5]

Three renders, each run plainly and with the library preloaded (LD_PRELOAD, as a render node does inside its
sandbox), alternating which goes first: one 32x32 frame of a trivial scene (povray's start), ten and thirty such
frames in one povray (its idle between frames), and POV-Ray's chess2 sample at 160x120 with antialiasing (a frame
that costs CPU: the library must not add any; the CPU of povray's threads but the one that renders, in ms a second,
is what shorter polls could cost). Prints each pair's ratio (quick / plain) and whether the pixels are the same.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import children_cpu  # noqa: E402  (scripts/ is on the path: python scripts/bench_waits.py)

from httpov.settings import Settings  # noqa: E402
from httpov.worker import waits  # noqa: E402

TRIVIAL = ("camera { location <0, 0, -3> look_at 0 } light_source { <2, 4, -3> rgb 1 } "
           "sphere { 0, 1 pigment { rgb 1 } }\n")
CHESS2 = Path("/usr/share/doc/povray/examples/advanced/chess2.pov")
TICKS = os.sysconf("SC_CLK_TCK")


def run(folder: Path, args: list[str], preload: Path | None, out: str) -> tuple[float, float, float, list[bytes]]:
    """One povray run: wall seconds, CPU seconds, CPU seconds of every thread but the busiest (povray's polling
    threads: what shorter polls could cost), each output frame's pixels."""
    for old in folder.glob(f"{out}*.png"):
        old.unlink()
    env = dict(os.environ, HOME=str(folder), **({"LD_PRELOAD": str(preload)} if preload else {}))
    cpu, started = children_cpu(), time.monotonic()
    proc = subprocess.Popen(["povray", *args, "-D", f"+O{out}.png"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads: dict[str, float] = {}
    while proc.poll() is None:
        for stat in Path(f"/proc/{proc.pid}/task").glob("*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            threads[stat.parent.name] = (int(fields[11]) + int(fields[12])) / TICKS
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"povray {' '.join(args)} exited {proc.returncode}")
    wall, cpu = time.monotonic() - started, children_cpu() - cpu
    polling = sum(sorted(threads.values())[:-1])
    return wall, cpu, polling, [waits.png_pixels(p) for p in sorted(folder.glob(f"{out}*.png"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-waits-"))
    try:
        (folder / "trivial.pov").write_text(TRIVIAL)
        cases = {"one 32x32 frame": ["trivial.pov", "+W32", "+H32"],
                 "ten 32x32 frames, one povray": ["trivial.pov", "+W32", "+H32", "+KFI1", "+KFF10"],
                 "thirty 32x32 frames, one povray": ["trivial.pov", "+W32", "+H32", "+KFI1", "+KFF30"]}
        if CHESS2.is_file():
            shutil.copy(CHESS2, folder)
            cases["chess2 160x120 +A0.3 +WT1"] = ["chess2.pov", "+W160", "+H120", "+A0.3", "+WT1"]
        library = waits.library_for(Settings(cache_dir=folder / "cache"), wait=True)
        if library is None:
            raise SystemExit("the quick waits library could not be built or failed its check: see the log above")
        print(f"library {library}; load average {os.getloadavg()[0]:.2f}")
        for name, povray_args in cases.items():
            plain: list[tuple[float, float, float]] = []
            quick: list[tuple[float, float, float]] = []
            same = True
            for rep in range(args.repeat):
                order = [(None, plain), (library, quick)]
                pixels = []
                for preload, into in (order if rep % 2 == 0 else order[::-1]):
                    wall, cpu, polling, frames = run(folder, povray_args, preload, "q" if preload else "p")
                    into.append((wall, cpu, polling))
                    pixels.append(frames)
                same = same and pixels[0] == pixels[1]
            walls = [q[0] / p[0] for p, q in zip(plain, quick)]

            def median(runs: list[tuple[float, float, float]], i: int) -> float:
                return statistics.median(r[i] for r in runs)

            def polls(runs: list[tuple[float, float, float]]) -> float:  # ms of CPU a second
                return 1000 * statistics.median(r[2] / r[0] for r in runs)

            print(f"{name}: plain {median(plain, 0):.3f} s ({median(plain, 1):.2f} s CPU, polling threads "
                  f"{polls(plain):.1f} ms/s), quick {median(quick, 0):.3f} s ({median(quick, 1):.2f} s CPU, polling "
                  f"threads {polls(quick):.1f} ms/s); wall quick/plain {statistics.median(walls):.3f} "
                  f"({min(walls):.3f}-{max(walls):.3f}); pixels {'the same' if same else 'DIFFER'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
