"""Benchmark (not a test): what a render node costs per batch outside the renderer, and what an idle node holds.

Three measures, each in a child process that imports httpov from a checkout (this one, or `--repo` another's,
so that a before and an after are measured taking turns in one run):

- `node`: one RenderNode (as a render process builds it) renders N one-frame batches of a 1x1 job in a row with
  the stub renderer (scripts/povray-stub.sh, no sleep) against a private redis-server. CPU per batch from
  os.times(): the process itself (its threads: the lease keeper's too) and its reaped children (bwrap, the stub,
  anything else it starts); `stub` is the stub alone, run directly by the same process the same number of times,
  so `node - stub` is httpov's cost (Python, sandbox, Redis client) and bwrap's.
- `worker`: the same job on a real `celery -A httpov worker --concurrency 2`; CPU per batch of the worker's whole
  process tree (main process, pool children, everything they reaped) from /proc, Celery's own included, and of the
  stub alone run as many times (`tree less stub`: all but the renderer's own CPU).
- `idle`: a node as httpov starts it (the default pool and concurrency), idle after a job that kept every slot
  busy: RSS, PSS and USS from /proc/PID/smaps_rollup of each process that holds render slots (the threads pool's
  one process; each child of a prefork pool: RSS counts the pages a child shares copy-on-write with the parent,
  USS is what it alone holds, PSS shares the shared pages out among their users), and RSS and PSS summed over the
  node's processes.

    python scripts/bench_node.py --turns 3                       # node, worker and idle, this checkout
    python scripts/bench_node.py --turns 3 --repo /tmp/base      # the same, a checkout of `--repo` taking turns
    python scripts/bench_node.py --only node --profile 20        # and a cProfile top-20 of RenderNode.run
    python scripts/bench_node.py --only node --sleep 2 --batches 10   # batches that last, as povray's do
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "scripts" / "povray-stub.sh"
TINY = '#version 3.7;\ncamera { location <0, 0, -3> look_at 0 }\nsphere { 0, 1 pigment { rgb 1 } }\n'
MiB = 1024 * 1024


def _stub(tmp: Path, sleep: float = 0.0) -> Path:
    path = tmp / "httpov-bench-stub"
    path.write_text(STUB.read_text().replace("\nSLEEP=0\n", f"\nSLEEP={sleep:g}\n", 1))
    path.chmod(0o755)
    return path


def _scene(tmp: Path, frames: int) -> Path:
    folder = tmp / "scene"
    folder.mkdir(exist_ok=True)
    (folder / "scene.pov").write_text(TINY)
    (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth=1\nHeight=1\nInitial_Frame=1\n"
                                    f"Final_Frame={frames}\n")
    return folder


def _settings(url: str, tmp: Path, stub: Path):  # noqa: ANN202 - the checkout's own Settings
    from httpov.settings import Settings

    return Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix="benchnode",
                    queue="benchnode", cache_dir=tmp / "cache", lease_seconds=20.0, povray=str(stub))


def _cpu(times: os.times_result) -> tuple[float, float]:
    return times.user + times.system, times.children_user + times.children_system


def measure_node(batches: int, profile: int, sleep: float = 0.0) -> dict:
    """In this process: a RenderNode rendering `batches` stub batches; CPU seconds per batch."""
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis
    from httpov.storage import open_storage
    from httpov.store import open_store
    from httpov.worker.batch import RenderNode
    from httpov.worker.cache import SceneCache

    warm = 5
    with tempfile.TemporaryDirectory(prefix="httpov-bench-node-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        stub = _stub(tmp, sleep)
        settings = _settings(url, tmp, stub)
        client = Client(settings, make_app(settings))
        sub = client.submit(_scene(tmp, warm + 2 * batches), count=1)
        node = RenderNode(settings, open_store(settings), open_storage(settings.storage),
                          SceneCache(settings.cache_dir, settings.cache_max_bytes, settings.archive_limits()))
        ids = list(sub.spec.batches)

        def run(batch_id: str) -> None:
            outcome = node.run(sub.spec.id, batch_id, token=f"t-{batch_id}", node="bench")
            if outcome.status != "rendered":
                raise SystemExit(f"batch {batch_id}: {outcome.status} {outcome.detail}")
        for batch_id in ids[:warm]:  # the povray version, the spec, the scene in the cache, connections
            run(batch_id)
        own0, kids0 = _cpu(os.times())
        wall0 = time.perf_counter()
        for batch_id in ids[warm:warm + batches]:
            run(batch_id)
        wall = time.perf_counter() - wall0
        own1, kids1 = _cpu(os.times())
        stub_cpu = _stub_alone(stub, batches, tmp)
        top = ""
        if profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            for batch_id in ids[warm + batches:]:
                run(batch_id)
            profiler.disable()
            text = io.StringIO()
            for order in ("cumulative", "tottime"):  # the slot's CPU (its thread's): by call, then by function
                pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(profile)
            top = text.getvalue()
    return {"own_ms": 1000 * (own1 - own0) / batches, "children_ms": 1000 * (kids1 - kids0) / batches,
            "stub_ms": 1000 * stub_cpu / batches, "wall_ms": 1000 * wall / batches, "profile": top}


def _stub_alone(stub: Path, batches: int, tmp: Path) -> float:
    """CPU seconds of the stub run directly `batches` times, as a batch runs it (what povray costs the stub's way)."""
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        s0 = _cpu(os.times())[1]
        for n in range(batches):
            subprocess.run([str(stub), f"+O{out}/frame", "+W1", "+H1", "+KFI1", f"+KFF{batches}", f"+SF{n + 1}",
                            f"+EF{n + 1}"], check=True, stdout=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
        return _cpu(os.times())[1] - s0


def _tree(pgid: int) -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds with reaped children, RSS bytes) of every process in process group `pgid`."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[2]) == pgid:
            found[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / tick,
                                      int(fields[21]) * os.sysconf("SC_PAGE_SIZE"))
    return found


def _rollup(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values


def _quiet(pgid: int, children: int, seconds: float, limit: float = 120.0) -> dict[int, tuple[int, float, int]]:
    """Wait until the worker has at least `children` pool processes and its tree used no CPU, and held the same
    processes, for `seconds`."""
    deadline = time.monotonic() + limit
    last, since, seen = -1.0, time.monotonic(), set()
    while time.monotonic() < deadline:
        tree = _tree(pgid)
        cpu = sum(c for _, c, _ in tree.values())
        if (len([p for p, (parent, _, _) in tree.items() if parent == pgid]) >= children and cpu - last < 0.02
                and set(tree) == seen):
            if time.monotonic() - since >= seconds:
                return tree
        else:
            since = time.monotonic()
        last, seen = cpu, set(tree)
        time.sleep(0.5)
    raise SystemExit("the worker did not settle")


def measure_worker(batches: int, processes: int) -> dict:
    """A real worker of `processes` render processes: CPU of its process tree per batch."""
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis, start_worker, stop_worker

    with tempfile.TemporaryDirectory(prefix="httpov-bench-worker-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        stub = _stub(tmp)
        settings = _settings(url, tmp, stub)
        client = Client(settings, make_app(settings))
        worker = start_worker(settings, processes, "benchnode", tmp / "worker.log")
        try:
            warm = client.submit(_scene(tmp, 2 * processes), count=1)
            _done(client, warm.spec.id)
            before = _quiet(worker.pid, 0, 2.0)
            folder = tmp / "job"
            folder.mkdir()
            sub = client.submit(_scene(folder, batches), count=1)
            started = time.perf_counter()
            _done(client, sub.spec.id)
            wall = time.perf_counter() - started
            after = _tree(worker.pid)
        finally:
            stop_worker(worker)
        stub_cpu = _stub_alone(stub, batches, tmp)
    # a pool child replaced meanwhile (worker_max_tasks_per_child) is in its parent's reaped CPU by now
    cpu = sum(c for _, c, _ in after.values()) - sum(c for _, c, _ in before.values())
    return {"tree_ms": 1000 * cpu / batches, "stub_ms": 1000 * stub_cpu / batches, "wall_ms": 1000 * wall / batches}


def _done(client, job_id: str, limit: float = 600.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while not client.store.record(job_id).get("finished"):
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish")
        time.sleep(0.1)
    state = client.store.record(job_id)["state"]
    if state != "done":
        raise SystemExit(f"job {job_id} ended {state}")


def measure_idle(settle: float) -> dict:
    """A render node as httpov starts one (start_worker: `celery -A httpov worker` through httpov.celery_main, the
    default pool and concurrency), idle after a job that kept every slot busy (two one-frame batches a slot, the
    stub renderer): the memory of each process that holds render slots (the threads pool's one process; a prefork
    pool's children), and of the whole node."""
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis, start_worker, stop_worker

    with tempfile.TemporaryDirectory(prefix="httpov-bench-idle-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        settings = _settings(url, tmp, _stub(tmp, sleep=0.5))
        worker = start_worker(settings, None, "benchnode", tmp / "worker.log")
        try:
            client = Client(settings, make_app(settings))
            _done(client, client.submit(_scene(tmp, 2 * settings.render_processes), count=1).spec.id)
            tree = _quiet(worker.pid, 0, settle)
            children = [p for p, (parent, _, _) in tree.items() if parent == worker.pid]
            rollups = [_rollup(p) for p in children or [worker.pid]]  # the processes that hold the render slots
            parent = _rollup(worker.pid)
            everything = [_rollup(p) for p in tree]
            modules = _loaded_libraries((children or [worker.pid])[0])
        finally:
            stop_worker(worker)
    return {"slots": settings.render_processes, "children": len(children),
            "rss": [r["Rss"] / MiB for r in rollups], "pss": [r["Pss"] / MiB for r in rollups],
            "uss": [(r["Private_Clean"] + r["Private_Dirty"]) / MiB for r in rollups],
            "parent_rss": parent["Rss"] / MiB, "node_pss": sum(r["Pss"] for r in everything) / MiB,
            "node_rss": sum(r["Rss"] for r in everything) / MiB, "libraries": modules}


def _loaded_libraries(pid: int) -> list[str]:
    """Extension modules of heavy packages mapped in a process (what its `import`s loaded)."""
    heavy = ("PIL", "boto", "botocore", "flask", "prometheus", "yaml", "rich", "jinja2", "werkzeug", "_ssl",
             "_hashlib", "_decimal", "pydantic")
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1] if line.split() else ""
        if path.endswith(".so") or ".so." in path or ".cpython-" in path:
            found.update(h for h in heavy if f"/{h}" in path or f"{h}." in Path(path).name)
    return sorted(found)


def child(args: argparse.Namespace) -> None:
    if args.only == "node":
        result = measure_node(args.batches, args.profile, args.sleep)
    elif args.only == "worker":
        result = measure_worker(args.batches, 2)
    else:
        result = measure_idle(args.settle)
    import httpov

    result["httpov"] = str(Path(httpov.__file__).parent.parent)
    print(json.dumps(result))


def _turn(kind: str, repo: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    argv = [sys.executable, "-P", str(Path(__file__).resolve()), "--child", "--only", kind,
            "--batches", str(args.batches), "--profile", str(args.profile if kind == "node" else 0),
            "--settle", str(args.settle), "--sleep", str(args.sleep)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {repo} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.splitlines()[-1])
    if Path(result["httpov"]).resolve() != repo.resolve():
        raise SystemExit(f"the child imported httpov from {result['httpov']}, not {repo}")
    return result


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["node", "worker", "idle"], action="append",
                        help="which measures (repeatable; default all three)")
    parser.add_argument("--batches", type=int, default=200, help="batches per measure (default 200)")
    parser.add_argument("--turns", type=int, default=3, help="turns of each checkout (default 3)")
    parser.add_argument("--repo", type=Path, help="another checkout, measured taking turns with this one")
    parser.add_argument("--profile", type=int, default=0, help="print a cProfile top-N of RenderNode.run")
    parser.add_argument("--sleep", type=float, default=0.0,
                        help="node: seconds the stub sleeps per frame, as povray would render (default 0)")
    parser.add_argument("--settle", type=float, default=5.0, help="idle: seconds without CPU before reading")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.only = args.only[0]
        return child(args)
    repos = {"this": ROOT}
    if args.repo:
        repos = {"other": args.repo.resolve(), "this": ROOT}
    results: dict[tuple[str, str], list[dict]] = {}
    for kind in args.only or ["node", "worker", "idle"]:
        for turn in range(args.turns):
            for label, repo in repos.items():
                result = _turn(kind, repo, args)
                results.setdefault((kind, label), []).append(result)
                print(f"{kind} turn {turn + 1} {label} ({repo}): "
                      + json.dumps({k: v for k, v in result.items() if k not in ("profile", "httpov")}), flush=True)
                if result.get("profile") and turn == 0:
                    print(result["profile"])
    print()
    for (kind, label), rows in results.items():
        if kind == "node":
            net = [r["own_ms"] + r["children_ms"] - r["stub_ms"] for r in rows]
            print(f"node {label}: in-process CPU ms/batch {_spread([r['own_ms'] for r in rows])}; children "
                  f"{_spread([r['children_ms'] for r in rows])}; stub alone {_spread([r['stub_ms'] for r in rows])}; "
                  f"node less stub {_spread(net)}; wall {_spread([r['wall_ms'] for r in rows])}")
        elif kind == "worker":
            print(f"worker {label}: process tree CPU ms/batch {_spread([r['tree_ms'] for r in rows])}; stub alone "
                  f"{_spread([r['stub_ms'] for r in rows])}; tree less stub "
                  f"{_spread([r['tree_ms'] - r['stub_ms'] for r in rows])}; wall ms/batch "
                  f"{_spread([r['wall_ms'] for r in rows])}")
        else:
            flat = {m: [v for r in rows for v in r[m]] for m in ("rss", "pss", "uss")}
            print(f"idle {label}: {rows[0]['slots']} render slots in {len(rows[0]['rss'])} process(es) "
                  f"({rows[0]['children']} pool children), MiB each: RSS {_spread(flat['rss'])}; "
                  f"PSS {_spread(flat['pss'])}; USS {_spread(flat['uss'])}; main process RSS "
                  f"{_spread([r['parent_rss'] for r in rows])}; the whole node: RSS summed "
                  f"{_spread([r['node_rss'] for r in rows])}, PSS summed {_spread([r['node_pss'] for r in rows])}, "
                  f"PSS a slot {_spread([r['node_pss'] / r['slots'] for r in rows])}; "
                  f"heavy libraries mapped: {rows[0]['libraries']}")
    if args.repo:
        for kind in args.only or ["node", "worker", "idle"]:
            pairs = list(zip(results[(kind, "this")], results[(kind, "other")], strict=True))
            if kind == "node":
                ratio = [(a["own_ms"] + a["children_ms"] - a["stub_ms"]) / (b["own_ms"] + b["children_ms"]
                                                                              - b["stub_ms"]) for a, b in pairs]
            elif kind == "worker":
                ratio = [a["tree_ms"] / b["tree_ms"] for a, b in pairs]
                net = [(a["tree_ms"] - a["stub_ms"]) / (b["tree_ms"] - b["stub_ms"]) for a, b in pairs]
                print(f"worker tree less stub: this / other per turn {_spread(net)}")
            else:
                for measure in ("rss", "pss", "uss"):
                    ratio = [statistics.median(a[measure]) / statistics.median(b[measure]) for a, b in pairs]
                    print(f"idle {measure.upper()} of a process holding slots: this / other per turn "
                          f"{_spread(ratio)}")
                for measure in ("node_rss", "node_pss"):
                    ratio = [a[measure] / b[measure] for a, b in pairs]
                    print(f"idle {measure}: this / other per turn {_spread(ratio)}")
                continue
            print(f"{kind}: this / other per turn {_spread(ratio)}")


if __name__ == "__main__":
    main()
