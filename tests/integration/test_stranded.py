"""A worker that dies after taking a message but before leasing its batch: recovered in seconds, not hours."""
from __future__ import annotations

import subprocess
import sys

import redis

from tests.conftest import TINY_ANIMATION, kombu_layout, wait_for, write_scene

TAKE_AND_DIE = """
import os, signal, sys
from httpov.celery import make_app
from httpov.settings import Settings
settings = Settings.from_env()
app = make_app(settings)
with app.connection_for_read() as conn:
    message = conn.default_channel.basic_get(queue=settings.queue, no_ack=False)
    assert message is not None, "no message to take"
    print("took", message.headers["task"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no ack, no requeue: the message stays in Redis's unacked table
"""


def test_message_taken_by_a_dying_worker_is_requeued(tmp_path, settings, client, workers):
    from httpov.local_farm import worker_env

    fast = settings.with_(lease_seconds=2.0)
    scene = write_scene(tmp_path / "one", TINY_ANIMATION, "Width=8\nHeight=8\n")
    sub = client.submit(scene)
    taker = subprocess.run([sys.executable, "-c", TAKE_AND_DIE], env=worker_env(fast), capture_output=True,
                           text=True, timeout=60)
    assert taker.returncode == -9 and "took httpov.render_batch" in taker.stdout, taker.stderr
    r, unacked = redis.Redis.from_url(settings.broker_url), kombu_layout(settings).unacked
    assert r.hlen(unacked) == 1, "the message should sit unacked"

    workers(concurrency=1, settings_=fast)  # visibility timeout is over an hour: only httpov's sweep can help
    final = client.wait(sub.spec.id, timeout=60)
    assert final.state == "done" and final.frames_done == 1
    assert client.store.batches(sub.spec.id)["requeued"] == {sub.spec.batches[0]: 1}, "by the stranded sweep"
    # the stranded message is gone, and the requeued one's entry once the worker acks it (just after the batch is
    # recorded done: the job can be done a moment before)
    wait_for(lambda: r.hlen(unacked) == 0, 15, "no message of the job left in kombu's unacked table")


def test_messages_of_finished_jobs_leave_the_unacked_table(tmp_path, settings, client, workers):
    from httpov.local_farm import worker_env

    fast = settings.with_(lease_seconds=2.0)
    cancelled = client.submit(write_scene(tmp_path / "a", TINY_ANIMATION, "Width=8\nHeight=8\n"))
    taker = subprocess.run([sys.executable, "-c", TAKE_AND_DIE], env=worker_env(fast), capture_output=True,
                           text=True, timeout=60)
    assert taker.returncode == -9, taker.stderr
    client.cancel(cancelled.spec.id)
    r, layout = redis.Redis.from_url(settings.broker_url), kombu_layout(settings)
    assert r.hlen(layout.unacked) == 1

    workers(concurrency=1, settings_=fast)
    wait_for(lambda: r.hlen(layout.unacked) == 0, 30,
             "the sweep to drop the message of the cancelled job")
    assert r.zcard(layout.unacked_index) == 0
    assert client.store.state(cancelled.spec.id) == "cancelled"
    assert client.store.batches(cancelled.spec.id)["attempts"] == {}, "the cancelled job's batch never ran"
