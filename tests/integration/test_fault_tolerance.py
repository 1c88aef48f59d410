"""Lost render nodes, duplicated deliveries, time limits, retries and the blocklist, on real workers and povray."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import free_port, stop_worker, worker_env
from httpov.store.keys import Keys
from httpov.view import job_view
from tests.conftest import TINY_ANIMATION, outlived, pixels, povray_direct, queue_drained, wait_for, write_scene
from tests.integration.faults import (
    crash_script,
    frames_in_results,
    povray_pids,
    redis_server,
    running_on,
    slow_scene,
)


def _node_ready(client, name: str) -> bool:
    return any(n.startswith(name + "@") for n in client.store.live_nodes(within=10))


def test_sigkilled_worker_batches_render_elsewhere_exactly_once(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0)
    scene = slow_scene(tmp_path / "slow", 6)
    sub = client.submit(scene, count=2)  # three batches of two frames, ~2.5 s each
    victim = workers(concurrency=2, name="victim", settings_=settings.with_(cache_dir=tmp_path / "victimcache"))
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 2, 60, "the victim to render two batches")
    workers(concurrency=2, name="rescuer", settings_=settings)
    wait_for(lambda: _node_ready(client, "rescuer"), 30, "the rescuer to start sweeping")
    lost = {b for b, node in running_on(client, sub.spec.id).items() if node.startswith("victim@")}
    assert lost, "the victim finished before it could be killed: the scene is too fast"

    os.killpg(victim.pid, signal.SIGKILL)
    # its povrays are in their own session, out of the group's reach: the parent-death signal must end them
    wait_for(lambda: not povray_pids(str(tmp_path / "victimcache")), 5, "the victim's povray to die with it")

    restarted: set[str] = set()
    def lost_batches_back() -> bool:
        restarted.update(b for b, node in running_on(client, sub.spec.id).items() if node.startswith("rescuer@"))
        restarted.update(client.store.batches(sub.spec.id)["done"])
        return lost <= restarted
    # lease 2 s + a sweep every half second + a free render process (the rescuer's own batch takes ~2.5 s)
    wait_for(lost_batches_back, 60, "the lost batches to be rendered elsewhere")
    # the lease sweep brought each back once: not Celery's visibility timeout (hours), not twice
    requeued = client.store.batches(sub.spec.id)["requeued"]
    assert all(requeued.get(b) == 1 for b in lost), (lost, requeued)

    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done, final.batches_done) == ("done", 6, 3)
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
    assert (final.state, final.frames_done, final.batches_done) == ("done", 4, 4)
    batches = client.store.batches(sub.spec.id)
    assert batches["attempts"] == {b: 1 for b in sub.spec.batches}, "a duplicate delivery rendered a batch again"
    wait_for(lambda: queue_drained(settings), 30, "the duplicates to come up and be dropped")
    assert client.store.batches(sub.spec.id)["attempts"] == {b: 1 for b in sub.spec.batches}
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"dup_{n:04d}.png" for n in range(1, 5)]


def test_time_limit_kills_povray_and_fails_the_batch(tmp_path, settings, client, workers):
    settings = settings.with_(task_time_limit=33)  # soft limit 3 s; a batch of eight slow frames needs ~6 s (four
    scene = slow_scene(tmp_path / "tl", 8)  # took 3.0 s on a quiet machine: the limit raced the batch's end)
    sub = client.submit(scene, count=8)
    workers(concurrency=1, settings_=settings)
    wait_for(lambda: job_view(client.store, sub.spec.id).state == "failed", 60, "the job to fail on its time limit")
    final = job_view(client.store, sub.spec.id)
    assert any("time limit" in line for line in final.errors), final.errors
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 5, "povray to be killed")
    assert client.store.batches(sub.spec.id)["attempts"] == {"f000001-000008": 1}


def test_blocklisted_node_hands_batches_back_and_the_job_completes(tmp_path, settings, client, workers):
    bad = crash_script(tmp_path / "crashing-povray")
    scene = slow_scene(tmp_path / "bl", 6)
    workers(concurrency=1, name="bad", settings_=settings.with_(povray=str(bad)))
    workers(concurrency=1, name="good")
    wait_for(lambda: _node_ready(client, "bad") and _node_ready(client, "good"), 30, "both nodes to start")
    sub = client.submit(scene, count=1)
    final = client.wait(sub.spec.id, timeout=180)
    assert (final.state, final.frames_done) == ("done", 6)
    assert [n.split("@")[0] for n in final.nodes_blocked] == ["bad"]
    batches = client.store.batches(sub.spec.id)
    assert all(info["node"].startswith("good@") for info in batches["done"].values())
    failures = client.store.r.hgetall(Keys(settings.prefix).node_failures(sub.spec.id))
    assert {k.split("@")[0]: int(v) for k, v in failures.items()} == {"bad": 2}, "blocked after 2 failures"
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"bl_{n:04d}.png" for n in range(1, 7)]


def test_a_blocked_node_sends_no_batch_to_a_node_that_stopped_cleanly(tmp_path, settings, client, workers):
    """A node stopped cleanly keeps its last heartbeat's time for live_node_seconds: the blocked node must not pick
    it to send batches to (nothing consumes its queue; the job waited leases for them, then failed all the same)."""
    import socket

    from httpov.broker import QueueLayout
    from httpov.celery import make_app

    good = workers(concurrency=1, name="good")
    wait_for(lambda: _node_ready(client, "good"), 30, "the good node to start")
    stop_worker(good)  # SIGTERM: Celery's warm shutdown, the node's record says 'stopped'
    good_name = f"good@{socket.gethostname()}"
    wait_for(lambda: client.store.nodes()[1].get(good_name, {}).get("stopped"), 30, "the good node's stop")
    # the blocked node's live window is three of its leases: 24 s, for the hand-backs below to fall within it
    bad = settings.with_(lease_seconds=8.0, povray=str(crash_script(tmp_path / "crashing")))
    workers(concurrency=1, name="bad", settings_=bad)
    sub = client.submit(write_scene(tmp_path / "st", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF3\n"), count=1)
    wait_for(lambda: job_view(client.store, sub.spec.id).state == "failed", 60, "the blocked node to fail the job")
    errors = job_view(client.store, sub.spec.id).errors
    assert any(e.startswith("every live render node has failed this job repeatedly (bad@") for e in errors), errors
    layout = QueueLayout.of(make_app(settings))
    assert sum(client.store.r.llen(key) for key in layout.lists(f"{good_name}.dq2")) == 0, "a batch was sent to it"
    handed = max(float(f["at"]) for f in client.store.batches(sub.spec.id)["failed"].values())
    assert handed - client.store.nodes()[0][good_name] < bad.live_node_seconds, "the stopped node's window had passed"


def test_a_handed_back_batch_reaches_the_named_nodes_own_queue(tmp_path, settings, workers):
    """worker_direct: a blocked node sends each batch to `<node>.dq2`, the queue only the named node consumes. Here
    the chosen node does not consume the job's queue at all, so every frame it renders came through its own."""
    import socket

    from httpov.celery import make_app
    from httpov.client import Client
    from tests.conftest import TINY_ANIMATION

    settings = settings.with_(lease_seconds=30.0)  # no lease runs out meanwhile: nothing is requeued by a sweep
    client = Client(settings, make_app(settings))
    scene = write_scene(tmp_path / "direct", TINY_ANIMATION, "Width=16\nHeight=12\nInitial_Frame=1\nFinal_Frame=3\n")
    sub = client.submit(scene, count=1)  # three batches on the job's queue, no node running yet
    host = socket.gethostname()
    client.store.r.sadd(Keys(settings.prefix).blocked(sub.spec.id), f"bad@{host}")
    workers(concurrency=1, name="good", settings_=settings.with_(queue=settings.queue + "-elsewhere"))
    wait_for(lambda: _node_ready(client, "good"), 30, "the good node to start")
    workers(concurrency=1, name="bad", settings_=settings)  # the only consumer of the job's queue: blocked
    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done) == ("done", 3)
    done = client.store.batches(sub.spec.id)["done"]
    assert sorted(info["node"] for info in done.values()) == [f"good@{host}"] * 3
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"direct_{n:04d}.png" for n in range(1, 4)]


