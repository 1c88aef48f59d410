"""Benchmark: the tail of a job whose cost is uneven (issue #28 items 2 and 3), on one render node.

    python scripts/bench_tail.py still [--width 960 --height 720 --concurrency 4 --repeat 3]
    python scripts/bench_tail.py animation [--frames 24 --concurrency 4 --repeat 3]

still: a frame with an empty sky over its top three quarters and reflective spheres under an area light below (the
bottom quarter holds about 90% of its CPU time), rendered with `--slices 4`, `--slices auto` on a scene the farm
has not sliced before, `--slices 4` again (the same scene: stored and in the node's cache, as a control for the
next) and `--slices auto` again (planned from the first auto run's measured slices), the four alternating; with
`--resplit both` (the default) instead `--slices 4` and `--slices auto` on a new scene each, each on a node that
re-splits the slowest running slice when a process idles (HTTPOV_RESPLIT=1) and on one that does not, alternating.
animation: frames whose cost grows about 10x over the animation (the camera tilts down from the sky into the
spheres), rendered with `--count N` (every batch N frames, as adaptive batches were planned before the tail shrank)
and with the default (adaptive: N frames a batch for a new scene of 24 frames, the last batches smaller),
alternating.

Each wall time runs from submit to the last frame stored, on a real `celery -A httpov worker` (started and warmed
up before the clock runs). The ideal is the scene's CPU time (povray +WT1 on the whole image or animation, user +
system of the child) divided by the render processes, and, on a machine with fewer cores than render processes,
by the cores: no farm beats that. On a shared machine the cores we get vary, so with --load-ideal each round also
measures the ideal under its load (the render processes each rendering the whole scene at once, that wall time
divided by their number) and its ratios are to that. Uses the Redis on HTTPOV_BROKER_URL (default 127.0.0.1:6379)
with a private key prefix and queue, or starts its own; storage and cache go to a temp folder.
"""
from __future__ import annotations

import argparse
import os
import resource
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

from httpov.options import SubmitOptions  # noqa: E402

