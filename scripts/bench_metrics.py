"""Benchmark (not a test): what one Prometheus scrape of a farm costs (httpov.metrics), with `--jobs` jobs.

A private redis-server holds `--jobs` jobs of `--batches` one-frame batches each: a third done (every batch stored
and recorded as a render node does, tests/stored.py), a third with one batch running and one failed attempt, a
third queued, in two render pools, and 20 render nodes. Reports the median and worst time of the exposition
(`Client.metrics`, as `httpov metrics` and `/metrics` build it) over `--trials` scrapes, the Redis commands and
round trips one scrape sends (INFO commandstats), and the exposition's size.

    python scripts/bench_metrics.py [--jobs 500] [--batches 10] [--trials 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--jobs", type=int, default=500)
parser.add_argument("--batches", type=int, default=10)
parser.add_argument("--trials", type=int, default=20)
ARGS = parser.parse_args()
ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402


def commands(r: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def main() -> None:
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis
    from httpov.settings import Settings
    from tests.conftest import write_scene
    from tests.stored import store_batch

    with tempfile.TemporaryDirectory(prefix="httpov-bench-metrics-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), cache_dir=tmp / "cache")
        client = Client(settings, make_app(settings))
        scene = write_scene(tmp / "scene", "#version 3.7;\nbackground { rgb 1 }\n",
                            f"Width=8\nHeight=8\nInitial_Frame=1\nFinal_Frame={ARGS.batches}\n")
        started = time.monotonic()
        for n in range(ARGS.jobs):
            spec = client.submit(scene, count=1, pool="gpu" if n % 2 else None).spec
            if n % 3 == 0:
                client.store.transition(spec.id, "running")
                for batch in spec.batches:
                    store_batch(client, spec.id, batch, {"f.png": b"\x89PNG" + bytes(100)}, "r", log=False)
            elif n % 3 == 1:
                client.store.start_batch(spec.id, spec.batches[0], "t", "node0@h", 600.0)
                client.store.fail_batch(spec.id, spec.batches[1], "x", [], final=False, node="node0@h",
                                        reason="transient")
        for n in range(20):
            client.store.heartbeat(f"node{n}@h", 4)
        print(f"{ARGS.jobs} jobs of {ARGS.batches} batches made in {time.monotonic() - started:.1f} s")
        text = client.metrics()  # warm: imports, scripts
        r = redis.Redis.from_url(url)
        before = commands(r)
        client.metrics()
        sent = commands(r) - before - 1  # INFO itself
        times = []
        for _ in range(ARGS.trials):
            t0 = time.perf_counter()
            client.metrics()
            times.append(time.perf_counter() - t0)
        print(f"one scrape of {ARGS.jobs} jobs: median {statistics.median(times) * 1000:.1f} ms, "
              f"worst {max(times) * 1000:.1f} ms ({ARGS.trials} scrapes)")
        print(f"Redis commands one scrape sends: {sent}, in 2 pipelined round trips; exposition {len(text)} bytes")


if __name__ == "__main__":
    main()
