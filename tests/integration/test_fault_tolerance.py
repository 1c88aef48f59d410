"""Lost render nodes, duplicated deliveries, time limits, retries and the blocklist, on real workers and povray."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local import free_port, worker_env
from tests.conftest import pixels, povray_direct, queue_drained, wait_for
from tests.integration.faults import crash_script, frames_in_results, povray_pids, redis_server, slow_scene


def _running_on(client, job_id: str) -> dict[str, str]:
    return {b: info["node"] for b, info in client.store.running(job_id).items()}


def _node_ready(client, name: str) -> bool:
    return any(n.startswith(name + "@") for n in client.store.live_nodes(within=10))


def test_sigkilled_worker_batches_render_elsewhere_exactly_once(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0)
    scene = slow_scene(tmp_path / "slow", 6)
    sub = client.submit(scene, count=2)  # three batches of two frames, ~2.5 s each
    victim = workers(concurrency=2, name="victim", settings_=settings.with_(cache_dir=tmp_path / "victimcache"))
    wait_for(lambda: len(_running_on(client, sub.spec.id)) == 2, 60, "the victim to render two batches")
    workers(concurrency=2, name="rescuer", settings_=settings)
    wait_for(lambda: _node_ready(client, "rescuer"), 30, "the rescuer to start sweeping")
    lost = {b for b, node in _running_on(client, sub.spec.id).items() if node.startswith("victim@")}
    assert lost, "the victim finished before it could be killed: the scene is too fast"

    killed = time.monotonic()
    os.killpg(victim.pid, signal.SIGKILL)
    # its povrays are in their own session, out of the group's reach: the parent-death signal must end them
    wait_for(lambda: not povray_pids(str(tmp_path / "victimcache")), 5, "the victim's povray to die with it")

    restarted: dict[str, float] = {}
    def lost_batches_back() -> bool:
        for batch, node in _running_on(client, sub.spec.id).items():
            if batch in lost and node.startswith("rescuer@"):
                restarted.setdefault(batch, time.monotonic() - killed)
        done = client.store.batches(sub.spec.id)["done"]
        for batch in lost & set(done):
            restarted.setdefault(batch, time.monotonic() - killed)
        return set(restarted) == lost
    wait_for(lost_batches_back, 60, "the lost batches to be rendered elsewhere")
    # lease 2 s + a sweep every second + a free render process (the rescuer's own batch takes ~2.5 s)
    assert max(restarted.values()) < 10, f"recovery took {restarted}"

    final = client.wait(sub.spec.id, timeout=120)
    assert (final["state"], final["frames_done"], final["batches_done"]) == ("done", 6, 3)
    names = frames_in_results(Path(settings.storage), sub.spec.id)
    assert names == [f"slow_{n:04d}.png" for n in range(1, 7)], "each frame exactly once in the results"
    done = client.store.batches(sub.spec.id)["done"]
    assert all(done[b]["node"].startswith("rescuer@") for b in lost)
    images = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    for n, image in enumerate(images, 1):
        assert pixels(image) == pixels(tmp_path / "ref" / f"ref{n}.png"), f"frame {n}"


def test_duplicate_and_redelivered_messages_render_nothing_twice(tmp_path, settings, client, workers):
    scene = slow_scene(tmp_path / "dup", 4)
    sub = client.submit(scene, count=1)
    workers(concurrency=2)
    wait_for(lambda: client.store.running(sub.spec.id), 60, "a batch to start")
    batch, info = next(iter(client.store.running(sub.spec.id).items()))
    task_id = info["token"].split("/")[0]
    # the broker hands the running task's own message out again (as after a visibility timeout or a
    # reconnect), and every batch is queued a second time
    client.celery.send_task("httpov.render_batch", queue=settings.queue, task_id=task_id,
                            kwargs={"job_id": sub.spec.id, "batch": batch})
    client._send(sub.spec, sub.spec.batches)
    final = client.wait(sub.spec.id, timeout=120)
    assert (final["state"], final["frames_done"], final["batches_done"]) == ("done", 4, 4)
    batches = client.store.batches(sub.spec.id)
    assert batches["attempts"] == {b: 1 for b in sub.spec.batches}, "a duplicate delivery rendered a batch again"
    wait_for(lambda: queue_drained(settings), 30, "the duplicates to come up and be dropped")
    assert client.store.batches(sub.spec.id)["attempts"] == {b: 1 for b in sub.spec.batches}
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"dup_{n:04d}.png" for n in range(1, 5)]


def test_time_limit_kills_povray_and_fails_the_batch(tmp_path, settings, client, workers):
    settings = settings.with_(task_time_limit=33)  # soft limit 3 s; a batch of four slow frames needs ~5 s
    scene = slow_scene(tmp_path / "tl", 4)
    sub = client.submit(scene, count=4)
    workers(concurrency=1, settings_=settings)
    wait_for(lambda: client.status(sub.spec.id)[0]["state"] == "failed", 60, "the job to fail on its time limit")
    final = client.status(sub.spec.id)[0]
    assert any("time limit" in line for line in final["errors"]), final["errors"]
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 5, "povray to be killed")
    assert client.store.batches(sub.spec.id)["attempts"] == {"f000001-000004": 1}


def test_blocklisted_node_hands_batches_back_and_the_job_completes(tmp_path, settings, client, workers):
    bad = crash_script(tmp_path / "crashing-povray")
    scene = slow_scene(tmp_path / "bl", 6)
    workers(concurrency=1, name="bad", settings_=settings.with_(povray=str(bad)))
    workers(concurrency=1, name="good")
    wait_for(lambda: _node_ready(client, "bad") and _node_ready(client, "good"), 30, "both nodes to start")
    sub = client.submit(scene, count=1)
    final = client.wait(sub.spec.id, timeout=180)
    assert (final["state"], final["frames_done"]) == ("done", 6)
    assert [n.split("@")[0] for n in final["nodes_blocked"]] == ["bad"]
    batches = client.store.batches(sub.spec.id)
    assert all(info["node"].startswith("good@") for info in batches["done"].values())
    failures = client.store.r.hgetall(f"{settings.prefix}:job:{sub.spec.id}:node_failures")
    assert {k.split("@")[0]: int(v) for k, v in failures.items()} == {"bad": 2}, "blocked after 2 failures"
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"bl_{n:04d}.png" for n in range(1, 7)]


def test_same_failure_on_two_nodes_fails_the_job_with_the_log(tmp_path, settings, client, workers):
    bad = crash_script(tmp_path / "crashing-povray")
    scene = slow_scene(tmp_path / "sf", 1)
    for name in ("x", "y"):
        workers(concurrency=1, name=name, settings_=settings.with_(povray=str(bad)))
    wait_for(lambda: _node_ready(client, "x") and _node_ready(client, "y"), 30, "both nodes to start")
    sub = client.submit(scene)
    wait_for(lambda: client.status(sub.spec.id)[0]["state"] == "failed", 60, "the job to fail")
    result = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
    print(result.output)
    assert "the same failure on 2 render nodes" in result.output
    failure = client.store.batches(sub.spec.id)["failed"]["f000001-000001"]
    assert failure["final"] and failure["lines"], failure
    assert all(line.strip() in result.output for line in failure["lines"]), "the povray log is shown"
    attempts = client.store.batches(sub.spec.id)["attempts"]
    assert 2 <= attempts["f000001-000001"] <= 3


def test_redis_restart_mid_job_loses_nothing(tmp_path, settings, workers):
    from httpov.app import make_app
    from httpov.client import Client

    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = redis_server(data, port, persist=True)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        settings = settings.with_(broker_url=url, state_url=url, lease_seconds=3.0)
        client = Client(settings, make_app(settings))
        sub = client.submit(slow_scene(tmp_path / "rr", 8), count=1)
        workers(concurrency=2, settings_=settings)
        wait_for(lambda: client.status(sub.spec.id)[0]["batches_done"] >= 2, 90, "two batches done")

        server.terminate()  # SHUTDOWN: the append-only file is flushed
        server.wait(20)
        down = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
        assert down.exit_code == 5, down.output
        assert "cannot reach Redis" in down.output and "redis-server" in down.output
        time.sleep(4)  # longer than a lease: leases of running batches may expire while Redis is down
        server = redis_server(data, port, persist=True)

        final = client.wait(sub.spec.id, timeout=180)
        assert (final["state"], final["frames_done"], final["batches_done"]) == ("done", 8, 8)
        assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"rr_{n:04d}.png" for n in range(1, 9)]
    finally:
        server.terminate()
        server.wait(20)
