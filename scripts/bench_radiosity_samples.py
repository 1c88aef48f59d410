"""Measure: POV-Ray's own radiosity sample scenes sliced on a real farm with the pre-pass, against a single render.

    python scripts/bench_radiosity_samples.py [--size 160x120 --slices 4 --concurrency 4 --scenes cornell,balcony
                                               --off --json out.json]

Scenes: the stills of Debian's povray-examples (/usr/share/doc/povray/examples, or --examples) that render with
radiosity (docs/RADIOSITY.md, issue #27), each copied with its folder into a scene with a pov.ini of --size and
+A0.3. For each scene, in turn:
  single A, B  two `povray -D +WT1` renders of the whole image outside httpov: A is the reference, B against A is
               povray's own spread (0 px differ when the scene is deterministic);
  single +WT2  the same with two render threads (povray's default is one per core): radiosity samples are then
               computed in another order, povray's spread between two ordinary single renders;
  pre-pass     one httpov job in --slices row slices with the default --radiosity-cache auto (probe, pre-pass,
               slices loading its cache) on one real `celery -A httpov worker` of --concurrency render processes;
  off          (with --off) the same slices with --radiosity-cache off, each slice its own pretrace.
Reported: PSNR (8-bit RGB) against A, and the worst slice-edge jump ratio (mean |row r - row r-1| at each slice
edge of the stitched image, divided by A's at the same rows), the job's povray CPU (from its logs) and wall time.
Renders at +WT1 with radiosity are deterministic, so one run per scene measures its quality; rerun for times.
Uses the Redis on HTTPOV_BROKER_URL (default 127.0.0.1:6379) with a private key prefix and queue, or starts its own.
"""
from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_radiosity import povray_cpu, psnr, row_jump  # noqa: E402
from benchfarm import node_farm  # noqa: E402

from httpov.client import Client  # noqa: E402

EXAMPLES = Path("/usr/share/doc/povray/examples")
#: The sample stills that render with radiosity (found by rendering each sample that mentions the word; the _36
#: twins of the _37 scenes differ only in #version). raddem.pov is the animation of rad_def_test.
SCENES = {
    "cornell": "radiosity/cornell.pov",
    "radiosity2": "radiosity/radiosity2.pov",
    "radiosity3": "radiosity/radiosity3.pov",
    "radiosity_37": "radiosity/radiosity_37.pov",
    "rad_def_test_37": "radiosity/rad_def_test_37.pov",
    "patio-radio_37": "radiosity/patio-radio_37.pov",
    "object_pattern": "advanced/object_pattern.pov",
    "diffuse_back": "advanced/diffuse_back.pov",
    "gamma_showcase": "gamma/gamma_showcase.pov",
    "baking_demo": "camera/mesh_camera/baking_demo.pov",
    "balcony": "advanced/balcony/balcony.pov",
    "stackerday": "advanced/blocks/stackerday.pov",
    "stackernight": "advanced/blocks/stackernight.pov",
}
#: Folders of many unrelated samples: copy only the scene's file from these.
SHARED_FOLDERS = {"advanced", "radiosity", "gamma"}


def scene_folder(examples: Path, relative: str, target: Path, width: int, height: int) -> Path:
    """A copy of the sample (its own folder when it has one) with a pov.ini of the measured size."""
    source = examples / relative
    if source.parent.name in SHARED_FOLDERS:
        target.mkdir(parents=True)
        shutil.copy(source, target / source.name)
    else:
        shutil.copytree(source.parent, target)
    (target / "pov.ini").write_text(f"Input_File_Name={source.name}\nWidth={width}\nHeight={height}\n"
                                    "Antialias=on\nAntialias_Threshold=0.3\n")
    return target


