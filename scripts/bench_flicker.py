"""Benchmark: frame-to-frame flicker of a radiosity animation on the farm, --radiosity-cache auto, shared and off.

    python scripts/bench_flicker.py [--frames 10 --size 160x120 --slices 4 --concurrency 4 --repeat 2 --json out.json]

Two animations of scripts/research/scenes/room.pov (radiosity only, +A0.3), --frames frames over clock 0..1:
  camera   the camera flies through the static room (room.pov's own clock use: geometry and lights stay put);
  object   the camera stands still (frame 1's view) and a red ball rolls across the floor (geometry moves).
Each is rendered by plain `povray +WT1` in one process (the reference: what a single machine gives), and on the
farm as a job in --slices row slices per frame (0: whole frames, `--count` frames per batch) with each radiosity
mode, in turn (off, auto, shared, and again):
  off     every batch runs its own radiosity pretrace (a slice over its rows only);
  auto    one pre-pass per frame, loaded by that frame's slices (unsliced frames: the same as off);
  shared  one pre-pass on frame 1, loaded by every batch of every frame.
Figures per run, each also given for the single-process reference S:
  flicker  mean |F(i+1) - F(i)| over all pixels and channels, averaged over the frame pairs (what changes between
           frames, motion included), and its ratio to the reference's;
  static   the same over the pixels where a converged render C of the animation (radiosity count 200,
           nearest_count 10, plain povray) changes by at most 2/255 in every channel: change where nothing moves,
           i.e. radiosity noise that flickers;
  error    mean |F(i) - C(i)| over pixels, channels and frames: how far the lighting is from the converged one
           (a cache shared over moving geometry lights it wrongly);
  PSNR     of each frame against the reference's (median); wall time from submit to the last frame stored;
           povray's CPU from its logs.
One real `celery -A httpov worker` of
--concurrency render processes, started and warmed up before the clock runs; each run submits a copy of the scene
with a new comment, so no cache is reused. Uses the Redis on HTTPOV_BROKER_URL (default 127.0.0.1:6379) with a
private key prefix and queue, or starts its own.
"""
from __future__ import annotations

import argparse
import json
import math
import secrets
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
sys.path.insert(0, str(REPO / "scripts"))

# still_flicker: frame-to-frame change over the pixels the converged render keeps still
from bench_radiosity import _spread, povray_cpu, rgb  # noqa: E402
from bench_radiosity import flicker as still_flicker  # noqa: E402
from benchfarm import node_farm  # noqa: E402