def test_same_failure_on_two_nodes_fails_the_job_with_the_log(tmp_path, settings, client, workers):
    bad = crash_script(tmp_path / "crashing-povray")
    scene = slow_scene(tmp_path / "sf", 1)
    for name in ("x", "y"):
        workers(concurrency=1, name=name, settings_=settings.with_(povray=str(bad)))
    wait_for(lambda: _node_ready(client, "x") and _node_ready(client, "y"), 30, "both nodes to start")
    sub = client.submit(scene)
    wait_for(lambda: job_view(client.store, sub.spec.id).state == "failed", 60, "the job to fail")
    result = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
    print(result.output)
    assert "the same failure on 2 render nodes" in result.output
    failure = client.store.batches(sub.spec.id)["failed"]["f000001-000001"]
    assert failure["final"] and failure["lines"], failure
    assert all(line.strip() in result.output for line in failure["lines"]), "the povray log is shown"
    attempts = client.store.batches(sub.spec.id)["attempts"]
    assert 2 <= attempts["f000001-000001"] <= 3


def test_redis_restart_mid_job_loses_nothing(tmp_path, settings, workers):
    from httpov.celery import make_app
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
        wait_for(lambda: job_view(client.store, sub.spec.id).batches_done >= 2, 90, "two batches done")

        server.terminate()  # SHUTDOWN: the append-only file is flushed
        server.wait(20)
        stopped = time.monotonic()
        down = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
        assert down.exit_code == 5, down.output
        assert "cannot reach Redis" in down.output and "redis-server" in down.output
        # the leases of running batches, renewed until the stop, run out while Redis is down
        wait_for(outlived(stopped, settings.lease_seconds), 30, "a lease to pass with Redis down")
        server = redis_server(data, port, persist=True)

        final = client.wait(sub.spec.id, timeout=180)
        assert (final.state, final.frames_done, final.batches_done) == ("done", 8, 8)
        assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"rr_{n:04d}.png" for n in range(1, 9)]
    finally:
        server.terminate()
        server.wait(20)


