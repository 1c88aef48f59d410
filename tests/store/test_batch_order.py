"""The order a job's batches are handed out in (HTTPOV_BATCH_ORDER), on the real Redis without render nodes: what a
submit queues first and leaves pending, what a retry pends again, and that another user's job keeps its share."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from httpov.access import Identity, Role
from httpov.broker import QueueLayout, render_message
from httpov.client import Client
from httpov.options import SubmitOptions
from httpov.plan import Batch
from httpov.preview import preview
from tests.conftest import write_scene

ALICE, BOB = Identity("alice", Role.USER), Identity("bob", Role.USER)


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "s", "#version 3.7;\nbackground { color rgb <clock, 1, 0> }\n",
                       "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=41\nInitial_Clock=0\nFinal_Clock=1\n")


def _queued(client: Client, job_id: str) -> list[int]:
    """The first frame of each of the job's batches in Celery's queue, in the order render nodes take them (kombu
    LPUSHes, a worker BRPOPs: the list read from its end)."""
    return [Batch.from_id(b).first for b in _queued_ids(client, job_id)]


def _pending(client: Client, job_id: str) -> list[int]:
    return [Batch.from_id(b).first for b in client.store.r.lrange(client.store.keys.pending(job_id), 0, -1)]


def test_a_job_is_handed_out_coarse_to_fine_and_with_frames_first_to_last(client, scene):
    job = client.submit(scene, count=1, who=ALICE).spec.id
    handed = _queued(client, job) + _pending(client, job)
    assert sorted(handed) == list(range(1, 42))
    assert handed[:3] == [1, 41, 21]  # no node has said how many processes it runs: a window of 3
    assert {(f - 1) * 10 // 41 for f in handed[:10]} == set(range(10))  # every tenth within the first 10 batches
    assert client.store.spec(job).order == "preview"

    frames = Client(client.settings.with_(batch_order="frames"), client.celery)
    other = frames.submit(scene, count=4, who=BOB).spec.id
    assert _queued(frames, other) + _pending(frames, other) == list(range(1, 42, 4))
    assert _queued(client, job) and _queued(frames, other)  # each user's job has its window (fair share)


def test_a_retry_of_frames_pends_them_coarse_to_fine_again(client, scene):
    job = client.submit(scene, count=1, who=ALICE).spec.id
    client.cancel(job, who=ALICE)
    client.retry(job, frames=(11, 30), who=ALICE)
    # the window of the cancelled job's messages is replaced (those still queued are dropped by the nodes)
    window = sorted(Batch.from_id(b).first for b in client.store.r.zrange(client.store.keys.window(job), 0, -1))
    pending = _pending(client, job)
    assert window == [11, 21, 30] and sorted(window + pending) == list(range(11, 31))
    assert {(f - 11) * 10 // 20 for f in window + pending[:7]} == set(range(10))


def test_a_resumed_job_pends_what_was_set_aside_coarse_to_fine(client, scene):
    job = client.submit(scene, count=1, who=ALICE).spec.id
    client.pause(job, who=ALICE)
    client.resume(job, who=ALICE)
    window = {Batch.from_id(b).first for b in client.store.r.zrange(client.store.keys.window(job), 0, -1)}
    pending = _pending(client, job)
    assert sorted([*window, *pending]) == list(range(1, 42))
    assert len(pending) > 20 and pending != sorted(pending)  # not first to last
    assert {(f - 1) * 10 // 41 for f in pending[:12]} == set(range(10))  # the parked ones, coarse-to-fine again


def test_a_job_of_several_frames_a_batch_leads_with_one_frame_of_each_tenth(client, tmp_path):
    scene = write_scene(tmp_path / "long", "#version 3.7;\nbackground { color rgb <clock, 1, 0> }\n",
                        "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=120\nInitial_Clock=0\nFinal_Clock=1\n")
    job = client.submit(scene, count=4, who=ALICE).spec.id
    handed = [Batch.from_id(b) for b in _queued_ids(client, job) + client.store.r.lrange(
        client.store.keys.pending(job), 0, -1)]
    assert sorted(f for b in handed for f in b.frames) == list(range(1, 121))  # every frame once
    assert len(handed) == 30 + 8 and all(b.first == b.last for b in handed[:10])  # ten frames: 8% of the job
    assert {(b.first - 1) * 10 // 120 for b in handed[:10]} == set(range(10))
    frames = Client(client.settings.with_(batch_order="frames"), client.celery)
    other = frames.submit(scene, count=4, who=BOB).spec
    assert other.batches == [Batch(f, f + 3).id for f in range(1, 121, 4)]  # first to last: no frame on its own


def _queued_ids(client: Client, job_id: str) -> list[str]:
    layout = QueueLayout.of(client.celery)
    return [message[1] for key in layout.lists(client.settings.queue)
            for raw in reversed(client.store.r.lrange(key, 0, -1))
            if (message := render_message(raw)) is not None and message[0] == job_id]


def test_a_given_count_is_laid_out_for_the_live_farm_and_the_jobs_own_cap(client, tmp_path):
    scene = write_scene(tmp_path / "long", "#version 3.7;\nbackground { color rgb <clock, 1, 0> }\n",
                        "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=120\n")
    client.store.heartbeat("big@h", 40, [])  # a live node of 40 render processes: 30 batches of 4 start at once
    whole = client.submit(scene, count=4, who=ALICE).spec
    assert whole.batches == [Batch(f, f + 3).id for f in range(1, 121, 4)]  # no frame on its own: nothing to preview
    capped = client.submit(scene, count=4, max_processes=8, who=BOB).spec  # bob's job runs 8 at a time
    assert len(capped.batches) == 38 and sum(len(Batch.from_id(b).frames) == 1 for b in capped.batches) == 10
    archive = shutil.make_archive(str(tmp_path / "long"), "zip", scene)  # the web form's check says the same
    for options, batches in ((SubmitOptions(count=4), 30), (SubmitOptions(count=4, max_processes=8), 38)):
        said = preview(Path(archive), options, client.settings, client.job_processes(options))
        assert said.batches == batches
