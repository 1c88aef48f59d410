"""Measure: would one shared photon map save time on POV-Ray's photon sample scenes sliced in rows? And, built, does it?

    python scripts/bench_photon_share.py [--size 160x120 --slices 4 --repeat 3 --scenes grenadine,optics]
    python scripts/bench_photon_share.py --farm [--concurrency 4 --repeat 3 --scenes grenadine,glassthing]

For each scene (copied with its folder from Debian's povray-examples, --examples) and repetition, alternating:
  today    --slices row slices (+SR/+ER on povray's 32-row grid), each `povray -D +WT1 +A0.3` shooting its own
           photons, two at a time;
  shared   a pre-pass rendering two rows (+SR1 +ER2: povray reads +ER1 as the fraction 1.0, the whole image) of
           a copy of the scene with `save_file` put just inside its
           global_settings photons { } block, then the same slices rendering a copy with `load_file` there.
Reported: povray's own CPU seconds (the "using N thread(s) with X CPU-seconds total" lines: photon, radiosity,
trace), of which photon shooting, the wall time of the serial pre-pass, the map's size, and whether each stitched
image is pixel-identical to one `povray -D +WT1` of the whole image. Not httpov code: a measurement of the
design in docs/RADIOSITY.md section 4 on real sample scenes, to decide whether to build it.

--farm measures the design as built: one real `celery -A httpov worker` of --concurrency render processes (warmed
up before the clock runs), each scene (a pov.ini of --size, +A0.3) submitted with --slices slices as
`--photons off` and `--photons shared` in turn, alternating within each repetition; wall time from submit to the
stitched frame stored, CPU povray's own summed over every run of the job (the pre-pass's probe included) from its
logs, and whether each stitched frame is pixel-identical to one `povray -D +WT1` of the whole image. Reported as
the ratio shared / off of each repetition (median; min-max).
"""
from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_radiosity import povray_cpu  # noqa: E402
from benchfarm import node_farm  # noqa: E402
from PIL import Image  # noqa: E402

from httpov.photons import NotShareable, edited  # noqa: E402
from httpov.plan import plan_slices  # noqa: E402
from httpov.worker.photons import loaded_map  # noqa: E402

EXAMPLES = Path("/usr/share/doc/povray/examples")
SCENES = {
    "grenadine": "advanced/grenadine/grenadine.pov",
    "optics": "advanced/optics.pov",
    "glassthing": "lights/glassthing.pov",
    "phot_met_glass": "lights/phot_met_glass.pov",
}
PHOTON_CPU = re.compile(r"Photon Time:.*\n\s*using \d+ thread\(s\) with ([\d.]+) CPU-seconds total")


def povray(folder: Path, scene: str, out: str, size: tuple[int, int], *extra: str) -> tuple[float, float, float]:
    """(wall, CPU, photon CPU) of one povray run."""
    started = time.perf_counter()
    done = subprocess.run(["povray", "-D", "+WT1", f"+W{size[0]}", f"+H{size[1]}", "+A0.3", "+FN", f"+I{scene}",
                           f"+O{out}", *extra], cwd=folder, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"povray failed in {folder}:\n{done.stderr[-2000:]}")
    log = done.stdout + done.stderr
    return time.perf_counter() - started, povray_cpu(log), sum(float(v) for v in PHOTON_CPU.findall(log))


def inject(folder: Path, scene: str, name: str, statement: str) -> str:
    """A copy of the scene with `statement` just inside the photons block of its global_settings: the farm's own
    edit (httpov.photons.edited)."""
    try:
        text = edited((folder / scene).read_text(errors="replace"), statement)
    except NotShareable as exc:
        raise SystemExit(f"{scene}: {exc}") from None
    (folder / name).write_text(text)
    return name


