"""Redis restarting under a job: render nodes whose job vanished stop cleanly, clients ride out the outage."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from httpov.local_farm import free_port, worker_env
from httpov.view import job_view
from tests.conftest import kombu_layout, outlived, wait_for, wait_until
from tests.integration.faults import povray_pids, redis_server, slow_scene


@pytest.mark.parametrize("split", [{"count": 1}, {"slices": 2}], ids=["frames", "slices"])
def test_a_job_lost_with_an_empty_redis_restart_is_dropped_and_nothing_recreated(tmp_path, settings, workers, split):
    from httpov.celery import make_app
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


def _waiting_in_brpop(url: str) -> bool:
    """A render node's consumer is blocked in BRPOP: it has a free render process and waits for a batch."""
    clients = redis.Redis.from_url(url, decode_responses=True).client_list()
    return any(c["cmd"] == "brpop" and "b" in c["flags"] for c in clients)


def test_a_render_node_waiting_for_a_batch_survives_a_redis_restart(tmp_path, settings, workers):
    """Redis stops while one batch renders and the node's consumer waits in BRPOP for the next one (a render
    process free): kombu closes that channel twice, the second time after its connection forgot the broker
    (seen in CI as a job that never finished: the render node had exited on "Unrecoverable error"). The node
    rides it out: the batch in flight is recorded, its message settled, and a job sent after the restart renders."""
    from httpov.celery import make_app
    from httpov.client import Client

    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = redis_server(data, port, persist=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        settings = settings.with_(broker_url=url, state_url=url, lease_seconds=3.0)
        client = Client(settings, make_app(settings))
        node = workers(concurrency=2, name="node", settings_=settings)
        first = client.submit(slow_scene(tmp_path / "long", 4), count=4)  # one batch: a render process stays free
        wait_for(lambda: len(client.store.running(first.spec.id)) == 1 and _waiting_in_brpop(url), 60,
                 "one batch rendering while the node waits in BRPOP for another")

        server.terminate()  # SHUTDOWN: the append-only file is flushed
        server.wait(20)
        log = tmp_path / "node.log"
        # Redis stays away until the node has seen it gone (at once, nearly always), so that its channel cannot hand
        # the message back; should its event loop be held up elsewhere, Redis comes back after a while all the same
        wait_until(lambda: "Connection to broker lost" in log.read_text(errors="replace"), 15)
        # ... and has tried to reach it again: in 0.2 s, then at most a second apart (httpov.worker.consumer), where
        # kombu's own back-off waited 2, 4, 6 ... 30 s
        wait_until(lambda: "Cannot connect to redis" in log.read_text(errors="replace"), 15)
        server = redis_server(data, port, persist=True)

        second = client.submit(slow_scene(tmp_path / "after", 2), count=1)
        for sub, frames in ((first, 4), (second, 2)):
            final = client.wait(sub.spec.id, timeout=60)
            assert (final.state, final.frames_done) == ("done", frames)
        text = log.read_text(errors="replace")
        assert node.poll() is None and "Unrecoverable error" not in text, text[-3000:]
        # Celery says "Trying again now" for a wait under a second ("in 2.00 seconds" with kombu's back-off)
        lost = text[text.index("Cannot connect to redis"):]
        assert lost.splitlines()[1].startswith("Trying again now"), lost[:300]
        # the first batch's message, taken before the restart, leaves kombu's table: acked, or dropped by the sweep
        table = redis.Redis.from_url(url, decode_responses=True)
        wait_for(lambda: not any(first.spec.id in raw for raw in table.hvals(kombu_layout(settings).unacked)),
                 30, "the first batch's message to leave kombu's unacked table")
    finally:
        server.terminate()
        server.wait(20)


def _cli(settings, log: Path, *args: str) -> subprocess.Popen:
    """`httpov ARGS` as a real process (stdout to log.out, stderr to log.err)."""
    return subprocess.Popen([sys.executable, "-m", "httpov.cli", *args], env=worker_env(settings),
                            stdout=open(log.with_suffix(".out"), "wb"), stderr=open(log.with_suffix(".err"), "wb"),
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _get(url: str) -> tuple[int, str]:
    try:
        request = urllib.request.Request(url, headers={"Accept": "text/html"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_waiting_commands_and_the_page_ride_out_a_redis_restart(tmp_path, settings, workers):
    from httpov.celery import make_app
    from httpov.client import Client

    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = redis_server(data, port, persist=True)  # append-only file: the jobs come back with Redis
    url = f"redis://127.0.0.1:{port}/0"
    settings = settings.with_(broker_url=url, state_url=url, lease_seconds=3.0, outage_seconds=60.0)
    client = Client(settings, make_app(settings))
    out = tmp_path / "logs"
    out.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        submit = _cli(settings, out / "submit", "submit", str(slow_scene(tmp_path / "w", 8)), "--count", "1", "--wait")
        render = _cli(settings, out / "render", "render", str(slow_scene(tmp_path / "r", 6)), "--count", "1",
                      "--workers", "1", "--output", str(tmp_path / "rendered"))
        web_port = free_port()
        web = _cli(settings, out / "web", "web", "--port", str(web_port), "--refresh", "1", "--public-read")
        procs += [submit, render, web]
        wait_for(lambda: (out / "submit.out").read_text().startswith("job "), 60, "submit to queue its job")
        job = (out / "submit.out").read_text().split()[1].rstrip(":")
        watch = _cli(settings, out / "watch", "watch", job, "--interval", "0.5")
        procs.append(watch)
        workers(concurrency=2, settings_=settings)
        wait_for(lambda: job_view(client.store, job).batches_done >= 2, 90, "two batches done")
        wait_for(lambda: "rendering with" in (out / "render.out").read_text(), 30, "render to start its node")

        server.terminate()  # SHUTDOWN: the append-only file is flushed
        server.wait(20)
        down = time.monotonic()
        status, page = _get(f"http://127.0.0.1:{web_port}/")
        assert status == 503 and "Redis unreachable, retrying" in page and 'http-equiv="refresh"' in page, page
        # every waiting command has polled into the outage and said so, and the leases held at the stop ran out
        wait_for(lambda: all("Redis unreachable, retrying" in (out / f"{name}.err").read_text(errors="replace")
                             for name in ("submit", "watch", "render")), 30, "the waiting commands to meet the outage")
        wait_for(outlived(down, settings.lease_seconds), 30, "a lease to pass with Redis down")
        assert submit.poll() is None and watch.poll() is None and render.poll() is None, "they wait it out"
        server = redis_server(data, port, persist=True)

        for name, proc in (("submit", submit), ("watch", watch), ("render", render)):
            assert proc.wait(180) == 0, (out / f"{name}.err").read_text()[-2000:]
            said = (out / f"{name}.err").read_text().count("Redis unreachable, retrying")
            assert said == 1, f"{name} said it {said} times: {(out / f'{name}.err').read_text()[-2000:]}"
        assert job_view(client.store, job).frames_done == 8
        assert "done" in (out / "watch.out").read_text().split("\n\n")[-2]  # its last view
        assert len(list((tmp_path / "rendered").glob("*.png"))) == 6
        status, page = _get(f"http://127.0.0.1:{web_port}/")
        assert status == 200 and f"job-{job}" in page and "Redis unreachable" not in page
    finally:
        for proc in procs:  # Ctrl-C: render stops the render node it started
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        server.wait(20)



def test_a_connection_dropped_mid_command_is_absorbed_by_the_store_client(settings):
    """A blip (Redis closing the store's connection while a command waits for its reply) is retried inside
    redis-py: the caller gets its answer, no ConnectionError."""
    import threading

    from httpov.store import JobStore

    store = JobStore.connect(settings.state_url, settings.prefix)
    other = redis.Redis.from_url(settings.state_url)
    key = f"{settings.prefix}:blip"
    victim = store.r.client_id()  # the pool's one connection, which the BLPOP below uses again
    killed: list[int] = []

    def drop_then_push() -> None:
        wait_for(lambda: any(c["id"] == str(victim) and c["cmd"] == "blpop" for c in other.client_list()), 10,
                 "the store's BLPOP waiting")
        killed.append(other.client_kill_filter(_id=victim))
        other.rpush(key, "ok")

    thread = threading.Thread(target=drop_then_push)
    thread.start()
    try:
        assert tuple(store.r.blpop([key], timeout=10)) == (key, "ok")
    finally:
        thread.join(20)
    assert killed == [1]


def test_a_node_started_before_redis_waits_for_it_and_then_renders(tmp_path, settings, workers):
    """A machine that boots its render node before Redis: the node says it waits (once, not a line a second) and
    takes batches once Redis answers, where it exited on an unrecoverable error; stopped while it waits, it exits."""
    from httpov.celery import make_app
    from httpov.client import Client

    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    settings = settings.with_(broker_url=url, state_url=url)
    node = workers(concurrency=1, name="early", settings_=settings)
    stopped = workers(concurrency=1, name="stopped", settings_=settings)
    log = tmp_path / "early.log"
    said = "httpov: waiting for Redis: cannot reach Redis"
    logs = [log, tmp_path / "stopped.log"]
    wait_for(lambda: all(said in path.read_text(errors="replace") for path in logs), 30, "the nodes to say they wait")
    stopped.send_signal(signal.SIGTERM)  # a node stopped while it waits: a warm shutdown, exit 0
    assert stopped.wait(20) == 0
    server = redis_server(data, port, persist=False)
    try:
        client = Client(settings, make_app(settings))
        sub = client.submit(slow_scene(tmp_path / "late", 1), count=1)
        final = client.wait(sub.spec.id, timeout=60)
        assert (final.state, final.frames_done) == ("done", 1)
        text = log.read_text(errors="replace")
        assert node.poll() is None and "Unrecoverable error" not in text, text[-3000:]
        assert text.count("waiting for Redis") == 1, text[-3000:]
    finally:
        server.terminate()
        server.wait(20)
