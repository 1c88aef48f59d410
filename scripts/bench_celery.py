"""Benchmark (not a test): the ceiling Celery itself sets on batches per second, with no render at all.

Queues N render_batch messages for a job that does not exist, so each task makes one Redis call and returns,
then times a real `celery -A httpov worker` draining them. Compare with `scripts/bench.py`'s no-op renderer
flow to see what the render path adds. Uses a private redis-server.

    python scripts/bench_celery.py --tasks 3000 --processes 8
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from httpov.broker import QueueLayout
from httpov.celery import make_app
from httpov.dispatch import enqueue
from httpov.local_farm import embedded_redis, start_worker, stop_worker
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="httpov-bench-celery-") as name, embedded_redis(Path(name)) as url:
        settings = Settings(broker_url=url, state_url=url, storage=f"{name}/storage", cache_dir=Path(name) / "c",
                            prefix="bench", queue="bench")
        spec = JobSpec(id="no-such-job", name="x", scene_key="", root="", pov="x.pov", options={}, initial=1,
                       final=args.tasks, first=1, last=args.tasks, width=1, height=1, count=1)
        app = make_app(settings)
        layout = QueueLayout.of(app)
        enqueue(app, spec, [Batch(n, n).id for n in range(1, args.tasks + 1)], settings.queue)
        r = redis.Redis.from_url(url)

        def left() -> int:
            return sum(r.llen(key) for key in layout.lists(settings.queue)) + r.hlen(layout.unacked)

        log = Path(name) / "worker.log"
        worker = start_worker(settings, args.processes, "bench", log)
        try:
            while left() == args.tasks:
                time.sleep(0.01)
            started = time.perf_counter()
            while left() > 0:
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            stop_worker(worker)
        print(f"{args.tasks} no-op tasks through {args.processes} processes: {seconds:.1f} s, "
              f"{args.tasks / seconds:.0f} tasks/s")


if __name__ == "__main__":
    main()
