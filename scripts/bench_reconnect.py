"""Benchmark: how soon an idle render node takes batches again once Redis is back from an outage.

For each outage length: a private redis-server (append-only, so the restart keeps its data) and one idle
`celery -A httpov worker` on it; Redis is stopped for the outage, started again, and a one-frame job is submitted
at once. We time Redis back -> the job's batch running on the node: how long the node lags the outage's end (a
one-frame job without an outage, measured first, is the floor).

    python scripts/bench_reconnect.py [--outages 2 10 30] [--repeat 2]
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchfarm import until  # noqa: E402

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import free_port, start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from tests.conftest import TINY_ANIMATION, write_scene  # noqa: E402
from tests.integration.faults import redis_server  # noqa: E402


def _started(client: Client, work: Path, name: str) -> float:
    """Seconds from submit to the one-frame job's batch taken by a node (running or done)."""
    began = time.monotonic()
    sub = client.submit(write_scene(work / name, TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF1\n"), count=1)
    until(lambda: client.store.running(sub.spec.id) or client.store.batches(sub.spec.id)["done"], 180)
    return time.monotonic() - began


def trial(base: Settings, outage: float, work: Path) -> tuple[float, float]:
    """(floor, lag): a batch's take without an outage, and after one of `outage` seconds."""
    tag = "httpovbench-" + secrets.token_hex(4)
    folder = work / tag
    folder.mkdir()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = base.with_(broker_url=url, state_url=url, prefix=tag, queue=tag, storage=str(folder / "storage"),
                          cache_dir=folder / "cache")
    redis = redis_server(folder, port, persist=True)
    node = None
    try:
        client = Client(settings, make_app(settings))
        node = start_worker(settings, 1, "node", folder / "node.log")
        until(lambda: client.store.live_nodes(10), 60)
        floor = _started(client, folder, "before")
        redis.terminate()
        redis.wait()
        time.sleep(outage)
        redis = redis_server(folder, port, persist=True)
        return floor, _started(Client(settings, make_app(settings)), folder, "after")
    finally:
        if node is not None:
            stop_worker(node)
        redis.kill()
        redis.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=float, nargs="+", default=[2.0, 10.0, 30.0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    base = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="httpov-bench-") as tmp:
        for outage in args.outages:
            rows = [trial(base, outage, Path(tmp)) for _ in range(args.repeat)]
            floors, lags = [r[0] for r in rows], [r[1] for r in rows]
            print(f"outage {outage:g} s: a batch taken {statistics.median(lags):.2f} s after Redis is back "
                  f"({', '.join(f'{x:.2f}' for x in lags)}); without an outage {statistics.median(floors):.2f} s "
                  f"({', '.join(f'{x:.2f}' for x in floors)})", flush=True)


if __name__ == "__main__":
    main()
