"""Deleting jobs on local storage and S3: Redis keys and stored bytes come back to what they were before the job;
a scene goes with its last job; live jobs need --force; prune and HTTPOV_KEEP_DAYS delete old finished jobs."""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from httpov.broker import key_prefix
from httpov.celery import make_app
from httpov.cli import cli
from httpov.client import Client
from httpov.local_farm import worker_env
from httpov.settings import Settings
from httpov.store.keys import Keys
from tests.conftest import PARSE_ERROR, REDIS_URL, TINY_ANIMATION, queue_drained, wait_for, write_scene
from tests.integration.faults import povray_pids, slow_scene
from tests.integration.test_radiosity import ROOM
from tests.s3server import apply_env, make_bucket, moto_thread

pytestmark = pytest.mark.integration

INI = "Width=24\nHeight=16\nInitial_Frame=1\nFinal_Frame={frames}\n"


@pytest.fixture(scope="module")
def moto_endpoint():
    with moto_thread() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def farm(request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings on local storage, or on a fresh bucket of a real S3 server (AWS_* reach the nodes)."""
    if request.param == "local":
        return settings
    endpoint = request.getfixturevalue("moto_endpoint")
    apply_env(monkeypatch, endpoint)
    bucket = "delete-" + uuid.uuid4().hex[:12]
    make_bucket(endpoint, bucket)
    return settings.with_(storage=f"s3://{bucket}/farm")


def _cli(settings: Settings, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


def _redis_state(prefix: str) -> dict[str, Any]:
    """Every lasting key under the test's prefix and its value; keys with an expiry (claims, Celery's mutex) go by
    themselves; the times of heartbeats and of kombu's bindings change on their own (their names are kept); the
    farm's records of what was done (the audit log, the job events, the metrics' counters) outlive its jobs."""
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = Keys(prefix)
    kept = {keys.audit(), keys.events(), keys.metrics()}
    state: dict[str, Any] = {}
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        if r.ttl(key) != -1 or key in kept:
            continue
        kind = r.type(key)
        if kind == "hash":
            state[key] = r.hgetall(key)
        elif kind == "list":
            state[key] = r.lrange(key, 0, -1)
        elif kind == "set":
            state[key] = sorted(r.smembers(key))
        elif kind == "zset":
            # heartbeats, kombu's binding deadlines
            timed = key.endswith(":nodes") or key.startswith(key_prefix(prefix))
            state[key] = r.zrange(key, 0, -1, withscores=not timed)
        else:
            state[key] = r.get(key)
    return state


def _stored(client: Client) -> dict[str, int]:
    return {key: client.storage.size(key) for key in client.storage.list("")}


def test_after_jobs_and_their_delete_redis_and_storage_are_as_before(tmp_path: Path, farm: Settings, workers):
    client = Client(farm, make_app(farm))
    workers(concurrency=2, settings_=farm)
    kept = client.submit(write_scene(tmp_path / "kept", TINY_ANIMATION, INI.format(frames=2)), count=1)
    client.wait(kept.spec.id, timeout=120)
    wait_for(lambda: queue_drained(farm), 30, "every message acknowledged")
    redis_before, stored_before = _redis_state(farm.prefix), _stored(client)
    assert kept.spec.scene_key in stored_before

    # A sliced job on a scene of its own, a job sharing the kept job's scene, and a job that fails (its logs).
    sliced = client.submit(write_scene(tmp_path / "sliced", TINY_ANIMATION.replace("0.8", "0.7"),
                                       INI.format(frames=2)), slices=2)
    shared = client.submit(tmp_path / "kept", count=2)
    broken = client.submit(write_scene(tmp_path / "broken", PARSE_ERROR, INI.format(frames=1)))
    lit = client.submit(write_scene(tmp_path / "lit", ROOM, "Width=24\nHeight=64\n"), slices=2)  # a pre-pass
    for sub in (sliced, shared, lit):
        assert client.wait(sub.spec.id, timeout=120).state == "done"
    wait_for(lambda: client.store.state(broken.spec.id) == "failed", 120, "the broken job to fail")
    wait_for(lambda: queue_drained(farm), 30, "every message acknowledged")
    stored = _stored(client)
    assert any(key.startswith(f"jobs/{sliced.spec.id}/frames/") for key in stored)  # stitched frames
    assert any(key.startswith(f"jobs/{broken.spec.id}/logs/") for key in stored)  # povray's log of the failure
    assert sliced.spec.scene_key in stored and shared.spec.scene_key == kept.spec.scene_key
    assert any(key.startswith("radiosity/") for key in stored)  # the pre-pass's cache, shared by content

    result = _cli(farm, "delete", sliced.spec.id, shared.spec.id, broken.spec.id, lit.spec.id)
    assert result.exit_code == 0
    assert f"job {sliced.spec.id} deleted (done)" in result.output and "scene deleted" in result.output
    assert f"job {shared.spec.id} deleted (done)" in result.output and "scene kept" in result.output
    assert _redis_state(farm.prefix) == redis_before
    assert _stored(client) == stored_before

    # The last job of a scene takes it along: the store is empty again.
    assert _cli(farm, "delete", kept.spec.id).exit_code == 0
    assert _stored(client) == {} and client.storage.size() == 0
    assert kept.spec.id not in str(_redis_state(farm.prefix))
    assert _cli(farm, "delete", kept.spec.id).exit_code == 4  # gone


def test_a_live_job_is_deleted_only_with_force_which_cancels_it(tmp_path: Path, settings: Settings, client, workers):
    sub = client.submit(slow_scene(tmp_path / "slow", 8), count=2)
    workers(concurrency=2)
    wait_for(lambda: povray_pids(str(settings.cache_dir)), 60, "povray to start")
    refused = _cli(settings, "delete", sub.spec.id)
    assert refused.exit_code == 4 and "--force" in refused.output
    assert client.store.state(sub.spec.id) in ("queued", "running")
    assert _cli(settings, "delete", "--force", sub.spec.id).exit_code == 0
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 30, "the job's povrays to be killed")
    wait_for(lambda: queue_drained(settings), 60, "its queued batches to come up and be dropped")
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert [k for k in r.scan_iter(match=f"{settings.prefix}:*{sub.spec.id}*") if r.ttl(k) == -1] == []
    assert client.storage.list(f"jobs/{sub.spec.id}/") == []
    assert client.storage.list("scenes/") == []


def test_prune_deletes_finished_jobs_older_than_asked(tmp_path: Path, settings: Settings, client, workers):
    workers(concurrency=2)
    old = client.submit(write_scene(tmp_path / "old", TINY_ANIMATION, INI.format(frames=1)))
    client.wait(old.spec.id, timeout=120)
    finished = float(client.store.record(old.spec.id)["finished"])
    wait_for(lambda: time.time() > finished + 2, 10, "the job to be 2 s old")
    young = client.submit(write_scene(tmp_path / "young", TINY_ANIMATION.replace("0.8", "0.6"), INI.format(frames=1)))
    client.wait(young.spec.id, timeout=120)

    assert "0 job(s) would be deleted" in _cli(settings, "prune", "--older-than", "30d", "--dry-run").output
    dry = _cli(settings, "prune", "--older-than", "2s", "--dry-run")
    assert dry.exit_code == 0 and f"would delete {old.spec.id}" in dry.output and young.spec.id not in dry.output
    assert client.store.state(old.spec.id) == "done"
    assert "0 job(s) deleted" in _cli(settings, "prune", "--older-than", "2s", "--state", "failed").output
    assert _cli(settings, "prune", "--older-than", "2s", "--state", "running").exit_code == 2
    assert _cli(settings, "prune", "--older-than", "soon").exit_code == 2
    result = _cli(settings, "prune", "--older-than", "2s")
    assert result.exit_code == 0 and "1 job(s) deleted" in result.output
    assert client.store.job_ids() == [young.spec.id]
    assert client.storage.list(f"jobs/{old.spec.id}/") == [] and not client.storage.exists(old.spec.scene_key)


def test_render_nodes_delete_jobs_older_than_keep_days(tmp_path: Path, settings: Settings, client, workers):
    workers(concurrency=2)
    sub = client.submit(write_scene(tmp_path / "a", TINY_ANIMATION, INI.format(frames=2)), count=1)
    client.wait(sub.spec.id, timeout=120)
    assert client.store.job_ids() == [sub.spec.id]  # a node without HTTPOV_KEEP_DAYS keeps every job
    workers(concurrency=1, name="keeper", settings_=settings.with_(keep_days=1 / 86400))  # one second
    wait_for(lambda: client.store.job_ids() == [], 60, "a node's sweep to delete the job")
    assert client.storage.list("") == []
