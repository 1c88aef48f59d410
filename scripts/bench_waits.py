"""povray with and without httpov's quick waits (httpov/worker/waits.c), taking turns: wall time, CPU and pixels.

    python scripts/bench_waits.py [--repeat 5]

Three renders, each run plainly and with the library preloaded (LD_PRELOAD, as a render node does inside its
sandbox), alternating which goes first: one 32x32 frame of a trivial scene (povray's start), ten such frames in one
povray (its idle between frames), and POV-Ray's chess2 sample at 160x120 with antialiasing (a frame that costs
CPU: the library must not add any). Prints each pair's ratio (quick / plain) and whether the pixels are the same.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from httpov.settings import Settings  # noqa: E402
from httpov.worker import waits  # noqa: E402

TRIVIAL = ("camera { location <0, 0, -3> look_at 0 } light_source { <2, 4, -3> rgb 1 } "
           "sphere { 0, 1 pigment { rgb 1 } }\n")
CHESS2 = Path("/usr/share/doc/povray/examples/advanced/chess2.pov")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(folder: Path, args: list[str], preload: Path | None, out: str) -> tuple[float, float, list[bytes]]:
    """One povray run: wall seconds, CPU seconds, each output frame's pixels."""
    for old in folder.glob(f"{out}*.png"):
        old.unlink()
    env = dict(os.environ, HOME=str(folder), **({"LD_PRELOAD": str(preload)} if preload else {}))
    cpu, started = children_cpu(), time.monotonic()
    subprocess.run(["povray", *args, "-D", f"+O{out}.png"], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, cpu = time.monotonic() - started, children_cpu() - cpu
    return wall, cpu, [waits.png_pixels(p) for p in sorted(folder.glob(f"{out}*.png"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-waits-"))
    try:
        (folder / "trivial.pov").write_text(TRIVIAL)
        cases = {"one 32x32 frame": ["trivial.pov", "+W32", "+H32"],
                 "ten 32x32 frames, one povray": ["trivial.pov", "+W32", "+H32", "+KFI1", "+KFF10"]}
        if CHESS2.is_file():
            shutil.copy(CHESS2, folder)
            cases["chess2 160x120 +A0.3 +WT1"] = ["chess2.pov", "+W160", "+H120", "+A0.3", "+WT1"]
        library = waits.library_for(Settings(cache_dir=folder / "cache"), wait=True)
        if library is None:
            raise SystemExit("the quick waits library could not be built or failed its check: see the log above")
        print(f"library {library}; load average {os.getloadavg()[0]:.2f}")
        for name, povray_args in cases.items():
            plain: list[tuple[float, float]] = []
            quick: list[tuple[float, float]] = []
            same = True
            for rep in range(args.repeat):
                order = [(None, plain), (library, quick)]
                pixels = []
                for preload, into in (order if rep % 2 == 0 else order[::-1]):
                    wall, cpu, frames = run(folder, povray_args, preload, "q" if preload else "p")
                    into.append((wall, cpu))
                    pixels.append(frames)
                same = same and pixels[0] == pixels[1]
            walls = [q[0] / p[0] for p, q in zip(plain, quick)]
            cpus = [q[1] / p[1] for p, q in zip(plain, quick) if p[1] > 0]
            print(f"{name}: plain {statistics.median(w for w, _ in plain):.3f} s "
                  f"({statistics.median(c for _, c in plain):.2f} s CPU), "
                  f"quick {statistics.median(w for w, _ in quick):.3f} s ({statistics.median(c for _, c in quick):.2f}"
                  f" s CPU); wall quick/plain {statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}), "
                  f"CPU {statistics.median(cpus):.3f}; pixels {'the same' if same else 'DIFFER'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
