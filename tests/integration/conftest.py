"""Integration tests start real services: Redis and povray must be there (a usage error, never a skip), and each
test gets its own Redis key prefix and queue on the real Redis, real storage folders and real `celery -A httpov
worker` processes."""
from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from httpov.local_farm import start_worker, stop_worker
from httpov.settings import Settings
from tests.conftest import REDIS_URL


def pytest_configure(config: pytest.Config) -> None:
    """Integration tests need Redis and povray; on CI their absence is a failure, never a skip."""
    if shutil.which("povray") is None:
        raise pytest.UsageError("povray is not installed: apt-get install -y povray (or run .ci/run)")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        raise pytest.UsageError(f"Redis does not answer at {REDIS_URL}: start redis-server (or run .ci/run)") from None


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings private to one test: its own key prefix, queue, storage folder and node cache."""
    tag = "httpovtest-" + secrets.token_hex(4)
    s = Settings(broker_url=REDIS_URL, state_url=REDIS_URL, storage=str(tmp_path / "storage"), prefix=tag,
                 queue=tag, cache_dir=tmp_path / "cache", lease_seconds=4.0, max_attempts=3,
                 task_time_limit=600)
    yield s
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def client(settings: Settings):
    from httpov.celery import make_app
    from httpov.client import Client

    return Client(settings, make_app(settings))


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real render nodes: `workers(concurrency=2, name="a")`; all are killed (whole group) at teardown."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(concurrency: int = 2, name: str | None = None, settings_: Settings | None = None) -> subprocess.Popen:
        name = name or f"node{len(started)}"
        log = tmp_path / f"{name}.log"
        proc = start_worker(settings_ or settings, concurrency, name, log)
        started.append((proc, log))
        return proc

    yield start
    for proc, _ in started:
        stop_worker(proc, grace=5.0)
    for _, log in started:  # a worker's traceback is shown with the test that provoked it
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in text:
            print(f"--- {log.name} ---\n{text[-4000:]}")
