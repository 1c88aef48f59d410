"""A slow link between the render nodes and Redis (250 ms each way, a node in another region): the sweeps judge by
Redis's clock and by leases, so no batch is requeued or delivered twice, and the job finishes."""
from __future__ import annotations

import re

import redis

from httpov.local_farm import free_port
from tests.conftest import TINY_ANIMATION, wait_for, wait_until, write_scene
from tests.integration.faults import DelayProxy, redis_server


def _waiting_in_brpop(url: str) -> bool:
    """A render node's consumer waits for a batch (its start-up is over)."""
    return any(c["cmd"] == "brpop" for c in redis.Redis.from_url(url, decode_responses=True).client_list())


def test_a_job_on_a_slow_link_finishes_with_no_requeue_and_each_batch_rendered_once(tmp_path, settings, workers):
    from httpov.celery import make_app
    from httpov.client import Client

    port = free_port()
    (tmp_path / "redis").mkdir()
    server = redis_server(tmp_path / "redis", port, persist=False)
    direct = f"redis://127.0.0.1:{port}/0"
    try:
        with DelayProxy(port, 0.0) as proxy:
            here = settings.with_(broker_url=direct, state_url=direct)  # the user's client, next to Redis
            client = Client(here, make_app(here))
            workers(concurrency=2, name="far", settings_=here.with_(broker_url=proxy.url, state_url=proxy.url))
            # the node starts on a fast link (Celery's start-up takes a dozen round trips), then the link slows down
            wait_for(lambda: client.store.live_nodes(within=60) and _waiting_in_brpop(direct), 60, "the node ready")
            proxy.delay = 0.25
            sub = client.submit(write_scene(tmp_path / "scene", TINY_ANIMATION,
                                            "Width=16\nHeight=12\nInitial_Frame=1\nFinal_Frame=4\n"), count=1)
            final = client.wait(sub.spec.id, timeout=60)
            assert (final.state, final.frames_done) == ("done", 4)
            batches = client.store.batches(sub.spec.id)
            assert batches["requeued"] == {}, "no render node died: nothing may be requeued"
            assert batches["attempts"] == dict.fromkeys(sub.spec.batches, 1), "each batch started once"
        log = tmp_path / "far.log"

        def handled() -> list[tuple[str, str]]:
            return re.findall(r"httpov: batch (\w+): job=\S+ batch=(\S+)", log.read_text(errors="replace"))
        # a batch is recorded done before its node logs it (each started once is asserted above, from Redis)
        wait_until(lambda: len(handled()) >= len(sub.spec.batches), 15)
        text, handled_ = log.read_text(errors="replace"), handled()
        rendered = [b for outcome, b in handled_ if outcome == "rendered"]
        assert len(rendered) == len(set(rendered)) and set(rendered) <= set(sub.spec.batches), text[-3000:]
        assert [(o, b) for o, b in handled_ if o != "rendered"] == [], "a batch was delivered twice"
        assert "never sent" not in text and "died before starting" not in text
    finally:
        server.terminate()
        server.wait(20)