class _SlowUpload:
    """Real local storage whose uploads last until `done()` says so (a big result on a slow link)."""

    def __init__(self, storage, done: Callable[[], bool]) -> None:
        self._storage, self._done = storage, done

    def put_file(self, key: str, path: Path) -> None:
        wait_for(self._done, 60, "the upload's time to pass")
        self._storage.put_file(key, path)

    def __getattr__(self, name: str):
        return getattr(self._storage, name)


def test_a_live_batch_keeps_its_lease_outside_povray(tmp_path, settings, client):
    from httpov.worker.batch import RenderNode
    from httpov.worker.cache import SceneCache
    from tests.conftest import TINY_ANIMATION

    settings = settings.with_(lease_seconds=1.0)
    sub = client.submit(write_scene(tmp_path / "up", TINY_ANIMATION, "Width=8\nHeight=8\n"))
    sweeps = [0, -1]  # done by the other nodes; done when the upload began

    def several_leases_swept() -> bool:  # the other nodes swept all through three leases during the upload
        sweeps[1] = sweeps[0] if sweeps[1] < 0 else sweeps[1]
        return sweeps[0] - sweeps[1] >= 3 * settings.lease_seconds / settings.sweep_seconds
    node = RenderNode(settings, client.store, _SlowUpload(client.storage, several_leases_swept),
                      SceneCache(settings.cache_dir, settings.cache_max_bytes))
    reaped: list = []
    stop = threading.Event()

    def sweep() -> None:  # what every other render node does meanwhile
        while not stop.wait(settings.sweep_seconds):
            reaped.extend(client.reap("other@host"))
            sweeps[0] += 1
    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        outcome = node.run(sub.spec.id, sub.spec.batches[0], token="t1", node="busy@host")
    finally:
        stop.set()
        sweeper.join()
    assert outcome.status == "rendered", outcome
    assert reaped == [], "a batch whose node was alive and uploading was requeued"
    assert client.store.batches(sub.spec.id)["requeued"] == {}


def test_a_failed_job_forgets_its_running_batches_in_the_same_step(tmp_path, settings, client):
    from tests.conftest import TINY_ANIMATION

    sub = client.submit(write_scene(tmp_path / "f", TINY_ANIMATION, "Width=8\nHeight=8\nFinal_Frame=3\n"))
    first, second, third = sub.spec.batches
    for batch in (first, second):
        assert client.store.start_batch(sub.spec.id, batch, f"{batch}-task/1", "gone@host", 60) == "ok"
    client.store.fail_batch(sub.spec.id, third, "parse error", ["line 1"], final=True, node="n@host")
    assert client.store.state(sub.spec.id) == "failed"
    assert client.store.running(sub.spec.id) == {}
    assert not list(client.store.r.scan_iter(match=Keys(settings.prefix).lease_prefix(sub.spec.id) + "*"))
    # a render still running when its job failed stops on its next renewal, told why
    assert client.store.refresh(sub.spec.id, first, f"{first}-task/1", 60) == "failed"
    assert job_view(client.store, sub.spec.id).batches_running == {}
