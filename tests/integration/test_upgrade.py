"""A rolling upgrade from the previous release (main at 705ac9a, no schema version in Redis): a job it submitted
and half rendered finishes on this release's render node, the two releases' nodes briefly side by side."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import redis

from httpov.local_farm import stop_worker, worker_env
from httpov.settings import Settings
from httpov.store import JobStore, Keys
from httpov.store import version as schema
from tests.conftest import REDIS_URL, TINY_ANIMATION, wait_for, write_scene

PREVIOUS = "705ac9a"  # the last release without a schema version
ROOT = Path(__file__).resolve().parents[2]

OLD_CLIENT = """
import sys
from pathlib import Path
from httpov.celery import make_app
from httpov.client import Client
from httpov.settings import Settings
settings = Settings.from_env()
client = Client(settings, make_app(settings))
if sys.argv[1] == "submit":
    print(client.submit(Path(sys.argv[2]), count=1).spec.id)
else:
    client.pause(sys.argv[2])
"""


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's code (`git archive`): CI runs on a full clone, so the commit is there."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS], capture_output=True,
                             check=True).stdout
    folder = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    assert (folder / "httpov" / "jobs.py").exists()
    return folder


def _old_env(settings: Settings, code: Path) -> dict[str, str]:
    """The previous release on PYTHONPATH (before this checkout's editable install), run from its own folder."""
    env = worker_env(settings)
    env["PYTHONPATH"] = str(code) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _old(settings: Settings, code: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", OLD_CLIENT, *args], env=_old_env(settings, code), cwd=code,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_job_of_the_previous_release_finishes_after_a_rolling_upgrade(tmp_path, settings, client, workers,
                                                                          previous):
    keys = Keys(settings.prefix)
    raw = JobStore(redis.Redis.from_url(REDIS_URL, decode_responses=True), settings.prefix)  # reads, never upgrades
    old_log = tmp_path / "old.log"
    old = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "httpov", "worker", "--concurrency", "1", "--loglevel", "INFO",
         "-Q", settings.queue, "-n", "old@%h", "--without-gossip", "--without-mingle"],
        env=_old_env(settings, previous), cwd=previous, stdout=old_log.open("ab"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        scene = write_scene(tmp_path / "scene", TINY_ANIMATION, "Width=24\nHeight=16\nInitial_Frame=1\n"
                                                                "Final_Frame=10\n")
        job = _old(settings, previous, "submit", str(scene))
        wait_for(lambda: len(raw.batches(job)["done"]) >= 2, 30, "the previous release's node to render 2 frames")
        _old(settings, previous, "pause", job)  # half rendered: the rest waits, parked as it comes up
        assert raw.r.get(keys.schema()) is None and schema.stored_version(raw.r, keys) == 1

        workers(concurrency=2, name="new")  # this release's node meets version 1 and upgrades it
        wait_for(lambda: raw.r.get(keys.schema()) == str(schema.VERSION)
                 and any(node.startswith("new@") for node in raw.nodes()[0]), 30, "the new node to upgrade Redis")
        assert any(node.startswith("old@") for node in raw.nodes()[0])  # both releases side by side
        client.resume(job)
    finally:
        stop_worker(old, grace=15.0)  # the rolling restart: the old node finishes the batch it renders
    if "Traceback" in old_log.read_text(errors="replace"):
        print(old_log.read_text(errors="replace")[-4000:])

    final = client.wait(job, timeout=60)
    assert final.state == "done" and final.frames_done == 10
    done = raw.batches(job)["done"]
    nodes = {info["node"].split("@")[0] for info in done.values()}
    assert nodes == {"old", "new"}, nodes
    assert len(client.storage.list(f"jobs/{job}/")) >= 10
    assert raw.r.get(keys.schema()) == str(schema.VERSION)
