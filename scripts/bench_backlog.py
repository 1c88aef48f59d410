"""Benchmark (not a test): how long GET /api/backlog's call (httpov.view.backlog) takes, what KEDA polls every 15 s.

A private redis-server holds `--jobs` queued jobs of `--frames` one-frame batches each (the example scene), half of
each job's batches recorded done as a render node records them. Reports the median and worst wall time of
backlog() over `--trials` calls, and its answer.

    python scripts/bench_backlog.py [--jobs 20] [--frames 1000] [--trials 9]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--jobs", type=int, default=20)
parser.add_argument("--frames", type=int, default=1000)
parser.add_argument("--trials", type=int, default=9)
ARGS = parser.parse_args()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.states import JobState  # noqa: E402
from httpov.view import backlog  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, embedded_redis(Path(tmp)) as url:
        settings = Settings(broker_url=url, state_url=url, storage=str(Path(tmp) / "storage"), prefix="bench",
                            queue="bench")
        client = Client(settings, make_app(settings))
        store = client.store
        for n in range(ARGS.jobs):
            job = client.submit(ROOT / "examples" / "spinner", frames=ARGS.frames, count=1, name=f"job{n}").spec.id
            store.transition(job, JobState.RUNNING)
            for batch in store.spec(job).batches[: ARGS.frames // 2]:
                assert store.start_batch(job, batch, "tok", "n@h", 60.0) == "ok"
                store.finish_batch(job, batch, {"node": "n@h", "seconds": 0.1, "frames": 1,
                                                "finished": time.time()}, [int(batch[1:7])], "tok")
        backlog(store)
        times = []
        for _ in range(ARGS.trials):
            started = time.monotonic()
            answer = backlog(store)
            times.append(time.monotonic() - started)
        print(f"backlog() of {ARGS.jobs} jobs x {ARGS.frames} batches: median {statistics.median(times):.3f} s, "
              f"worst {max(times):.3f} s ({ARGS.trials} calls): {answer}")


if __name__ == "__main__":
    main()
