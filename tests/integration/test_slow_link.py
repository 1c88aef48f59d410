"""A slow link between the render nodes and Redis (250 ms each way: nodes in another region): the sweeps judge by
Redis's clock and by leases, so no batch is requeued or delivered twice, and the job finishes."""
from __future__ import annotations

import re
from pathlib import Path

import redis

from httpov.local_farm import embedded_redis
from tests.conftest import TINY_ANIMATION, wait_for, wait_until, write_scene
from tests.latency import DelayProxy


def _taking_batches(url: str, nodes: int) -> bool:
    """`nodes` render nodes' consumers wait for a batch (their start-up is over)."""
    return sum(c["cmd"] == "brpop" for c in redis.Redis.from_url(url, decode_responses=True).client_list()) >= nodes


def test_a_job_on_a_slow_link_finishes_with_no_requeue_and_each_batch_rendered_once(tmp_path: Path, settings,
                                                                                     workers):
    from httpov.celery import make_app
    from httpov.client import Client

    (tmp_path / "redis").mkdir()
    with embedded_redis(tmp_path / "redis") as direct:
        port = int(direct.rsplit(":", 1)[1].split("/")[0])
        with DelayProxy(port, 0.0) as proxy:
            here = settings.with_(broker_url=direct, state_url=direct, lease_seconds=4.0)  # the user, next to Redis
            client = Client(here, make_app(here))
            far = here.with_(broker_url=proxy.url, state_url=proxy.url)
            for name in ("far", "farther"):
                workers(concurrency=2, name=name, settings_=far)
            # the nodes start on a fast link (Celery's start-up is a few dozen round trips), then the link slows down
            wait_for(lambda: len(client.store.live_nodes(within=60)) == 2 and _taking_batches(direct, 2), 60,
                     "the nodes to take batches")
            proxy.delay = 0.25
            sub = client.submit(write_scene(tmp_path / "scene", TINY_ANIMATION,
                                            "Width=16\nHeight=12\nInitial_Frame=1\nFinal_Frame=4\n"), count=1)
            wait_for(lambda: client.store.state(sub.spec.id) in ("done", "failed", "cancelled"), 60,
                     "the job to finish")  # (no client.wait: it would sweep for the nodes, next to Redis)
            batches = client.store.batches(sub.spec.id)
            assert (client.store.state(sub.spec.id), len(batches["frames"])) == ("done", 4)
            assert batches["requeued"] == {}, "no render node died: nothing may be requeued"
            assert batches["attempts"] == dict.fromkeys(sub.spec.batches, 1), "each batch started once"
            logs = [tmp_path / "far.log", tmp_path / "farther.log"]

            def handled() -> list[tuple[str, str]]:
                text = "".join(log.read_text(errors="replace") for log in logs)
                return re.findall(r"httpov: batch (\w+): job=\S+ batch=(\S+)", text)
            # a batch is recorded done before its node logs it (each started once is asserted above, from Redis)
            wait_until(lambda: len(handled()) >= len(sub.spec.batches), 15)
            text = "".join(log.read_text(errors="replace") for log in logs)
            rendered = [b for outcome, b in handled() if outcome == "rendered"]
            assert sorted(rendered) == sorted(sub.spec.batches), text[-3000:]
            assert [(o, b) for o, b in handled() if o != "rendered"] == [], "a batch was delivered twice"
            for warning in ("never sent", "died before starting", "lost its render node"):
                assert warning not in text, text[-3000:]
