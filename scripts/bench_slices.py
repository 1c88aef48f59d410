"""Benchmark: a sliced still on one render node against `povray +WT2` on the whole image; prints the ratio.

    python scripts/bench_slices.py [--width 1280 --height 960 --slices 8 --concurrency 3 --repeat 3]

The node is a real `celery -A httpov worker` (started before the clock runs, as on a farm); the sliced time runs
from submit to the stitched frame being stored. Both sides render the same scene and ini with antialiasing, and
the stitched frame is checked pixel for pixel against povray's. Uses the Redis on HTTPOV_BROKER_URL (default
127.0.0.1:6379) with a private key prefix and queue, or starts its own; storage and cache go to a temp folder.
"""
from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchfarm import node_farm  # noqa: E402

SCENE = """#version 3.7;
global_settings { assumed_gamma 1.0 max_trace_level 8 }
camera { location <0, 3, -8> look_at <0, 0.8, 0> }
light_source { <4, 8, -6> color rgb 1 area_light <1, 0, 0>, <0, 0, 1>, 5, 5 adaptive 1 }
light_source { <-6, 5, -3> color rgb 0.4 }
plane { y, 0 pigment { checker color rgb 0.1 color rgb 1 scale 0.5 } finish { reflection 0.2 } }
#for (i, 0, 11)
  #for (j, 0, 5)
    sphere { <-3.3 + 0.6 * i, 0.25 + 0.15 * j, -1 + 0.7 * j + 0.1 * i>, 0.25
      pigment { color rgb <mod(i, 3) / 2, mod(j, 2), 0.5> } finish { specular 0.6 reflection 0.35 } }
  #end
#end
sphere { <0, 1.5, 3>, 1.5 pigment { color rgb 0.9 } finish { reflection 0.6 phong 0.9 } }
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=3,
                        help="render processes on the node (more than its 2 cores, as README advises)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the best time counts")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-")))
        scene = tmp / "bench"
        scene.mkdir()
        (scene / "scene.pov").write_text(SCENE)
        (scene / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth={args.width}\nHeight={args.height}\n"
                                       "Antialias=on\nAntialias_Threshold=0.1\nAntialias_Depth=3\n")

        _, client = node_farm(stack, tmp, args.concurrency)

        # Warm the node up (pool processes forked, imports done) on a tiny scene before timing anything.
        tiny = tmp / "tiny"
        tiny.mkdir()
        (tiny / "scene.pov").write_text(SCENE)
        (tiny / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=16\nHeight=64\n")
        client.wait(client.submit(tiny, slices=2, name="warmup").spec.id, timeout=600)

        # The two sides alternate, so a change in the machine's load meets both alike.
        povray_times, sliced_times = [], []
        for run in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(["povray", "pov.ini", "-D", "+WT2", f"+O{tmp}/whole.png"], cwd=scene, check=True,
                           capture_output=True)
            povray_times.append(time.perf_counter() - started)
            print(f"povray +WT2 whole image, run {run + 1}: {povray_times[-1]:.2f}s", flush=True)

            started = time.perf_counter()
            sub = client.submit(scene, slices=args.slices, name=f"bench{run}")
            client.wait(sub.spec.id, poll=0.05, timeout=3600)
            sliced_times.append(time.perf_counter() - started)
            print(f"sliced ({len(sub.spec.slices or [])} slices, {args.concurrency} render processes), "
                  f"run {run + 1}: {sliced_times[-1]:.2f}s", flush=True)

        images = client.fetch(sub.spec.id, tmp / "fetched")
        same = _pixels(images[0]) == _pixels(tmp / "whole.png")
        best_povray, best_sliced = min(povray_times), min(sliced_times)
        paired = statistics.median(s / p for p, s in zip(povray_times, sliced_times))
        print(f"{args.width}x{args.height}, {args.slices} slices requested: povray +WT2 {best_povray:.2f}s, "
              f"sliced on one node {best_sliced:.2f}s (best of {args.repeat} each), "
              f"ratio {best_sliced / best_povray:.3f}, "
              f"median of paired runs {paired:.3f} (target <= 1.1); "
              f"stitched pixels {'identical to' if same else 'DIFFERENT from'} povray's")


def _pixels(path: Path) -> list:
    import png

    return [list(row) for row in png.Reader(filename=str(path)).asDirect()[2]]


if __name__ == "__main__":
    main()
