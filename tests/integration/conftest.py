"""Integration tests start real services: each test gets its own Redis key prefix and queue on the real Redis
(`settings` and `client` in tests/conftest.py), real storage folders and real `celery -A httpov worker` processes.
Their needs (Redis, povray) are checked in tests/conftest.py: missing ones are a usage error, never a skip."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from httpov.local_farm import start_worker, stop_worker
from httpov.settings import Settings


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real render nodes: `workers(concurrency=2, name="a")`; all are killed (whole group) at teardown, at
    once and without a warm shutdown (Celery's takes a second a node; the test is over, its keys are deleted next)."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(concurrency: int = 2, name: str | None = None, settings_: Settings | None = None) -> subprocess.Popen:
        name = name or f"node{len(started)}"
        log = tmp_path / f"{name}.log"
        proc = start_worker(settings_ or settings, concurrency, name, log)
        started.append((proc, log))
        return proc

    yield start
    for proc, _ in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for proc, _ in started:
        stop_worker(proc, grace=5.0)  # already gone: reaped at once
    for _, log in started:  # a worker's traceback is shown with the test that provoked it
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in text:
            print(f"--- {log.name} ---\n{text[-4000:]}")
