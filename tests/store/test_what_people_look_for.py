"""What a person looks for, on a real Redis: pause, resume and retry write the lines whose gaps elapsed leaves
out; a job is stalled only when nothing took its batches for a while; a node's failed batches say why."""
from __future__ import annotations

import pytest

from httpov.terminal import _eta_line
from httpov.view import job_view
from tests.conftest import TINY_ANIMATION, write_scene


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=16\nHeight=16\n+KFI1 +KFF2\n")


def test_pause_resume_and_retry_are_kept_and_their_gaps_are_left_out_of_elapsed(client, scene):
    job = client.submit(scene, name="shot").spec.id
    client.pause(job)
    client.resume(job)
    client.pause(job)
    client.cancel(job)
    cancelled_at = float(client.store.record(job)["finished"])
    client.retry(job)
    history = client.store.batches(job)["history"]
    assert [(line.get("kind"), line["what"]) for line in history] == [
        ("pause", "paused"), ("resume", "resumed"), ("pause", "paused"), ("retry", "retried")]
    assert history[-1]["since"] == cancelled_at
    pauses = history[1]["at"] - history[0]["at"]
    view = job_view(client.store, job, now=history[-1]["at"] + 100.0)
    started = float(client.store.record(job).get("started") or client.store.record(job)["created"])
    lay = history[-1]["at"] - history[2]["at"]  # paused, cancelled and retried: none of it rendering time
    assert view.elapsed == pytest.approx(history[-1]["at"] + 100.0 - started - pauses - lay, abs=0.002)
    assert view.elapsed < 100.5


def test_a_job_just_submitted_is_idle_but_not_stalled_until_the_live_node_window_passed(client, scene):
    job = client.submit(scene, name="shot").spec.id  # no render node: nobody takes its batches
    created = float(client.store.record(job)["created"])
    now = job_view(client.store, job, now=created + 1.0, live_within=30.0)
    assert now.idle and not now.stalled
    later = job_view(client.store, job, now=created + 31.0, live_within=30.0)
    assert later.stalled and "no render node is taking" in _eta_line(later)
    client.pause(job)
    client.resume(job)  # resumed: its batches were just queued again, so it is not stalled yet
    resumed = client.store.batches(job)["history"][-1]["at"]
    assert not job_view(client.store, job, now=resumed + 1.0, live_within=30.0).stalled


def test_a_nodes_last_failed_batch_says_why_in_httpov_nodes(client):
    from httpov.nodes import farm_nodes

    client.store.heartbeat("bad@h", 1, info={"host": "h"})
    client.store.count_batch("bad@h", "failed", error="storage /nope: no such folder: scenes/abc\nmore")
    client.store.count_batch("bad@h", "failed", error="storage /nope: no such folder: scenes/def")
    client.store.count_batch("bad@h", "failed")  # a failure that said nothing keeps the last reason
    node = {n["node"]: n for n in farm_nodes(client.store, 60.0)}["bad@h"]
    assert node["failed_last_hour"] == 3 and node["last_error"] == "storage /nope: no such folder: scenes/def"