def stitch(folder: Path, parts: list[tuple[int, int]], label: str, width: int) -> bytes:
    pixels = bytearray(Image.open(folder / f"{label}-1.png").convert("RGB").tobytes())
    line = 3 * width
    for first, last in parts:
        part = Image.open(folder / f"{label}-{first}.png").convert("RGB").tobytes()
        pixels[(first - 1) * line:last * line] = part[(first - 1) * line:last * line]
    return bytes(pixels)


def sliced(folder: Path, scene: str, label: str, size: tuple[int, int], parts: list[tuple[int, int]]) -> list:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda p: povray(folder, scene, f"{label}-{p[0]}.png", size, f"+SR{p[0]}", f"+ER{p[1]}"),
                             parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--examples", type=Path, default=EXAMPLES)
    parser.add_argument("--farm", action="store_true", help="measure the farm's shared photon map (--photons)")
    parser.add_argument("--concurrency", type=int, default=4, help="--farm: render processes on the node")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    assert len(size) == 2
    if args.farm:
        return farm(args, size)  # type: ignore[arg-type]
    table = []
    with tempfile.TemporaryDirectory(prefix="httpov-bench-photons-") as tmp:
        for name in args.scenes.split(","):
            source = args.examples / SCENES[name]
            folder = copy_scene(args.examples, name, Path(tmp))
            saving = inject(folder, source.name, "httpov-save.pov", 'save_file "httpov.ph"')
            loading = inject(folder, source.name, "httpov-load.pov", 'load_file "httpov.ph"')
            parts = plan_slices(size[1], slices=args.slices)  # type: ignore[misc]
            single = povray(folder, source.name, "single.png", size)  # type: ignore[arg-type]
            reference = Image.open(folder / "single.png").convert("RGB").tobytes()
            runs: dict[str, list] = {"today": [], "shared": []}
            for rep in range(args.repeat):
                for mode in ("today", "shared"):
                    if mode == "today":
                        cost = sliced(folder, source.name, f"t{rep}", size, parts)  # type: ignore[arg-type]
                        pre = (0.0, 0.0, 0.0)
                    else:
                        (folder / "httpov.ph").unlink(missing_ok=True)
                        pre = povray(folder, saving, "pre.png", size, "+SR1", "+ER2")  # type: ignore[arg-type]
                        cost = sliced(folder, loading, f"s{rep}", size, parts)  # type: ignore[arg-type]
                    label = f"t{rep}" if mode == "today" else f"s{rep}"
                    same = stitch(folder, parts, label, size[0]) == reference
                    runs[mode].append({"cpu": pre[1] + sum(c[1] for c in cost), "photon": sum(c[2] for c in cost),
                                       "pre_wall": pre[0], "pre_cpu": pre[1], "identical": same})
            mb = (folder / "httpov.ph").stat().st_size / 1e6
            table.append((name, single, runs, mb))
            print(name, single, runs, f"{mb:.1f} MB", flush=True)
    print(f"\n{args.size} +A0.3, {args.slices} slices two at a time, {args.repeat} repetitions alternating "
          "(median; min-max)\n")
    print("| scene | single CPU s (photons) | today's slices CPU s (photons) | shared: pre-pass CPU s / wall s "
          "| shared: total CPU s | shared / today | map MB | stitched = single |")
    print("|---|---|---|---|---|---|---|---|")
    for name, single, runs, mb in table:
        today, shared = runs["today"], runs["shared"]
        ratio = [s["cpu"] / t["cpu"] for s, t in zip(shared, today)]
        same = all(r["identical"] for r in today + shared)
        print(f"| {name} | {single[1]:.2f} ({single[2]:.2f}) | {_spread([r['cpu'] for r in today])} "
              f"({statistics.median(r['photon'] for r in today):.2f}) | "
              f"{statistics.median(r['pre_cpu'] for r in shared):.2f} / "
              f"{statistics.median(r['pre_wall'] for r in shared):.2f} | {_spread([r['cpu'] for r in shared])} | "
              f"{_spread(ratio)} | {mb:.1f} | {'yes' if same else 'no'} |")


