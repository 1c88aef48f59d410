"""One render node for a benchmark: the Redis on 127.0.0.1:6379 (or HTTPOV_BROKER_URL), else an embedded one;
settings under a private key prefix and queue; a real `celery -A httpov worker`; a client. Everything (the worker,
the keys) goes when the stack closes. Imported by the benchmarks beside it (`python scripts/bench_x.py` puts
scripts/ on the path)."""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from httpov.celery import make_app
from httpov.client import Client
from httpov.local_farm import embedded_redis, redis_answers, start_worker, stop_worker
from httpov.settings import Settings
from httpov.worker import waits


def until(predicate: Callable[[], object], timeout: float) -> None:
    """Poll `predicate` every 20 ms until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.02)


def node_farm(stack: ExitStack, tmp: Path, concurrency: int, **overrides: Any) -> tuple[Settings, Client]:
    """Settings and a client of a farm of one node of `concurrency` render processes, one render thread each,
    storage and node cache in `tmp`; `overrides`: other settings (HTTPOV_QUICK_WAITS=0: quick_waits=False)."""
    url = os.environ.get("HTTPOV_BROKER_URL", "redis://127.0.0.1:6379/0")
    if not redis_answers(url):
        url = stack.enter_context(embedded_redis(tmp))
    tag = "httpovbench-" + secrets.token_hex(4)
    settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix=tag, queue=tag,
                        cache_dir=tmp / "cache", render_threads=1, **overrides)
    waits.library_for(settings, wait=True)  # the node's check of its quick waits done, as on a node run before
    worker = start_worker(settings, concurrency, tag, tmp / "worker.log")
    stack.callback(stop_worker, worker)
    client = Client(settings, make_app(settings))
    stack.callback(_forget, client, tag)
    return settings, client


def _forget(client: Client, tag: str) -> None:
    keys = list(client.store.r.scan_iter(match=f"{tag}:*", count=1000))
    if keys:
        client.store.r.delete(*keys)