ROOM = REPO / "scripts" / "research" / "scenes" / "room.pov"
MODES = ("off", "auto", "shared")
#: The moving-object animation: room.pov seen from its clock-0 camera (the last camera of a scene is the one
#: povray uses), with a ball rolling across the floor in the sunlit part of the room.
BALL = """#include "room.pov"
camera { location <-1.6, 1.5, -2.6> look_at <0.3, 1.0, 1.5> angle 70 }
sphere { <-1.6 + 3.0*clock, 0.35, 0.4>, 0.35 pigment { color rgb <0.9, 0.15, 0.1> } }
"""
SCENES = {"camera": "room.pov", "object": "ball.pov"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--slices", type=int, default=4, help="row slices per frame (0: whole frames)")
    parser.add_argument("--count", type=int, default=5, help="frames per batch when --slices 0")
    parser.add_argument("--concurrency", type=int, default=4, help="render processes on the node")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scenes", default="camera,object", help="which animations: camera, object")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed
    width, height = (int(v) for v in args.size.split("x"))
    scenes = args.scenes.split(",")
    if args.frames < 2 or any(s not in SCENES for s in scenes):
        raise SystemExit("give --frames >= 2 and --scenes from camera, object")
    results: list[dict] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-flicker-")))
        _, client = node_farm(stack, tmp, args.concurrency)
        warm = _animation(tmp / "warm", "camera", 32, 32, 2, "warm-up")
        client.wait(client.submit(warm, slices=1, name="warmup").spec.id, timeout=600)
        for scene_name in scenes:
            reference, converged = _references(tmp / f"ref-{scene_name}", scene_name, width, height, args.frames)
            ref = {"flicker": flicker(reference), "static": still_flicker(reference, converged),
                   "error": error(reference, converged)}
            print(json.dumps({"scene": scene_name, "reference": ref}), flush=True)
            for rep in range(args.repeat):
                for mode in MODES:
                    scene = _animation(tmp / f"{scene_name}-{mode}-{rep}", scene_name, width, height, args.frames,
                                       f"{mode} {rep} {secrets.token_hex(4)}")
                    cut = {"slices": args.slices} if args.slices else {"count": args.count}
                    started = time.perf_counter()
                    sub = client.submit(scene, radiosity_cache=mode, name=f"flicker-{mode}", **cut)
                    client.wait(sub.spec.id, poll=0.05, timeout=3600)
                    wall = time.perf_counter() - started
                    out = tmp / f"out-{sub.spec.id}"
                    images = sorted(client.fetch(sub.spec.id, out))
                    cpu = sum(povray_cpu(log.read_text()) for log in (out / "logs").glob("*.log"))
                    f = flicker(images)
                    row = {"scene": scene_name, "mode": mode, "rep": rep, "wall": wall, "cpu": cpu, "flicker": f,
                           "reference": ref, "ratio": f / ref["flicker"],
                           "static": still_flicker(images, converged), "error": error(images, converged),
                           "psnr": statistics.median(psnr(a, b) for a, b in zip(images, reference))}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    cut_said = f"{args.slices} slices per frame" if args.slices else f"whole frames, {args.count} per batch"
    print(f"\n{args.frames} frames at {width}x{height} +A0.3, {cut_said}, one node of {args.concurrency} render "
          f"processes, {args.repeat} repetitions (median; min-max)\n")
    print("| animation | radiosity | flicker | / reference's | static flicker | error vs converged "
          "| PSNR vs reference dB | wall s | povray CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scene_name in scenes:
        rows = [r for r in results if r["scene"] == scene_name]
        ref = rows[0]["reference"]
        print(f"| {scene_name} | single povray (reference) | {ref['flicker']:.3f} | 1.00 | {ref['static']:.3f} | "
              f"{ref['error']:.3f} | reference | | |")
        for mode in MODES:
            rows = [r for r in results if r["scene"] == scene_name and r["mode"] == mode]
            med = {k: statistics.median(r[k] for r in rows) for k in ("flicker", "ratio", "static", "error", "psnr")}
            print(f"| {scene_name} | {mode} | {med['flicker']:.3f} | {med['ratio']:.2f} | {med['static']:.3f} | "
                  f"{med['error']:.3f} | {med['psnr']:.1f} | {_spread([r['wall'] for r in rows])} | "
                  f"{_spread([r['cpu'] for r in rows])} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def flicker(images: list[Path]) -> float:
    """Mean absolute change between consecutive frames, over all pixels and channels, averaged over the pairs."""
    frames = [rgb(p)[1] for p in images]
    return statistics.mean(sum(abs(x - y) for x, y in zip(a, b)) / len(a) for a, b in zip(frames, frames[1:]))


def error(images: list[Path], converged: list[Path]) -> float:
    """Mean absolute difference from the converged render, over pixels, channels and frames."""
    diffs = []
    for a, c in zip(images, converged):
        pa, pc = rgb(a)[1], rgb(c)[1]
        diffs.append(sum(abs(x - y) for x, y in zip(pa, pc)) / len(pa))
    return statistics.mean(diffs)


def psnr(a: Path, b: Path) -> float:
    pa, pb = rgb(a)[1], rgb(b)[1]
    mse = sum((x - y) ** 2 for x, y in zip(pa, pb)) / len(pa)
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def _animation(folder: Path, scene: str, width: int, height: int, frames: int, comment: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "room.pov").write_text(f"// {comment}\n" + ROOM.read_text())
    if scene == "object":
        (folder / "ball.pov").write_text(BALL)
    (folder / "pov.ini").write_text(f"Input_File_Name={SCENES[scene]}\nWidth={width}\nHeight={height}\n"
                                    "Antialias=on\nAntialias_Threshold=0.3\n"
                                    f"Initial_Frame=1\nFinal_Frame={frames}\nInitial_Clock=0\nFinal_Clock=1\n")
    return folder


def _references(folder: Path, scene: str, width: int, height: int, frames: int) -> tuple[list[Path], list[Path]]:
    """The animation rendered by one `povray +WT1` process (per-frame radiosity, as on a single machine), and a
    converged render of it (more radiosity rays: what the lighting should be), both by plain povray at once."""
    _animation(folder, scene, width, height, frames, "reference")
    (folder / "conv.pov").write_text(f'#include "{SCENES[scene]}"\n'
                                     "global_settings { radiosity { count 200 nearest_count 10 } }\n")
    runs = [subprocess.Popen(["povray", "pov.ini", "-D", "+WT1", "+FN", f"+O{folder}/{out}", *extra], cwd=folder,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for out, extra in (("ref", []), ("conv", ["+Iconv.pov"]))]
    failed = [run.wait() for run in runs]
    reference, converged = sorted(folder.glob("ref*.png")), sorted(folder.glob("conv*.png"))
    if any(failed) or len(reference) != frames or len(converged) != frames:
        raise SystemExit(f"the single-process reference of the {scene} animation failed")
    return reference, converged


if __name__ == "__main__":
    main()