def single_render(scene: Path, out: Path, threads: int = 1) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(["povray", "pov.ini", "-D", f"+WT{threads}", "+FN", f"+O{out}"], cwd=scene,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"povray failed on {scene}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, povray_cpu(done.stdout + done.stderr)


def differing(a: Path, b: Path) -> int:
    from PIL import Image

    pa, pb = Image.open(a).convert("RGB").tobytes(), Image.open(b).convert("RGB").tobytes()
    return sum(pa[i:i + 3] != pb[i:i + 3] for i in range(0, len(pa), 3))


def farm_run(client: Client, scene: Path, slices: int, cache: str, single: Path, tmp: Path) -> dict:
    started = time.perf_counter()
    sub = client.submit(scene, slices=slices, radiosity_cache=cache, name=f"{scene.name}-{cache}")
    client.wait(sub.spec.id, poll=0.05, timeout=3600)
    wall = time.perf_counter() - started
    out = tmp / f"out-{sub.spec.id}"
    image = client.fetch(sub.spec.id, out)[0]
    logs = [log.read_text() for log in (out / "logs").glob("*.log")]
    edges = [end for _, end in (sub.spec.slices or [])[:-1]]
    jumps = [row_jump(image, e) / max(row_jump(single, e), 1e-9) for e in edges]
    return {"wall": wall, "cpu": sum(povray_cpu(log) for log in logs), "psnr": psnr(image, single),
            "max_jump_ratio": max(jumps) if jumps else 1.0, "jump_ratios": jumps,
            "prepass": any("-pre" in b for b in sub.spec.batches), "image": str(image)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="render processes on the node")
    parser.add_argument("--scenes", default=",".join(SCENES), help="comma-separated names of: " + ", ".join(SCENES))
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="POV-Ray's sample scenes")
    parser.add_argument("--off", action="store_true", help="also measure the slices with --radiosity-cache off")
    parser.add_argument("--keep", type=Path, help="copy every image here")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed
    width, height = (int(v) for v in args.size.split("x"))
    names = [n for n in args.scenes.split(",") if n]
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        raise SystemExit(f"unknown scenes: {', '.join(unknown)}")
    results: list[dict] = []

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-radsamples-")))
        _, client = node_farm(stack, tmp, args.concurrency)
        for name in names:
            scene = scene_folder(args.examples, SCENES[name], tmp / name, width, height)
            (scene / "httpov-bench.txt").write_text(secrets.token_hex(8))  # never a cache of an earlier run
            a, b = tmp / f"{name}-A.png", tmp / f"{name}-B.png"
            wall, cpu = single_render(scene, a)
            single_render(scene, b)
            two = tmp / f"{name}-WT2.png"
            single_render(scene, two, threads=2)
            spread_edges = [32 * k for k in range(1, args.slices) if 32 * k < height]
            row = {"scene": name, "size": args.size, "single": {"wall": wall, "cpu": cpu},
                   "povray_spread": {"psnr": psnr(b, a), "pixels": differing(a, b),
                                     "max_jump_ratio": max((row_jump(b, e) / max(row_jump(a, e), 1e-9)
                                                            for e in spread_edges), default=1.0)},
                   "threads_spread": {"psnr": psnr(two, a), "pixels": differing(a, two),
                                      "max_jump_ratio": max((row_jump(two, e) / max(row_jump(a, e), 1e-9)
                                                             for e in spread_edges), default=1.0)}}
            for cache in ("auto", "off") if args.off else ("auto",):
                row[cache] = farm_run(client, scene, args.slices, cache, a, tmp)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(a, args.keep / f"{name}-single.png")
                for cache in ("auto", "off"):
                    if cache in row:
                        shutil.copy(row[cache]["image"], args.keep / f"{name}-{cache}.png")
            results.append(row)
            print(json.dumps(row), flush=True)

    print(f"\n{args.size} +A0.3, {args.slices} slices, one node of {args.concurrency} render processes\n")
    head = ("| scene | single CPU s | povray vs itself | povray +WT2 vs +WT1 | pre-pass: PSNR dB | worst edge jump "
            "| CPU s | wall s |")
    print(head + (" off: PSNR dB | off: worst edge jump |" if args.off else ""))
    print("|---" * (head.count("|") - 1 + (2 if args.off else 0)) + "|")
    for r in results:
        spread = r["povray_spread"]
        itself = "identical" if spread["pixels"] == 0 else f"{_db(spread['psnr'])} ({spread['pixels']} px)"
        threads = r["threads_spread"]
        line = (f"| {r['scene']} | {r['single']['cpu']:.2f} | {itself} | {_db(threads['psnr'])} "
                f"(jump {threads['max_jump_ratio']:.2f}) | {_db(r['auto']['psnr'])} | "
                f"{r['auto']['max_jump_ratio']:.2f} | {r['auto']['cpu']:.2f} | {r['auto']['wall']:.2f} |")
        if args.off:
            line += f" {_db(r['off']['psnr'])} | {r['off']['max_jump_ratio']:.2f} |"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _db(value: float) -> str:
    return "identical" if math.isinf(value) else f"{value:.1f}"


if __name__ == "__main__":
    main()
