"""Benchmark: sliced radiosity stills with and without the pre-pass, against one povray render of the whole image.

    python scripts/bench_radiosity.py [--sizes 160x120,320x240 --slices 4 --concurrency 4 --repeat 3 --json out.json]
    python scripts/bench_radiosity.py --fly 10 [--repeat 2]     # --radiosity-cache shared on a camera fly-through

Scene: scripts/research/scenes/room.pov (a room lit through a window, radiosity only), +A0.3. For each size and
repetition it runs, in turn:
  single      `povray -D +WT1` on the whole image, outside httpov: the reference image, its wall and CPU time;
  farm whole  one httpov job, no slices (one batch);
  today       the image in --slices row slices, --radiosity-cache off (each slice its own pretrace);
  pre-pass    the same slices, --radiosity-cache auto, cache not stored yet (pre-pass, then slices);
  reused      the same again, the cache stored by the previous job (slices only).
Farm runs use one real `celery -A httpov worker` (--concurrency render processes, started and warmed up before the
clock runs); wall time runs from submit to the stitched frame being stored. CPU is povray's own, summed over
every povray run of the job (probe, pre-pass, slices) from the "using N thread(s) with X CPU-seconds total"
lines of their logs (photon, radiosity and trace phases; parsing and povray's start are not in it, and the
sandbox hides povray from rusage). PSNR (8-bit RGB) and edge jumps (mean |row r - row r-1| at each slice
edge, sliced / single) are against the single render. Each repetition submits a copy of the scene with a
different comment, so its pre-pass is never reused from an earlier repetition. Uses the Redis on
HTTPOV_BROKER_URL (default 127.0.0.1:6379) with a private key prefix and queue, or starts its own.
"""
from __future__ import annotations

import argparse
import json
import math
import re
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

from benchfarm import node_farm  # noqa: E402
from PIL import Image  # noqa: E402

from httpov.client import Client  # noqa: E402

ROOM = REPO / "scripts" / "research" / "scenes" / "room.pov"
MODES = ("farm whole", "today", "pre-pass", "reused")
CPU_LINE = re.compile(r"using \d+ thread\(s\) with ([\d.]+) CPU-seconds total")


def povray_cpu(log: str) -> float:
    """CPU seconds povray reports for its photon, radiosity and trace phases."""
    return sum(float(v) for v in CPU_LINE.findall(log))


def rgb(path: Path) -> tuple[int, bytes]:
    image = Image.open(path).convert("RGB")
    return image.width, image.tobytes()


def psnr(a: Path, b: Path) -> float:
    (_, pa), (_, pb) = rgb(a), rgb(b)
    mse = sum((x - y) ** 2 for x, y in zip(pa, pb)) / len(pa)
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def row_jump(path: Path, row: int) -> float:
    width, px = rgb(path)
    line = 3 * width
    return sum(abs(x - y) for x, y in zip(px[(row - 1) * line:row * line], px[row * line:(row + 1) * line])) / line


