"""Redis restarting under a job: render nodes whose job vanished stop cleanly, clients ride out the outage."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from httpov.local import free_port
from tests.conftest import wait_for
from tests.integration.faults import povray_pids, redis_server, slow_scene


@pytest.mark.parametrize("split", [{"count": 1}, {"slices": 2}], ids=["frames", "slices"])
def test_a_job_lost_with_an_empty_redis_restart_is_dropped_and_nothing_recreated(tmp_path, settings, workers, split):
    from httpov.app import make_app
    from httpov.client import Client

    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = redis_server(data, port, persist=False)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        # a lease longer than a batch: no refresh meets the empty Redis, the batch's own end does
        settings = settings.with_(broker_url=url, state_url=url, lease_seconds=60.0)
        client = Client(settings, make_app(settings))
        sub = client.submit(slow_scene(tmp_path / "gone", 4), **split)
        workers(concurrency=2, name="node", settings_=settings)
        wait_for(lambda: len(client.store.running(sub.spec.id)) == 2, 60, "two batches rendering")

        server.terminate()  # no persistence: Redis comes back empty, the job with it
        server.wait(20)
        server = redis_server(data, port, persist=False)
        log = tmp_path / "node.log"
        wait_for(lambda: not povray_pids(str(settings.cache_dir)), 60, "the batches in flight to end")
        wait_for(lambda: len(re.findall(r"render_batch\[\S+\] (succeeded|raised)", log.read_text(errors="replace")))
                 >= 2, 60, "both tasks to return")

        keys = sorted(redis.Redis.from_url(url, decode_responses=True).keys(f"*{sub.spec.id}*"))
        assert keys == [], f"keys of the vanished job came back: {keys}"
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "TypeError" not in text, text[-3000:]
        said = re.findall(r"\[[^]]*/([^]]+)\] httpov: job \S+ is gone from Redis", text)
        assert said and len(said) == len(set(said)), f"said once per render process: {said}"
    finally:
        server.terminate()
        server.wait(20)
