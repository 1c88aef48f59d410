"""Benchmark (not a test): a 30-frame job on two render nodes whose link to Redis is slow (nodes in another building
or region), against the same job with no delay.

A private redis-server; a delaying TCP proxy in front of it (tests/latency.py: `delay` ms added each way, latency
only); two real render nodes (`celery -A httpov worker`) that reach Redis only through the proxy, `--processes`
render processes each (by default as a user starts one: HTTPOV_RENDER_PROCESSES); the user's client next to Redis.
For each delay (0, 100 and 250 ms each way by default) the nodes start, wait for batches, then the example scene
at 32x24 is submitted (`--count` frames a batch) and timed until it is done (the client only reads the job's
state: every sweep is the nodes'). Reports the wall time and its ratio to the first delay's, the requeue warnings
in the node logs ("never sent", "died before starting", "lost its render node"), the batches rendered twice and
the deliveries that found their batch taken (duplicate, busy, discarded), and the Redis commands per batch (INFO
commandstats over the job, the nodes' idle waits included).
`--repo` measures another checkout (e.g. main's) with the same procedure.

    python scripts/bench_slowlink.py [--delays 0,100,250] [--count N] [--processes N] [--trials 1] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--delays", default="0,100,250", help="ms added each way, comma-separated; the first is the base")
parser.add_argument("--count", type=int, default=None, help="frames a batch (default: httpov's adaptive count)")
parser.add_argument("--processes", type=int, default=None,
                    help="render processes a node (default: as a user starts one, HTTPOV_RENDER_PROCESSES)")
parser.add_argument("--frames", type=int, default=30)
parser.add_argument("--trials", type=int, default=1)
parser.add_argument("--timeout", type=float, default=600.0, help="seconds a job may take before it is given up")
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))
# the render nodes (httpov.celery_main, which ignores the working directory) import httpov from the measured checkout
# too, not from the one installed in the environment
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
BENCH_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(BENCH_ROOT))  # tests.latency, should the measured checkout not have it

import redis  # noqa: E402

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.latency import DelayProxy  # noqa: E402

REQUEUES = ("never sent", "died before starting", "lost its render node")
HANDLED = re.compile(r"httpov: batch (\w+): job=\S+ batch=(\S+)")


def scene(folder: Path) -> Path:
    """examples/spinner at 32x24."""
    shutil.copytree(BENCH_ROOT / "examples" / "spinner", folder)
    ini = folder / "pov.ini"
    text = re.sub(r"(?m)^Width=.*$", "Width=32", ini.read_text())
    ini.write_text(re.sub(r"(?m)^Height=.*$", "Height=24", text))
    return folder


def until(predicate, timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(step)


def commands(r: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def run(url: str, tmp: Path, delay_ms: float, trial: int) -> dict:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    name = f"b{int(delay_ms)}t{trial}"
    here = Settings.from_env({"HTTPOV_BROKER_URL": url, "HTTPOV_STORAGE": str(tmp / "storage"),
                              "HTTPOV_PREFIX": name, "HTTPOV_QUEUE": name, "HTTPOV_CACHE_DIR": str(tmp / "cache"),
                              "HOME": str(tmp)})
    client = Client(here, make_app(here))
    r = redis.Redis.from_url(url, decode_responses=True)
    logs = [tmp / f"{name}-node{n}.log" for n in range(2)]
    with DelayProxy(port, delay_ms / 1000) as proxy:
        far = here.with_(broker_url=proxy.url, state_url=proxy.url)
        nodes = [start_worker(far.with_(cache_dir=tmp / f"cache{n}"), ARGS.processes, f"node{n}-{name}", log)
                 for n, log in enumerate(logs)]
        try:
            until(lambda: len(client.store.live_nodes(within=60)) == 2, 180, "both nodes' heartbeats")
            until(lambda: sum(c["cmd"] == "brpop" for c in r.client_list()) >= 2, 180, "both nodes to take batches")
            before = commands(r)
            started = time.monotonic()
            options = {"count": ARGS.count} if ARGS.count else {}
            sub = client.submit(scene(tmp / f"scene-{name}"), frames=ARGS.frames, **options)
            until(lambda: client.store.state(sub.spec.id) in ("done", "failed", "cancelled"), ARGS.timeout,
                  "the job to finish")
            seconds = time.monotonic() - started
            sent = commands(r) - before
            state = client.store.state(sub.spec.id)
            time.sleep(1.0)  # the last batch's log line
        finally:
            for node in nodes:
                stop_worker(node, grace=10.0)
    text = "".join(log.read_text(errors="replace") for log in logs)
    handled = HANDLED.findall(text)
    rendered = Counter(batch for outcome, batch in handled if outcome == "rendered")
    return {"seconds": seconds, "state": state, "batches": len(sub.spec.batches),
            "requeues": sum(text.count(what) for what in REQUEUES),
            "twice": sum(n - 1 for n in rendered.values() if n > 1),
            "taken": sum(1 for outcome, _ in handled if outcome in ("duplicate", "busy", "discarded")),
            "commands": sent}


def main() -> None:
    delays = [float(d) for d in ARGS.delays.split(",")]
    results: dict[float, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-slowlink-") as tmp, embedded_redis(Path(tmp)) as url:
        for trial in range(ARGS.trials):
            for delay in delays:
                one = run(url, Path(tmp), delay, trial)
                results.setdefault(delay, []).append(one)
                print(f"  {delay:5g} ms trial {trial + 1}: {one['seconds']:6.1f} s {one['state']}, "
                      f"{one['requeues']} requeue warnings, {one['twice']} rendered twice, {one['taken']} found "
                      f"taken, {one['commands'] / one['batches']:.0f} commands a batch", flush=True)
    base = statistics.median(r["seconds"] for r in results[delays[0]])
    processes = ARGS.processes or Settings.from_env({"HOME": "/"}).render_processes  # (the nodes' default)
    print(f"{ARGS.frames} frames at 32x24 in {results[delays[0]][0]['batches']} batches, 2 nodes x {processes} render "
          f"processes ({ROOT}):")
    for delay, runs in results.items():
        median = statistics.median(r["seconds"] for r in runs)
        print(f"{delay:5g} ms each way: median {median:6.1f} s ({median / base:4.1f}x)   requeue warnings "
              f"{sum(r['requeues'] for r in runs)}   rendered twice {sum(r['twice'] for r in runs)}   found taken "
              f"{sum(r['taken'] for r in runs)}   Redis commands a batch "
              f"{statistics.median(r['commands'] / r['batches'] for r in runs):.0f}   ({len(runs)} runs)")


if __name__ == "__main__":
    main()