def single_render(scene: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (as povray reports them) of one `povray +WT1` on the whole image."""
    started = time.perf_counter()
    done = subprocess.run(["povray", "pov.ini", "-D", "+WT1", "+FN", f"+O{out}"], cwd=scene, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"povray failed on {scene}")
    return time.perf_counter() - started, povray_cpu(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="160x120,320x240")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="render processes on the node")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--fly", type=int, help="instead: a fly-through of this many frames at 160x120, per-frame "
                        "radiosity against --radiosity-cache shared (flicker, wall, CPU)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results: list[dict] = []

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-rad-")))
        _, client = node_farm(stack, tmp, args.concurrency)
        warm = _scene(tmp / "warm", 32, 32, "warm-up")
        client.wait(client.submit(warm, slices=1, name="warmup").spec.id, timeout=600)
        if args.fly:
            return fly(args, client, tmp)

        for width, height in sizes:
            for rep in range(args.repeat):
                scene = _scene(tmp / f"room{width}x{height}-{rep}", width, height, f"rep {rep} {secrets.token_hex(4)}")
                single = tmp / f"single{width}x{height}-{rep}.png"
                wall, cpu = single_render(scene, single)
                row = {"size": f"{width}x{height}", "rep": rep, "single": {"wall": wall, "cpu": cpu}}
                for mode in MODES:
                    slices = None if mode == "farm whole" else args.slices
                    cache = "off" if mode == "today" else "auto"
                    started = time.perf_counter()
                    sub = client.submit(scene, slices=slices, radiosity_cache=cache, name=mode.replace(" ", "-"))
                    client.wait(sub.spec.id, poll=0.05, timeout=3600)
                    wall = time.perf_counter() - started
                    out = tmp / f"out-{sub.spec.id}"
                    image = client.fetch(sub.spec.id, out)[0]
                    cpu = sum(povray_cpu(log.read_text()) for log in (out / "logs").glob("*.log"))
                    edges = [end for _, end in (sub.spec.slices or [])[:-1]]
                    jumps = [row_jump(image, e) / max(row_jump(single, e), 1e-9) for e in edges]
                    row[mode] = {"wall": wall, "cpu": cpu, "psnr": psnr(image, single),
                                 "max_jump_ratio": max(jumps) if jumps else 1.0, "jump_ratios": jumps,
                                 "prepass_batches": sum(b.endswith("-pre") for b in sub.spec.batches)}
                results.append(row)
                print(json.dumps(row), flush=True)

    print(f"\nroom.pov, +A0.3, {args.slices} slices, one node of {args.concurrency} render processes, "
          f"{args.repeat} repetitions (median; min-max)\n")
    print("| size | run | wall s | CPU s | CPU / today's slices | PSNR vs single dB | max edge jump ratio |")
    print("|---|---|---|---|---|---|---|")
    for width, height in sizes:
        rows = [r for r in results if r["size"] == f"{width}x{height}"]
        today_cpu = [r["today"]["cpu"] for r in rows]
        for mode in ("single", *MODES):
            wall = [r[mode]["wall"] for r in rows]
            cpu = [r[mode]["cpu"] for r in rows]
            ratio = statistics.median(c / t for c, t in zip(cpu, today_cpu))
            quality = ("reference", "1.00") if mode == "single" else (
                f"{statistics.median(r[mode]['psnr'] for r in rows):.1f}",
                f"{statistics.median(r[mode]['max_jump_ratio'] for r in rows):.2f}")
            print(f"| {width}x{height} | {mode} | {_spread(wall)} | {_spread(cpu)} | {ratio:.2f} | {quality[0]} "
                  f"| {quality[1]} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def fly(args: argparse.Namespace, client: Client, tmp: Path) -> None:
    """A camera fly-through of the static room (research section 5): per-frame radiosity against one shared cache.

    Flicker is measured where the scene does not change from frame to frame: pixel p is static between frames i
    and i+1 if a well-converged reference sequence (radiosity count 200, nearest_count 10, rendered here by plain
    povray) changes there by at most 2/255 in every channel; flicker = mean |F(i+1) - F(i)| over static pixels
    and channels, averaged over the frame pairs."""
    frames, width, height = args.fly, 160, 120
    ini = (f"Width={width}\nHeight={height}\nAntialias=on\nAntialias_Threshold=0.3\nInitial_Frame=1\n"
           f"Final_Frame={frames}\nInitial_Clock=0\nFinal_Clock=1\n")
    ref = tmp / "fly-ref"
    ref.mkdir()
    (ref / "room.pov").write_text(ROOM.read_text())
    (ref / "conv.pov").write_text('#include "room.pov"\nglobal_settings { radiosity { count 200 nearest_count 10 } }\n')
    (ref / "pov.ini").write_text("Input_File_Name=conv.pov\n" + ini)
    half = (frames + 1) // 2
    procs = [subprocess.Popen(["povray", "pov.ini", "-D", "+WT1", "+FN", f"+O{ref}/r", f"+SF{a}", f"+EF{b}"], cwd=ref,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a, b in ((1, half),
                                                                                                 (half + 1, frames))]
    if any(p.wait() for p in procs):
        raise SystemExit("the converged reference failed")
    reference = sorted(ref.glob("r*.png"))
    results = []
    for rep in range(args.repeat):
        scene = tmp / f"fly-{rep}"
        scene.mkdir()
        (scene / "room.pov").write_text(f"// rep {rep} {secrets.token_hex(4)}\n" + ROOM.read_text())
        (scene / "pov.ini").write_text("Input_File_Name=room.pov\n" + ini)
        for mode in ("off", "shared"):
            started = time.perf_counter()
            sub = client.submit(scene, count=half, radiosity_cache=mode, name=f"fly-{mode}")
            client.wait(sub.spec.id, poll=0.05, timeout=3600)
            wall = time.perf_counter() - started
            out = tmp / f"out-{sub.spec.id}"
            images = client.fetch(sub.spec.id, out)
            cpu = sum(povray_cpu(log.read_text()) for log in (out / "logs").glob("*.log"))
            row = {"mode": mode, "rep": rep, "wall": wall, "cpu": cpu, "flicker": flicker(images, reference)}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nroom.pov fly-through, {frames} frames at {width}x{height} +A0.3, batches of {half} frames, one node of "
          f"{args.concurrency} render processes, {args.repeat} repetitions (median; min-max)\n")
    print("| radiosity | wall s | povray CPU s | flicker in static regions |")
    print("|---|---|---|---|")
    for mode, label in (("off", "per frame (today)"), ("shared", "--radiosity-cache shared")):
        rows = [r for r in results if r["mode"] == mode]
        print(f"| {label} | {_spread([r['wall'] for r in rows])} | {_spread([r['cpu'] for r in rows])} | "
              f"{statistics.median(r['flicker'] for r in rows):.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def flicker(images: list[Path], reference: list[Path]) -> float:
    """Mean frame-to-frame change over the pixels the converged reference keeps (nearly) still."""
    pairs = []
    for i in range(len(images) - 1):
        a, b = rgb(images[i])[1], rgb(images[i + 1])[1]
        ra, rb = rgb(reference[i])[1], rgb(reference[i + 1])[1]
        total = count = 0
        for p in range(0, len(a), 3):
            if all(abs(ra[p + c] - rb[p + c]) <= 2 for c in range(3)):
                total += sum(abs(a[p + c] - b[p + c]) for c in range(3))
                count += 3
        pairs.append(total / count if count else 0.0)
    return statistics.mean(pairs)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _scene(folder: Path, width: int, height: int, comment: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "room.pov").write_text(f"// {comment}\n" + ROOM.read_text())
    (folder / "pov.ini").write_text(f"Input_File_Name=room.pov\nWidth={width}\nHeight={height}\n"
                                    "Antialias=on\nAntialias_Threshold=0.3\n")
    return folder


if __name__ == "__main__":
    main()
