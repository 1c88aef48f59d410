"""Lost render nodes, on real workers and povray: a batch whose node died or froze is requeued once whatever the
wait, a thawed node's late output replaces and stitches nothing, a finished job keeps no running batch, and a
requeued batch goes ahead of its job's queued ones. (Split from test_fault_tolerance.py: its file alone was the
longest stretch of one test process.)"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.paths import batch_key
from httpov.store.keys import Keys
from httpov.view import job_view
from httpov.worker import waits
from tests.conftest import kombu_layout, wait_for, write_scene
from tests.integration.faults import SLOW_SCENE, frames_in_results, povray_pids, running_on, slow_scene


@contextlib.contextmanager
def frozen(victim, log: Path) -> Iterator[list[float]]:
    """The render node `victim` frozen (SIGSTOP) for the block and woken (SIGCONT) after it, whatever happened; yields
    a list that then holds when it was woken. After a block that passed, waits for the woken node (its log `log`) to
    end its two tasks."""
    thawed: list[float] = []
    os.killpg(victim.pid, signal.SIGSTOP)
    try:
        yield thawed
    finally:
        thawed.append(time.time())
        os.killpg(victim.pid, signal.SIGCONT)
    wait_for(lambda: log.read_text().count("succeeded in") >= 2, 60, "the thawed node to end its tasks")


def _waits_checked(settings) -> bool:
    """The node's check of its quick waits, which renders with povray as the node starts, is over: a povray of that
    check whose sandbox the node had not let go yet (its limits are set first) would wait for the frozen node, not
    run on as a batch's povray does."""
    return "not checked yet" not in waits.kept(settings)[1]


def _unacked_of(settings, job_id: str) -> int:
    """Messages of the job held in kombu's unacked table (taken by a worker, never acked)."""
    r = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    return sum(job_id in raw for raw in r.hvals(kombu_layout(settings).unacked))


def test_a_lost_batch_is_requeued_once_however_long_it_waits(tmp_path, settings, client, workers, caplog):
    settings = settings.with_(lease_seconds=2.0)
    sub = client.submit(slow_scene(tmp_path / "once", 12), count=4)  # three batches of ~5 s
    victim = workers(concurrency=2, name="victim", settings_=settings.with_(cache_dir=tmp_path / "victimcache"))
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 2, 60, "the victim to render two batches")
    rescuer = workers(concurrency=1, name="rescuer", settings_=settings)
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 3, 60, "the rescuer to take the third batch")
    lost = {b for b, node in running_on(client, sub.spec.id).items() if node.startswith("victim@")}
    os.killpg(victim.pid, signal.SIGKILL)
    # The rescuer renders one lost batch after its own and the other after that: the last one waits in the queue
    # for many leases while the victim's message for it sits in kombu's unacked table, older than two leases.
    final = client.wait(sub.spec.id, timeout=180)
    assert (final.state, final.frames_done) == ("done", 12)
    log = (tmp_path / "rescuer.log").read_text() + caplog.text
    assert "died before starting it" not in log, "a batch the lease sweep requeued was queued a second time"
    requeued = client.store.batches(sub.spec.id)["requeued"]
    assert all(requeued.get(b) == 1 for b in lost), (lost, requeued)
    assert final.batches_requeued == len(lost)
    assert client.store.batches(sub.spec.id)["attempts"] == {b: 2 if b in lost else 1 for b in sub.spec.batches}
    wait_for(lambda: _unacked_of(settings, sub.spec.id) == 0, 30, "the victim's messages to leave kombu's table")
    requeued = client.store.batches(sub.spec.id)["requeued"]
    assert all(requeued.get(b) == 1 for b in lost), (lost, requeued)
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"once_{n:04d}.png" for n in range(1, 13)]
    assert rescuer.poll() is None


def test_a_frozen_nodes_batches_are_requeued_once_and_its_thaw_changes_nothing(tmp_path, settings, client, workers,
                                                                              caplog):
    settings = settings.with_(lease_seconds=2.0)
    victim_settings = settings.with_(cache_dir=tmp_path / "victimcache")
    victim = workers(concurrency=2, name="victim", settings_=victim_settings)
    wait_for(lambda: _waits_checked(victim_settings), 60, "the victim's check of its quick waits")
    sub = client.submit(slow_scene(tmp_path / "frozen", 12), count=4)  # three batches of ~5 s
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 2, 60, "the victim to render two batches")
    workers(concurrency=1, name="rescuer", settings_=settings)
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 3, 60, "the rescuer to take the third batch")
    lost = {b for b, node in running_on(client, sub.spec.id).items() if node.startswith("victim@")}
    # frozen, not dead: its messages stay taken, its leases run out
    with frozen(victim, tmp_path / "victim.log") as thawed:
        final = client.wait(sub.spec.id, timeout=180)
        assert (final.state, final.frames_done) == ("done", 12)
        wait_for(lambda: _unacked_of(settings, sub.spec.id) == 0, 30, "the frozen node's messages to be dropped")
        # its povrays run on (sessions of their own): it must wake holding finished renders, however soon the
        # rescuer finished the job
        wait_for(lambda: not povray_pids(str(tmp_path / "victimcache")), 60, "the frozen node's povrays to end")
    log = (tmp_path / "rescuer.log").read_text() + caplog.text
    assert "died before starting it" not in log, "a batch the lease sweep requeued was queued a second time"
    batches = client.store.batches(sub.spec.id)
    assert batches["requeued"] == {b: 1 for b in lost}
    assert all(batches["done"][b]["node"].startswith("rescuer@") for b in lost)
    # the stored result of each lost batch is the one its done record names, written before the thaw: the woken
    # node's output replaced nothing (today's fence: its lease was taken over), it was discarded, and it says so
    for b in lost:
        result = Path(settings.storage) / batch_key(sub.spec.id, b, batches["done"][b].get("result", ""))
        assert result.stat().st_mtime < thawed[0], f"batch {b}'s stored result was written by the thawed node"
    said = (tmp_path / "victim.log").read_text()
    assert said.count("discarded") >= len(lost), "the woken node says its output was discarded"
    names = frames_in_results(Path(settings.storage), sub.spec.id)
    assert names == [f"frozen_{n:04d}.png" for n in range(1, 13)], "each frame exactly once in the results"


