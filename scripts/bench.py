"""Benchmark (not a test): httpov against povray's own threads, the CPU limit, and its orchestration cost.

    python scripts/bench.py                      # everything, writes docs/PERFORMANCE.md
    python scripts/bench.py path/to/scene.ini    # also a scene of your own (a folder, .ini or .pov)
    python scripts/bench.py --only scenes        # or: orchestration, scale (prints its tables; --output FILE)
    python scripts/bench.py --only scenes --scene diffuse --order --no-b1   # the preview order's cost (bf)
    python scripts/bench.py --only scenes --scene diffuse --prefork --no-b1  # render slots as threads or processes

Runs on a private redis-server (httpov.local_farm.embedded_redis), so the shared Redis and other jobs are untouched.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings, default_render_processes  # noqa: E402
from httpov.worker import waits  # noqa: E402

STUB = ROOT / "scripts" / "povray-stub.sh"
ANIMATIONS = Path("/usr/share/doc/povray/examples/animations")  # Debian's povray-examples
#: Debian's sample animations measured at 320x240 when povray-examples is installed (issue #30 names `diffuse`).
BUILT_IN = ("spinner", "ambient", "diffuse")
TINY = """#version 3.7;
camera { location <0, 0, -4> look_at 0 }
light_source { <2, 4, -3> rgb 1 }
sphere { <clock, 0, 0>, 1 pigment { rgb <1, 0.5, 0> } }
"""


@dataclass
class Scene:
    name: str
    folder: Path  # holds pov.ini
    frames: int = 0
    size: str = ""


@dataclass
class SceneResult:
    scene: Scene
    a: list[float] = field(default_factory=list)  # povray +WT<cores>, whole animation
    b: list[float] = field(default_factory=list)  # httpov, submit to last frame stored
    b1: list[float] = field(default_factory=list)  # the same with one render process per core
    bf: list[float] = field(default_factory=list)  # b with the batches handed out first to last (--order)
    bc: list[float] = field(default_factory=list)  # b with --count frames per batch instead of adaptive (--count)
    bw: list[float] = field(default_factory=list)  # b with povray as it is: HTTPOV_QUICK_WAITS=0 (--waits)
    bp: list[float] = field(default_factory=list)  # b's render slots as processes: HTTPOV_RENDER_POOL=prefork
    counts: list[int] = field(default_factory=list)  # frames per task httpov chose
    cpu: float = 0.0  # CPU seconds of the whole animation in one +WT1 process
    floor: list[float] = field(default_factory=list)  # every frame its own povray, all at once
    floorq: list[float] = field(default_factory=list)  # the same, each povray with httpov's quick waits


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def povray(scene: Scene, out: Path, *extra: str) -> float:
    """One plain povray as a user runs it (HOME apart so no user ini); answers its wall time."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(out))
    started = time.monotonic()
    subprocess.run(["povray", "pov.ini", "-D", f"+O{out}/frame", *extra], cwd=scene.folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def frame_count(folder: Path) -> tuple[int, str]:
    from httpov.plan import frame_range, image_size
    from httpov.scene import locate_scene

    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    _, options = locate_scene(names, lambda n: (folder / n).read_text(errors="replace"), "pov.ini")
    width, height = image_size(options)
    return frame_range(options).count, f"{width}x{height}"


def prepare_scenes(tmp: Path, extra: list[str], built_in: tuple[str, ...] = BUILT_IN) -> list[Scene]:
    """examples/spinner, Debian's `ambient` and `diffuse` at 320x240 when povray-examples is installed (those of
    `built_in`), and the user's."""
    scenes = []
    if "spinner" in built_in:
        spinner = tmp / "scenes" / "spinner"
        shutil.copytree(ROOT / "examples" / "spinner", spinner)
        scenes.append(Scene("spinner", spinner))
    for name in built_in:
        if name != "spinner" and (ANIMATIONS / name).is_dir():
            folder = tmp / "scenes" / name
            shutil.copytree(ANIMATIONS / name, folder)
            (folder / "pov.ini").write_text((folder / f"{name}.ini").read_text() + "\nWidth=320\nHeight=240\n")
            scenes.append(Scene(name, folder))
    for given in extra:
        path = Path(given).resolve()
        source = path if path.is_dir() else path.parent
        folder = tmp / "scenes" / (path.stem or "scene")
        shutil.copytree(source, folder)
        if path.suffix.lower() == ".ini" and path.name != "pov.ini":
            (folder / "pov.ini").write_text(path.read_text())
        elif path.suffix.lower() == ".pov":
            (folder / "pov.ini").write_text(f"Input_File_Name={path.name}\n")
        scenes.append(Scene(path.stem, folder))
    for scene in scenes:
        scene.frames, scene.size = frame_count(scene.folder)
    return scenes


def size_args(scene: Scene) -> list[str]:
    w, h = scene.size.split("x")
    return [f"+W{w}", f"+H{h}"]  # Debian's system povray.ini would otherwise say 800x600


def run_job(client: Client, folder: Path, poll: float = 0.01, timeout: float = 900, **options) -> tuple[float, str]:
    """Submit and wait for the job's record to say finished; answers (seconds submit->finished, job id)."""
    t0 = time.time()
    sub = client.submit(folder, **options)
    deadline = time.monotonic() + timeout
    while True:
        record = client.store.record(sub.spec.id)
        if record.get("finished"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {sub.spec.id} not finished after {timeout}s: {record.get('state')}")
        time.sleep(poll)
    if record["state"] != "done":
        raise SystemExit(f"job {sub.spec.id} ended {record['state']}: {record.get('error', '')}")
    return float(record["finished"]) - t0, sub.spec.id


def settings_for(url: str, tmp: Path, tag: str, **changes) -> Settings:
    return Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix=tag, queue=tag,
                    cache_dir=tmp / f"cache-{tag}", lease_seconds=20.0).with_(**changes)


def warm_up(client: Client, tmp: Path) -> None:
    folder = tmp / "warm"
    folder.mkdir(exist_ok=True)
    (folder / "scene.pov").write_text(TINY)
    (folder / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=8\nHeight=8\n")
    run_job(client, folder, count=1, frames=4)


def bench_scenes(url: str, tmp: Path, scenes: list[Scene], processes: int | None, repeat: int,
                 say, order: bool = False, b1: bool = True, count: int | None = None,
                 without_waits: bool = False, prefork: bool = False) -> list[SceneResult]:
    """a, c and floor of each scene, b with `processes` render processes (None: a bare `celery -A httpov worker`,
    as users type it), b1 with one process per core (Celery's own default, what a bare worker ran before
    HTTPOV_RENDER_PROCESSES) and with `order` bf, b's worker with HTTPOV_BATCH_ORDER=frames (first to last, not
    the preview order) and with `count` bc, b's worker with that many frames per batch, all taking turns in the same
    run (b and bf or bc in alternating order); with `without_waits` bw, b's worker with povray as it is
    (HTTPOV_QUICK_WAITS=0); with `prefork` bp, b's worker with a render process a slot (HTTPOV_RENDER_POOL=prefork),
    where b's slots are threads of its one process."""
    cores = os.cpu_count() or 1
    results = [SceneResult(scene) for scene in scenes]
    library = waits.library_for(settings_for(url, tmp, "scenes-b"), wait=True)  # b's povray's library: floorq's too
    for res in results:
        c0 = children_cpu()
        povray(res.scene, tmp / "out" / res.scene.name / "cpu", "+WT1", *size_args(res.scene))
        res.cpu = children_cpu() - c0
    for rep in range(repeat):
        configs: list[tuple[str, int | None, dict]] = [("b", processes, {})]
        if order:
            configs.insert(rep % 2, ("bf", processes, {"batch_order": "frames"}))
        if count:
            configs.insert(rep % 2, ("bc", processes, {}))
        if without_waits:
            configs.insert(rep % 2, ("bw", processes, {"quick_waits": False}))
        if prefork:
            configs.insert(rep % 2, ("bp", processes, {"render_pool": "prefork"}))
        if b1:
            configs.append(("b1", cores, {}))
        for label, concurrency, changes in configs:
            settings = settings_for(url, tmp, f"scenes-{label}", **changes)
            waits.library_for(settings, wait=True)  # the node's check of its quick waits done, as on a node run before
            worker = start_worker(settings, concurrency, f"bench-{label}", tmp / f"scenes-{label}-worker.log")
            try:
                client = Client(settings, make_app(settings))
                warm_up(client, tmp)
                for res in results:
                    seconds, job = run_job(client, res.scene.folder, **({"count": count} if label == "bc" else {}))
                    getattr(res, label).append(seconds)
                    if label == "b":
                        res.counts.append(client.store.spec(job).count)
            finally:
                stop_worker(worker)
        for res in results:
            scene = res.scene
            res.a.append(povray(scene, tmp / "out" / scene.name / "a", f"+WT{cores}", *size_args(scene)))
            res.floor.append(floor(scene, tmp / "out" / scene.name / "floor"))
            if library is not None:
                res.floorq.append(floor(scene, tmp / "out" / scene.name / "floorq", library))
            say(f"  {scene.name} run {rep + 1}: a={res.a[-1]:.2f}s b={res.b[-1]:.2f}s (count {res.counts[-1]}) "
                + (f"bf={res.bf[-1]:.2f}s b/bf={res.b[-1] / res.bf[-1]:.3f} " if res.bf else "")
                + (f"bc={res.bc[-1]:.2f}s b/bc={res.b[-1] / res.bc[-1]:.3f} " if res.bc else "")
                + (f"bw={res.bw[-1]:.2f}s b/bw={res.b[-1] / res.bw[-1]:.3f} " if res.bw else "")
                + (f"bp={res.bp[-1]:.2f}s b/bp={res.b[-1] / res.bp[-1]:.3f} " if res.bp else "")
                + (f"b1={res.b1[-1]:.2f}s " if res.b1 else "")
                + f"floor={res.floor[-1]:.2f}s b/floor={res.b[-1] / res.floor[-1]:.2f} b/a={res.b[-1] / res.a[-1]:.2f}"
                + (f" floorq={res.floorq[-1]:.2f}s b/floorq={res.b[-1] / res.floorq[-1]:.2f}" if res.floorq else ""))
    return results


def spread(values: list[float]) -> str:
    """'median (min-max)' of per-run figures."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})" if values else "-"


def floor(scene: Scene, out: Path, preload: Path | None = None) -> float:
    """Every frame as its own bare `povray +WT1` process, all started at once (each with httpov's quick waits
    preloaded, if given)."""
    out.mkdir(parents=True, exist_ok=True)
    first = 1
    text = (scene.folder / "pov.ini").read_text()
    for line in text.splitlines():
        if line.strip().lower().startswith("initial_frame"):
            first = int(line.split("=", 1)[1].split(";")[0])
    env = dict(os.environ, HOME=str(out), **({"LD_PRELOAD": str(preload)} if preload else {}))
    started = time.monotonic()
    procs = [subprocess.Popen(["povray", "pov.ini", "-D", "+WT1", f"+O{out}/frame", f"+SF{f}", f"+EF{f}",
                               *size_args(scene)], cwd=scene.folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for f in range(first, first + scene.frames)]
    for p in procs:
        p.wait()
    return time.monotonic() - started


def stub_copy(tmp: Path, sleep: float) -> Path:
    """The stub renderer with its per-frame sleep written in (the sandbox passes it no environment); the
    sandbox shows a renderer outside /usr read-only, as it would a povray built elsewhere."""
    path = tmp / f"httpov-bench-stub-{sleep:g}"
    path.write_text(STUB.read_text().replace("\nSLEEP=0\n", f"\nSLEEP={sleep:g}\n", 1))
    path.chmod(0o755)
    return path


def stub_scene(tmp: Path, name: str, frames: int) -> Path:
    """A scene of `frames` frames at 1x1, the size of the PNG the stub writes (nodes check each frame's size)."""
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / "scene.pov").write_text(TINY)
    (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth=1\nHeight=1\nInitial_Frame=1\n"
                                    f"Final_Frame={frames}\n")
    return folder


def bench_orchestration(url: str, tmp: Path, frames: int, processes: int, say) -> dict:
    """A job of `frames` one-frame tasks with the no-op stub: submit time, Redis bytes per task, tasks/s."""
    settings = settings_for(url, tmp, "orch", povray=str(stub_copy(tmp, 0)))
    client = Client(settings, make_app(settings))
    r = redis.Redis.from_url(url)
    folder = stub_scene(tmp, "orch", frames)
    client.submit(folder, count=1, frames=4)  # the scene is stored and Celery's queue declared once
    used0 = r.info("memory")["used_memory"]
    t0 = time.monotonic()
    sub = client.submit(folder, count=1)
    submit_s = time.monotonic() - t0
    per_task = (r.info("memory")["used_memory"] - used0) / len(sub.spec.batches)
    say(f"  submit of {len(sub.spec.batches)} tasks: {submit_s:.2f}s, {per_task:.0f} bytes/task in Redis")
    worker = start_worker(settings, processes, "orch", tmp / "orch-worker.log")
    try:
        deadline = time.monotonic() + 1800
        while not client.store.record(sub.spec.id).get("finished"):
            if time.monotonic() > deadline:
                raise SystemExit("orchestration job did not finish in 30 minutes")
            time.sleep(0.2)
        record = client.store.record(sub.spec.id)
        if record["state"] != "done":
            raise SystemExit(f"orchestration job {record['state']}: {record.get('error', '')}")
        stored = sorted(info["finished"] for info in client.store.batches(sub.spec.id)["done"].values())
        flow = stored[-1] - stored[0]  # first batch stored to last: the steady flow, worker start-up excluded
    finally:
        stop_worker(worker)
    rate = (len(stored) - 1) / flow
    say(f"  flowed through {processes} render processes in {flow:.1f}s: {rate:.0f} tasks/s")
    return {"tasks": len(sub.spec.batches), "submit": submit_s, "bytes": per_task, "flow": flow, "rate": rate,
            "processes": processes, "state": record["state"]}


def bench_scale(url: str, tmp: Path, workers: int, per_worker: int, sleep: float, rounds: int, say) -> dict:
    """`workers` render nodes of `per_worker` processes (each its own cache), a renderer sleeping `sleep` s/frame."""
    processes = workers * per_worker
    stub = stub_copy(tmp, sleep)
    frames = processes * rounds
    settings = settings_for(url, tmp, "scale", povray=str(stub))
    client = Client(settings, make_app(settings))
    folder = stub_scene(tmp, "scale", frames)
    procs = [start_worker(settings.with_(cache_dir=tmp / f"cache-scale-{i}"), per_worker, f"scale{i}",
                          tmp / f"scale-worker-{i}.log") for i in range(workers)]
    try:
        warm_up(client, tmp)
        results = {}
        for label, count in (("1st submit (no measurement yet)", None), ("2nd submit (adaptive)", None)):
            seconds, job = run_job(client, folder, count=count, timeout=1800)
            spec = client.store.spec(job)
            tasks = len(spec.batches)
            ideal = frames * sleep / processes
            results[label] = {"seconds": seconds, "count": spec.count, "tasks": tasks, "ideal": ideal,
                              "efficiency": ideal / seconds}
            say(f"  {label}: {frames} frames x {sleep}s on {processes} processes, count {spec.count}: "
                f"{seconds:.2f}s, ideal {ideal:.2f}s, efficiency {ideal / seconds:.3f}")
    finally:
        for p in procs:
            stop_worker(p)
    return {"processes": processes, "workers": workers, "frames": frames, "sleep": sleep, "runs": results}


def report(command: str, scenes: list[SceneResult], orch: dict | None, scale: dict | None,
           processes: int | None, load: str) -> str:
    """The run's tables, in Markdown, headed by the command and the machine."""
    cores = os.cpu_count() or 1
    lines = ["# httpov performance", "",
             f"Measured by `{command}` on {platform.node() or 'this machine'}: {cores} cores, "
             f"Python {platform.python_version()}, load average before the run {load}. Every figure below comes "
             "from that one run; numbers are medians over the repetitions. Re-run the command to reproduce.", ""]
    if scenes:
        lines += ["## Animations: httpov against povray's own threads and the CPU limit", "",
                  f"- **a**: one `povray +WT{cores}` renders the whole animation.",
                  (f"- **b**: httpov, a bare `celery -A httpov worker` (no --concurrency: HTTPOV_RENDER_PROCESSES, "
                   f"default 4 per core = {default_render_processes(1)} render processes here)"
                   if processes is None else
                   f"- **b**: httpov, `celery -A httpov worker --concurrency {processes}`")
                  + " already running on this machine, from `submit` to the last frame stored; frames per task "
                  "chosen by httpov (adaptive: the first submit of a scene has no measurement).",
                  f"- **b1**: the same with `--concurrency {cores}`, one render process per core: Celery's own "
                  "default, which a bare worker ran before HTTPOV_RENDER_PROCESSES. b and b1 take turns in each "
                  "repetition.",
                  "- **c**: the CPU limit, CPU seconds of the whole animation (one `povray +WT1`) / cores.",
                  "- **floor**: every frame as its own bare `povray +WT1` process, all at once (no farm can "
                  "beat povray's own sleeps by much).", "",
                  "| scene | frames | size | a (s) | b (s) | b1 (s) | c (s) | floor (s) | b/a | b1/a | b/c | floor/c "
                  "| count per run |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in scenes:
            a, b, fl = (statistics.median(x) for x in (r.a, r.b, r.floor))
            b1 = statistics.median(r.b1) if r.b1 else float("nan")
            c = r.cpu / cores
            lines.append(f"| {r.scene.name} | {r.scene.frames} | {r.scene.size} | {a:.2f} | {b:.2f} | {b1:.2f} | "
                         f"{c:.2f} | {fl:.2f} | {b / a:.2f} | {b1 / a:.2f} | {b / c:.2f} | {fl / c:.2f} | "
                         f"{', '.join(map(str, r.counts))} |")
        lines += ["", "Each run: " + "; ".join(
            f"{r.scene.name} b = {', '.join(f'{x:.2f}' for x in r.b)} s, b1 = {', '.join(f'{x:.2f}' for x in r.b1)} s"
            + (f", bf = {', '.join(f'{x:.2f}' for x in r.bf)} s" if r.bf else "")
            + (f", bc = {', '.join(f'{x:.2f}' for x in r.bc)} s" if r.bc else "")
            + (f", bw = {', '.join(f'{x:.2f}' for x in r.bw)} s" if r.bw else "")
            + (f", bp = {', '.join(f'{x:.2f}' for x in r.bp)} s" if r.bp else "") for r in scenes), "",
            "Ratios within each repetition, median (min-max): " + "; ".join(
            f"{r.scene.name} b/floor {spread([b / f for b, f in zip(r.b, r.floor)])}, "
            + (f"b/floorq (the floor's povrays with quick waits) {spread([b / f for b, f in zip(r.b, r.floorq)])}, "
               if r.floorq else "")
            + f"b/a {spread([b / a for b, a in zip(r.b, r.a)])}"
            + (f", b/bf (the preview order's cost) {spread([b / f for b, f in zip(r.b, r.bf)])}" if r.bf else "")
            + (f", b/bc (adaptive count / a fixed one) {spread([b / c for b, c in zip(r.b, r.bc)])}" if r.bc else "")
            + (f", b/bw (quick waits / povray as it is) {spread([b / w for b, w in zip(r.b, r.bw)])}" if r.bw else "")
            + (f", b/bp (threads / prefork) {spread([b / w for b, w in zip(r.b, r.bp)])}" if r.bp else "")
            for r in scenes), ""]
    if orch:
        lines += ["## Orchestration cost (no-op renderer)", "",
                  "`scripts/povray-stub.sh` stands in for povray (`HTTPOV_POVRAY`): it writes a 1x1 PNG per "
                  "frame and exits; it still runs in httpov's bubblewrap sandbox, as povray would.", "",
                  "| figure | value |", "| --- | --- |",
                  f"| submit of a {orch['tasks']}-frame job, one task per frame | {orch['submit']:.2f} s |",
                  f"| Redis memory per queued task (message + job record) | {orch['bytes']:.0f} bytes |",
                  f"| flow through {orch['processes']} render processes, first batch stored to last | "
                  f"{orch['flow']:.1f} s |",
                  f"| tasks per second | {orch['rate']:.0f} |", ""]
    if scale:
        lines += ["## Scale beyond one machine (simulated)", "",
                  f"{scale['workers']} render nodes (`celery worker` processes with their own scene caches) of "
                  f"{scale['processes'] // scale['workers']} processes each = {scale['processes']} render "
                  f"processes; the stub sleeps {scale['sleep']} s per frame; {scale['frames']} frames. "
                  "Ideal makespan = frames x seconds per frame / processes; efficiency = ideal / measured "
                  "(submit to last frame stored).", "",
                  "| submit | frames per task | tasks | measured (s) | ideal (s) | efficiency |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for label, run in scale["runs"].items():
            lines.append(f"| {label} | {run['count']} | {run['tasks']} | {run['seconds']:.2f} | "
                         f"{run['ideal']:.2f} | {run['efficiency']:.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_report(path: Path, text: str) -> None:
    """`text` in place of the head of `path`, keeping what follows its notes marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    marker = "<!-- notes below are kept by scripts/bench.py -->"
    notes = existing[existing.index(marker):] if marker in existing else marker + "\n"
    path.write_text(text + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", help="more povray scenes: a folder, an .ini or a .pov")
    parser.add_argument("--only", choices=("scenes", "orchestration", "scale"), action="append")
    parser.add_argument("--processes", type=int, default=None,
                        help="render processes for the animations (default: a bare worker, HTTPOV_RENDER_PROCESSES)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scene", choices=BUILT_IN, action="append",
                        help="built-in animations to measure (default: all of them)")
    parser.add_argument("--order", action="store_true",
                        help="also bf: b with HTTPOV_BATCH_ORDER=frames, to measure the preview order's cost")
    parser.add_argument("--no-b1", action="store_true", help="skip b1 (one render process per core)")
    parser.add_argument("--count", type=int, default=None,
                        help="also bc: b with this many frames per batch instead of httpov's adaptive choice")
    parser.add_argument("--waits", action="store_true",
                        help="also bw: b with povray as it is (HTTPOV_QUICK_WAITS=0), taking turns with b")
    parser.add_argument("--prefork", action="store_true",
                        help="also bp: b with a render process a slot (HTTPOV_RENDER_POOL=prefork), taking turns")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks of the orchestration job")
    parser.add_argument("--orch-processes", type=int, default=4 * (os.cpu_count() or 1))
    parser.add_argument("--scale-workers", type=int, default=4)
    parser.add_argument("--scale-per-worker", type=int, default=8)
    parser.add_argument("--scale-sleep", type=float, default=1.0)
    parser.add_argument("--scale-rounds", type=int, default=16, help="frames per render process")
    parser.add_argument("--output", type=Path, default=None,
                        help="write the tables into this file's head (default: docs/PERFORMANCE.md for a run of "
                             "everything; a run with --only prints them, as the file holds the other sections)")
    args = parser.parse_args()
    only = set(args.only or ("scenes", "orchestration", "scale"))
    missing = [name for name in args.scene or () if name != "spinner" and not (ANIMATIONS / name).is_dir()]
    if missing:
        parser.error(f"no scene {', '.join(missing)} in {ANIMATIONS}: install the Debian package povray-examples")
    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    say = lambda text: print(text, flush=True)  # noqa: E731
    scenes = orch = scale = None
    with tempfile.TemporaryDirectory(prefix="httpov-bench-") as name:
        tmp = Path(name)
        with embedded_redis(tmp) as url:
            if "scenes" in only:
                say("animations:")
                built_in = tuple(args.scene or BUILT_IN)
                scenes = bench_scenes(url, tmp, prepare_scenes(tmp, args.scenes, built_in), args.processes,
                                      args.repeat, say, order=args.order, b1=not args.no_b1, count=args.count,
                                      without_waits=args.waits, prefork=args.prefork)
            if "orchestration" in only:
                say("orchestration:")
                orch = bench_orchestration(url, tmp, args.tasks, args.orch_processes, say)
            if "scale" in only:
                say("scale:")
                scale = bench_scale(url, tmp, args.scale_workers, args.scale_per_worker, args.scale_sleep,
                                    args.scale_rounds, say)
    text = report(command.strip(), scenes or [], orch, scale, args.processes, load)
    output = args.output or (ROOT / "docs" / "PERFORMANCE.md" if args.only is None else None)
    if output is None:
        say(text)
    else:
        write_report(output, text)
        say(f"written {output}")


if __name__ == "__main__":
    main()