def copy_scene(examples: Path, name: str, tmp: Path) -> Path:
    """The sample scene `name` copied with its folder (the lights and advanced samples: the file alone)."""
    source = examples / SCENES[name]
    folder = tmp / name
    if source.parent == examples / "advanced" or source.parent.name == "lights":
        folder.mkdir()
        shutil.copy(source, folder)
    else:
        shutil.copytree(source.parent, folder)
    return folder


def farm(args: argparse.Namespace, size: tuple[int, int]) -> None:
    """--farm: each scene sliced on one node, --photons off and shared alternating (see the module's docstring)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still stop the worker when killed
    table = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-bench-photons-farm-")))
        _, client = node_farm(stack, tmp, args.concurrency)
        warm = tmp / "warm"
        warm.mkdir()
        (warm / "scene.pov").write_text("camera { location -3*z look_at 0 } sphere { 0, 1 pigment { rgb 1 } }\n")
        (warm / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=32\nHeight=32\n")
        client.wait(client.submit(warm, slices=1, name="warmup").spec.id, timeout=600)
        for name in args.scenes.split(","):
            folder = copy_scene(args.examples, name, tmp)
            (folder / "pov.ini").write_text(f"Input_File_Name={Path(SCENES[name]).name}\nWidth={size[0]}\n"
                                            f"Height={size[1]}\nAntialias=on\nAntialias_Threshold=0.3\n")
            done = subprocess.run(["povray", "pov.ini", "-D", "+WT1", "+FN", "+Osingle.png"], cwd=folder,
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL)
            reference = Image.open(folder / "single.png").convert("RGB").tobytes()
            single_cpu = povray_cpu(done.stdout + done.stderr)
            runs: dict[str, list[dict]] = {"off": [], "shared": []}
            notes: set[str] = set()
            for rep in range(args.repeat):
                for mode in ("off", "shared") if rep % 2 == 0 else ("shared", "off"):
                    started = time.perf_counter()
                    sub = client.submit(folder, slices=args.slices, photons=mode, name=f"{name}-{mode}")
                    client.wait(sub.spec.id, poll=0.05, timeout=3600)
                    wall = time.perf_counter() - started
                    out = tmp / f"out-{sub.spec.id}"
                    image = client.fetch(sub.spec.id, out)[0]
                    logs = [log.read_text() for log in (out / "logs").glob("*.log")]
                    notes.update(n for n in sub.notes if "photon" in n)
                    runs[mode].append({"wall": wall, "cpu": sum(povray_cpu(log) for log in logs),
                                       "identical": Image.open(image).convert("RGB").tobytes() == reference,
                                       "planned": sub.spec.photons,
                                       "loaded": sum(loaded_map(log) for log in logs)})
                    print(name, mode, runs[mode][-1], flush=True)
            table.append((name, single_cpu, runs, notes))
    print(f"\n{args.size} +A0.3, {args.slices} slices, one node of {args.concurrency} render processes, "
          f"{args.repeat} repetitions, off and shared alternating (median; min-max)\n")
    print("| scene | single CPU s | off: wall s / CPU s | shared: wall s / CPU s | wall shared/off | CPU shared/off "
          "| slices loading the map | stitched = single |")
    print("|---|---|---|---|---|---|---|---|")
    for name, single_cpu, runs, notes in table:
        off, shared = runs["off"], runs["shared"]
        same = all(r["identical"] for r in off + shared)
        print(f"| {name} | {single_cpu:.2f} | {_spread([r['wall'] for r in off])} / {_spread([r['cpu'] for r in off])} "
              f"| {_spread([r['wall'] for r in shared])} / {_spread([r['cpu'] for r in shared])} "
              f"| {_spread([s['wall'] / o['wall'] for s, o in zip(shared, off)])} "
              f"| {_spread([s['cpu'] / o['cpu'] for s, o in zip(shared, off)])} "
              f"| {statistics.median(r['loaded'] for r in shared):.0f} | {'yes' if same else 'no'} |")
        for note in sorted(notes):
            print(f"  {name}: {note}")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