def test_a_frozen_nodes_slices_stitch_nothing_on_thaw(tmp_path, settings, client, workers):
    """A stale slice neither records itself nor stitches its frame over the one its job's live node stitched."""
    settings = settings.with_(lease_seconds=2.0)
    ini = "Width=192\nHeight=144\nAntialias=on\nAntialias_Threshold=0.05\nInitial_Frame=1\nFinal_Frame=1\n"
    victim_settings = settings.with_(cache_dir=tmp_path / "victimcache")
    victim = workers(concurrency=2, name="victim", settings_=victim_settings)
    wait_for(lambda: _waits_checked(victim_settings), 60, "the victim's check of its quick waits")
    sub = client.submit(write_scene(tmp_path / "still", SLOW_SCENE, ini), slices=2)  # two slices of ~5 s
    wait_for(lambda: len(povray_pids(str(tmp_path / "victimcache"))) >= 2, 60, "the victim to render both slices")
    with frozen(victim, tmp_path / "victim.log") as thawed:  # its povrays run on: it wakes holding finished slices
        workers(concurrency=2, name="rescuer", settings_=settings)
        final = client.wait(sub.spec.id, timeout=120)
        assert final.state == "done"
        wait_for(lambda: not povray_pids(str(tmp_path / "victimcache")), 60, "the frozen node's povrays to end")
    done = client.store.batches(sub.spec.id)["done"]
    assert all(info["node"].startswith("rescuer@") for info in done.values())
    frames = list((Path(settings.storage) / "jobs" / sub.spec.id / "frames").iterdir())
    assert len(frames) == 1 and frames[0].stat().st_mtime < thawed[0], "the thawed node stitched the frame again"
    assert (tmp_path / "victim.log").read_text().count("discarded") >= 2
    assert len(list((Path(settings.storage) / "jobs" / sub.spec.id / "batches").iterdir())) == 2


def test_a_finished_job_shows_no_running_batches_and_retry_requeues_none(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0)
    sub = client.submit(slow_scene(tmp_path / "stale", 4), count=1)
    victim = workers(concurrency=2, name="victim", settings_=settings)
    wait_for(lambda: len(running_on(client, sub.spec.id)) == 2, 60, "two batches to run")
    os.killpg(victim.pid, signal.SIGKILL)  # a dead node: nothing of its own will ever release its batches
    client.cancel(sub.spec.id)
    assert client.store.running(sub.spec.id) == {}
    assert not list(client.store.r.scan_iter(match=Keys(settings.prefix).lease_prefix(sub.spec.id) + "*"))
    view = job_view(client.store, sub.spec.id)
    assert (view.batches_running, view.running, view.frames_running) == ({}, [], 0)
    shown = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
    assert shown.exit_code == 0 and " 0 rendering" in shown.output, shown.output

    client.retry(sub.spec.id)
    workers(concurrency=2, name="after", settings_=settings)
    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done) == ("done", 4)
    batches = client.store.batches(sub.spec.id)
    assert batches["requeued"] == {}, "retry queued every missing batch: none was also requeued as lost"
    assert batches["attempts"] == {b: 1 for b in sub.spec.batches}
    wait_for(lambda: _unacked_of(settings, sub.spec.id) == 0, 30, "the victim's messages to leave kombu's table")
    assert client.store.batches(sub.spec.id)["requeued"] == {}


def test_a_requeued_batch_goes_ahead_of_its_jobs_queued_batches(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0)
    sub = client.submit(slow_scene(tmp_path / "ahead", 16), count=2)  # eight batches of ~2.5 s
    victim = workers(concurrency=1, name="victim", settings_=settings.with_(cache_dir=tmp_path / "victimcache"))
    workers(concurrency=1, name="rescuer", settings_=settings)
    wait_for(lambda: sorted(n.split("@")[0] for n in running_on(client, sub.spec.id).values()) == ["rescuer",
             "victim"], 60, "every render process to be busy")
    (lost,) = [b for b, node in running_on(client, sub.spec.id).items() if node.startswith("victim@")]
    os.killpg(victim.pid, signal.SIGKILL)
    wait_for(lambda: not running_on(client, sub.spec.id).get(lost, "").startswith("victim@"), 60,
             "the sweep to requeue the lost batch")
    batches = client.store.batches(sub.spec.id)
    waiting = [b for b in sub.spec.batches if b != lost and b not in batches["done"] and b not in batches["running"]]
    assert len(waiting) >= 3, batches
    final = client.wait(sub.spec.id, timeout=180)
    assert (final.state, final.frames_done) == ("done", 16)
    done = client.store.batches(sub.spec.id)["done"]
    after = [b for b in waiting if done[b]["finished"] > done[lost]["finished"]]
    # the rescuer may have taken one of them the moment before the requeue; every other one comes after
    assert len(after) >= len(waiting) - 1, (lost, waiting, {b: done[b]["finished"] for b in done})
    assert client.store.batches(sub.spec.id)["requeued"] == {lost: 1}