# The camera looks at y = 2.6 (still) or tilts from the sky down into the spheres with the clock (animation).
SCENE = """#version 3.7;
// run {tag}
global_settings {{ assumed_gamma 1.0 max_trace_level 10 }}
camera {{ location <0, 1.2, -9> look_at <0, {look}, 0> angle 50 }}
sky_sphere {{ pigment {{ gradient y color_map {{ [0 color rgb <0.6, 0.7, 1>] [1 color rgb <0.1, 0.2, 0.6>] }} }} }}
light_source {{ <4, 8, -6> color rgb 1 area_light <2, 0, 0>, <0, 0, 2>, 6, 6 adaptive 1 jitter }}
plane {{ y, -1.2 pigment {{ checker color rgb 0.1 color rgb 1 scale 0.5 }} finish {{ reflection 0.3 }} }}
#for (i, 0, 13)
  #for (j, 0, 5)
    sphere {{ <-4.2 + 0.65 * i, -0.95 + 0.12 * j, -2 + 0.8 * j + 0.05 * i>, 0.25
      pigment {{ color rgb <mod(i, 3) / 2, mod(j, 2), 0.5> }} finish {{ specular 0.6 reflection 0.45 }} }}
  #end
#end
"""
STILL_LOOK = "2.6"
ANIMATION_LOOK = "3.4 - 3.4 * clock"  # frame 1: 0.2 s of CPU at 320x240, the last 1.7 s
AA = "Antialias=on\nAntialias_Threshold=0.05\nAntialias_Depth=3\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("still", "animation"))
    parser.add_argument("--width", type=int, default=None, help="default: 960 (still), 320 (animation)")
    parser.add_argument("--height", type=int, default=None, help="default: 720 (still), 240 (animation)")
    parser.add_argument("--frames", type=int, default=24, help="animation: frames")
    parser.add_argument("--count", type=int, default=3, help="animation: frames per batch of the fixed plan")
    parser.add_argument("--concurrency", type=int, default=4, help="render processes on the node")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs every configuration once")
    parser.add_argument("--also", type=int, nargs="*", default=[], metavar="N",
                        help="still: also render with --slices N (a new scene each), for each N given")
    parser.add_argument("--resplit", choices=("both", "on", "off"), default="both",
                        help="still: run each configuration on a node that re-splits the slowest running slice "
                             "(HTTPOV_RESPLIT=1), on one that does not, or on both (default: both, alternating)")
    parser.add_argument("--load-ideal", action="store_true", help="measure the ideal under each round's load too "
                        "(the render processes each rendering the whole scene at once: slow for an animation)")
    args = parser.parse_args()
    still = args.mode == "still"
    width = args.width or (960 if still else 320)
    height = args.height or (720 if still else 240)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-")))
        # one node per re-split setting asked for, each on its own key prefix (neither sees the other's jobs)
        modes = ["on"] if not still else ["on", "off"] if args.resplit == "both" else [args.resplit]
        farms = {}
        for mode in modes:
            (tmp / mode).mkdir()
            farms[mode] = node_farm(stack, tmp / mode, args.concurrency, resplit=mode == "on")
        settings, client = farms[modes[0]]

        def scene(name: str, extra: str = "") -> Path:
            folder = tmp / name
            folder.mkdir(exist_ok=True)
            (folder / "scene.pov").write_text(SCENE.format(tag=name, look=STILL_LOOK if still else ANIMATION_LOOK))
            (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth={width}\nHeight={height}\n{AA}{extra}")
            return folder

        def run(folder: Path, mode: str = modes[0], **options: object) -> tuple[float, int]:
            settings, client = farms[mode]
            started = time.perf_counter()
            sub = client.submit(folder, options=SubmitOptions.parse({"name": folder.name, **options}, settings))
            client.wait(sub.spec.id, poll=0.05, timeout=3600)
            return time.perf_counter() - started, len(client.store.spec(sub.spec.id).batches)  # re-splits included

        tiny = tmp / "tiny"
        tiny.mkdir()
        (tiny / "scene.pov").write_text(SCENE.format(tag="tiny", look=STILL_LOOK))
        (tiny / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=16\nHeight=64\n")
        for _, each in farms.values():  # each node said it lives
            each.wait(each.submit(tiny, slices=2, name="warmup").spec.id, timeout=600)

        animation = f"Initial_Frame=1\nFinal_Frame={args.frames}\nInitial_Clock=0\nFinal_Clock=1\n"
        cpu = _cpu_seconds(scene("cpu", "" if still else animation), tmp)  # its ini: the whole scene
        cores = os.cpu_count() or 1
        ideal = cpu / min(args.concurrency, cores)
        print(f"{args.mode} {width}x{height}: CPU {cpu:.2f}s (povray +WT1); {args.concurrency} render processes "
              f"on {cores} cores: ideal CPU/processes {cpu / args.concurrency:.2f}s, CPU/min(processes, cores) "
              f"{ideal:.2f}s", flush=True)
        times: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        ideals: list[float] = []
        for round_ in range(args.repeat):
            if still and len(modes) == 2:  # a new scene each: no cost profile, the first povray on it
                configs = [(f"{label}, {said}", scene(f"{tag}{round_}{mode}"), {"slices": n, "mode": mode})
                           for label, tag, n in (("slices 4", "four", 4), ("auto, new scene", "auto", "auto"))
                           for mode, said in (("on", "re-split"), ("off", "no re-split"))]
                configs += [(f"slices {n}, {said}", scene(f"n{n}-{round_}{mode}"), {"slices": n, "mode": mode})
                            for n in args.also for mode, said in (("on", "re-split"), ("off", "no re-split"))]
            elif still:
                configs = [("slices 4", scene(f"four{round_}"), {"slices": 4}),
                           ("auto, first", scene(f"auto{round_}"), {"slices": "auto"}),
                           ("slices 4, again", scene(f"four{round_}"), {"slices": 4}),
                           ("auto, planned from the first", scene(f"auto{round_}"), {"slices": "auto"})]
                configs += [(f"slices {n}", scene(f"n{n}-{round_}"), {"slices": n}) for n in args.also]
            else:
                configs = [(f"--count {args.count}", scene(f"fixed{round_}", animation), {"count": args.count}),
                           ("adaptive, tail shrinking", scene(f"tail{round_}", animation), {})]
            # The ideal under this round's load: the render processes each rendering the whole scene at once, the
            # wall time divided by their number (one scene's CPU spread perfectly over them, on the cores we get).
            now = ideal
            if args.load_ideal:
                whole = scene("cpu", "" if still else animation)
                now = _parallel_seconds(whole, tmp, args.concurrency) / args.concurrency
                print(f"round {round_ + 1} ideal under this load: {now:.2f}s", flush=True)
            ideals.append(now)
            for label, folder, options in configs:
                seconds, batches = run(folder, **options)  # type: ignore[arg-type]
                times.setdefault(label, []).append(seconds)
                ratios.setdefault(label, []).append(seconds / now)
                print(f"round {round_ + 1} {label}: {seconds:.2f}s ({batches} batches), "
                      f"{seconds / now:.2f}x this round's ideal", flush=True)
        print(f"ideal under load: median {statistics.median(ideals):.2f}s (min {min(ideals):.2f}, max "
              f"{max(ideals):.2f})")
        for label, values in times.items():
            print(f"{label}: median {statistics.median(values):.2f}s (min {min(values):.2f}, max {max(values):.2f}); "
                  f"{statistics.median(ratios[label]):.2f}x the round's ideal (min {min(ratios[label]):.2f}, "
                  f"max {max(ratios[label]):.2f}) over {len(values)} runs")


def _cpu_seconds(folder: Path, tmp: Path) -> float:
    """User + system seconds of povray +WT1 rendering the whole scene (every frame)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["povray", "pov.ini", "-D", "+WT1", f"+O{tmp}/cpu.png"], cwd=folder, check=True,
                   capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _parallel_seconds(folder: Path, tmp: Path, processes: int) -> float:
    """Wall seconds of `processes` povray +WT1 each rendering the whole scene, all at once."""
    started = time.perf_counter()
    procs = [subprocess.Popen(["povray", "pov.ini", "-D", "+WT1", f"+O{tmp}/par{n}.png"], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(processes)]
    if any(p.wait() for p in procs):
        raise SystemExit("povray failed on the benchmark scene")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
