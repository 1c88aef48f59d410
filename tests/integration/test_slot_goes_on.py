"""A render slot that has rendered a batch goes on with the next message of its node's queues itself
(httpov.worker.tasks.NodeTask.go_on), skipping what Celery's consumer costs a message: in the queues' own order, and
a batch it took that must go elsewhere is sent there under its task id, as Celery's retry would send it. Real Redis,
real `celery worker` processes, real povray on tiny scenes. (Its order under fair share and priorities is
test_fair_share's; that a draining node takes no more is test_drain's.)"""
from __future__ import annotations

import re
import socket
import threading

import pytest

from httpov.broker import QueueLayout, render_message
from httpov.celery import make_app
from httpov.store.keys import Keys
from tests.conftest import TINY_ANIMATION, wait_for, write_scene

pytestmark = pytest.mark.integration

TINY = "Width=8\nHeight=6\n"


def test_a_batch_the_slot_took_itself_is_handed_on_under_its_task_id(tmp_path, settings, client, workers):
    """alpha renders job a, then goes on with the queue: job b's batches, which alpha is blocked from, go to the
    only other live node, ghost (a heartbeat, no worker), on its own queue, each under the task id its hand-off
    lease names, so that ghost would take the lease over. At least one of them was taken by the slot itself: alpha's
    Celery consumer never received its message."""
    alpha, ghost = f"alpha@{socket.gethostname()}", "ghost@nowhere"
    stop = threading.Event()

    def ghost_lives() -> None:
        while not stop.is_set():
            client.store.heartbeat(ghost, 1, [])
            stop.wait(0.5)
    beating = threading.Thread(target=ghost_lives, daemon=True)
    beating.start()
    try:
        scene = write_scene(tmp_path / "scene", TINY_ANIMATION, TINY)
        a = client.submit(scene, frames=3, count=1, name="a")
        b = client.submit(scene, frames=2, count=1, name="b")
        client.store.r.sadd(Keys(settings.prefix).blocked(b.spec.id), alpha)
        workers(concurrency=1, name="alpha")
        assert client.wait(a.spec.id, timeout=120).frames_done == 3
        layout = QueueLayout.of(make_app(settings))
        direct = layout.lists(f"{ghost}.dq2")

        def handed() -> list:
            return [m for key in direct for m in map(render_message, client.store.r.lrange(key, 0, -1)) if m]
        wait_for(lambda: len(handed()) == 2, 60, "both of job b's batches handed to ghost")
    finally:
        stop.set()
        beating.join()
    log = (tmp_path / "alpha.log").read_text(errors="replace")
    assert re.search(r"then \d+ more taken from the queue", log), log[-3000:]
    received = set(re.findall(r"render_batch\[([0-9a-f-]+)\] received", log))
    by_slot = 0
    for message in handed():
        assert message.job_id == b.spec.id
        lease = client.store.r.get(Keys(settings.prefix).lease(b.spec.id, message.batch_id))
        assert lease == f"retry:{message.task_id}", (lease, message)  # ghost's to take over
        by_slot += message.task_id not in received
    assert by_slot >= 1, "alpha's Celery consumer took each of job b's messages: the slot went on with none"
    assert client.store.batches(b.spec.id)["done"] == {}
