"""A render node's log says what it did: one INFO line per batch, at a bare worker's default level."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from httpov.local_farm import stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import TINY_ANIMATION, write_scene

pytestmark = pytest.mark.integration

INI = "Width=24\nHeight=16\nInitial_Frame=1\nFinal_Frame=4\n"


def test_a_bare_worker_logs_one_line_per_batch(tmp_path: Path, settings: Settings, client) -> None:
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:  # as users type it: no --loglevel (Celery's default, WARNING)
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "httpov", "worker", "-n", "bare@%h",
                                 "--concurrency", "2", "-Q", settings.queue, "--without-gossip", "--without-mingle"],
                                env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        sub = client.submit(write_scene(tmp_path / "scene", TINY_ANIMATION, INI), count=2)
        client.wait(sub.spec.id, timeout=120)
    finally:
        stop_worker(proc, grace=10)
    text = log.read_text(errors="replace")
    print(text[-3000:])
    lines = re.findall(r"httpov: batch rendered: job=(\w+) batch=(\S+) frames=(\S+) seconds=([\d.]+) node=(\S+)",
                       text)
    assert sorted((job, batch, frames) for job, batch, frames, _, _ in lines) == [
        (sub.spec.id, "f000001-000002", "1-2"), (sub.spec.id, "f000003-000004", "3-4")]
    assert all(node.startswith("bare@") and float(seconds) > 0 for *_, seconds, node in lines)
    assert "succeeded in" not in text  # Celery's own INFO lines stay off at the default level
