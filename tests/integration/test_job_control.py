"""`httpov cancel / pause / resume / retry` and `--priority`, through the CLI, on real workers and povray."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import stop_worker, worker_env
from tests.conftest import TINY_ANIMATION, queue_drained, wait_for, write_scene
from tests.integration.faults import crash_script, frames_in_results, povray_pids, slow_scene


def _cli(settings, *args: str):
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


def test_cancel_drops_queued_batches_and_kills_running_povray(tmp_path, settings, client, workers):
    sub = client.submit(slow_scene(tmp_path / "c", 8), count=2)
    workers(concurrency=2)
    wait_for(lambda: povray_pids(str(settings.cache_dir)), 60, "povray to start")
    assert _cli(settings, "cancel", sub.spec.id).exit_code == 0
    cancelled = time.monotonic()
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 10, "every povray of the job to be killed")
    print(f"povray gone {time.monotonic() - cancelled:.2f}s after cancel (lease tick {settings.lease_seconds / 4}s)")
    before = client.store.batches(sub.spec.id)
    wait_for(lambda: queue_drained(settings), 30, "the queued batches to come up and be dropped")
    after = client.store.batches(sub.spec.id)
    assert after["attempts"] == before["attempts"] and not after["running"]
    assert len(after["done"]) < 4 and client.store.state(sub.spec.id) == "cancelled"
    assert not povray_pids(str(settings.cache_dir))
    assert _cli(settings, "cancel", sub.spec.id).exit_code == 4  # already cancelled


def test_pause_lets_running_batches_finish_and_resume_renders_the_rest(tmp_path, settings, client, workers):
    sub = client.submit(slow_scene(tmp_path / "p", 5), count=1)
    workers(concurrency=1)
    wait_for(lambda: client.store.running(sub.spec.id), 60, "a batch to start")
    assert _cli(settings, "pause", sub.spec.id).exit_code == 0
    wait_for(lambda: len(client.store.batches(sub.spec.id)["parked"]) >= 3, 30, "queued batches to be parked")
    wait_for(lambda: not client.store.running(sub.spec.id), 30, "the running batch to finish")
    # no message left to take and none held: nothing can start any more, whatever the node does next
    wait_for(lambda: queue_drained(settings), 30, "every message of the job to be taken and parked")
    paused = client.store.batches(sub.spec.id)
    assert not client.store.running(sub.spec.id)
    assert client.store.state(sub.spec.id) == "paused"
    assert len(paused["done"]) + len(paused["parked"]) == 5, paused
    assert 1 <= len(paused["done"]) <= 2, "the batch running at pause finished, nothing new started"
    resumed = _cli(settings, "resume", sub.spec.id)
    assert resumed.exit_code == 0 and f"({len(paused['parked'])} batch(es) requeued)" in resumed.output
    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done) == ("done", 5)
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"p_{n:04d}.png" for n in range(1, 6)]
    assert _cli(settings, "resume", sub.spec.id).exit_code == 4  # not paused


def test_retry_renders_only_missing_and_failed_batches(tmp_path, settings, client, workers):
    # a job failed by a broken node: retried once the node is replaced, every batch renders. The broken node is the
    # farm's first: a node stopped before it would still count as live for live_node_seconds, and the blocked node
    # would hand batches to it, holding the job's failure back by leases (10 s more, when this part came second)
    bad = crash_script(tmp_path / "crashing-povray")
    failed = client.submit(write_scene(tmp_path / "f", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF3\n"),
                           count=1)
    broken = workers(concurrency=1, name="broken", settings_=settings.with_(povray=str(bad)))
    wait_for(lambda: client.store.state(failed.spec.id) == "failed", 60, "the broken node to fail the job")
    stop_worker(broken)
    workers(concurrency=1, name="fixed")
    assert _cli(settings, "retry", failed.spec.id).exit_code == 0
    final = client.wait(failed.spec.id, timeout=120)
    assert (final.state, final.frames_done, final.nodes_blocked) == ("done", 3, [])

    # a job cancelled after a batch: its other batches render again, the done one is kept
    sub = client.submit(slow_scene(tmp_path / "r", 4), count=1)
    wait_for(lambda: len(client.store.batches(sub.spec.id)["done"]) >= 1, 60, "a batch to be done")
    assert _cli(settings, "cancel", sub.spec.id).exit_code == 0
    wait_for(lambda: not client.store.running(sub.spec.id), 20, "running batches to stop")
    first = client.store.batches(sub.spec.id)["done"]
    assert 1 <= len(first) < 4

    result = _cli(settings, "retry", sub.spec.id)
    assert result.exit_code == 0 and f"{4 - len(first)} batch(es) queued again" in result.output
    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done) == ("done", 4)
    assert {b: client.store.batches(sub.spec.id)["done"][b] for b in first} == first, "done batches kept"
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"r_{n:04d}.png" for n in range(1, 5)]


def test_high_priority_job_goes_before_a_low_one_already_queued(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "pr", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF4\n")
    low = client.submit(scene, count=1, priority=1, name="low")
    high = _cli(settings, "submit", str(scene), "--count", "1", "--priority", "8", "--name", "high")
    assert high.exit_code == 0
    high_id = high.output.split()[1].rstrip(":")
    workers(concurrency=1)
    client.wait(low.spec.id, timeout=120)
    client.wait(high_id, timeout=120)
    started = sorted([(info["finished"], "high") for info in client.store.batches(high_id)["done"].values()]
                     + [(info["finished"], "low") for info in client.store.batches(low.spec.id)["done"].values()])
    assert [who for _, who in started] == ["high"] * 4 + ["low"] * 4


def test_cancel_kills_povray_at_the_next_tick_not_the_next_lease_refresh(tmp_path, settings, client, workers):
    # a long lease: its first refresh comes 30 s into the batch, so only the per-tick look at the job's state can
    # stop povray within the bound below (the figures: scripts/bench_cancel.py)
    settings = settings.with_(lease_seconds=120.0)
    sub = client.submit(slow_scene(tmp_path / "k", 40), count=20)
    workers(concurrency=2, settings_=settings)
    wait_for(lambda: len(client.store.running(sub.spec.id)) == 2 and povray_pids(str(settings.cache_dir)), 60,
             "two batches to be rendering")
    cancel = subprocess.run([sys.executable, "-m", "httpov.cli", "cancel", sub.spec.id], env=worker_env(settings),
                            capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0 and f"job {sub.spec.id} cancelled" in cancel.stdout, cancel.stderr
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 10, "every povray of the job to be killed")
    wait_for(lambda: not client.store.running(sub.spec.id), 10, "the running batches to be released")
    assert client.store.batches(sub.spec.id)["done"] == {}


def test_cancel_stops_povray_by_its_message_not_by_a_poll(tmp_path, settings, client, workers):
    # the node's own looks at the job's state are a minute apart (a 2-minute lease refreshed every 30 s, the state
    # read every 60 s): povray gone within seconds can only be the stop message `cancel` publishes
    settings = settings.with_(lease_seconds=120.0, stop_poll_seconds=60.0)
    sub = client.submit(slow_scene(tmp_path / "m", 40), count=20)
    workers(concurrency=2, settings_=settings)
    wait_for(lambda: len(client.store.running(sub.spec.id)) == 2 and len(povray_pids(str(settings.cache_dir))) >= 2,
             60, "two batches to be rendering")
    assert _cli(settings, "cancel", sub.spec.id).exit_code == 0
    wait_for(lambda: not povray_pids(str(settings.cache_dir)), 5, "every povray of the job to be killed")
    wait_for(lambda: not client.store.running(sub.spec.id), 10, "the running batches to be released")
    assert client.store.batches(sub.spec.id)["done"] == {}


def test_cancel_pause_and_status_never_import_celery(tmp_path, settings, client):
    """What a control command costs is mostly imports: the ones that only touch job state need no Celery."""
    job = client.submit(write_scene(tmp_path / "s", TINY_ANIMATION, "Width=8\nHeight=6\n"), count=1)
    probe = ("import sys\nfrom httpov.cli import cli\n"
             "for args in (['status', sys.argv[1]], ['pause', sys.argv[1]], ['cancel', sys.argv[1]]):\n"
             "    cli(args, standalone_mode=False)\n"
             "print('celery imported' if 'celery' in sys.modules else 'no celery')\n")
    run = subprocess.run([sys.executable, "-c", probe, job.spec.id], env=worker_env(settings), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "no celery" and client.store.state(job.spec.id) == "cancelled"


def test_priority_moves_a_queued_jobs_batches_up_or_down(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "pq", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF3\n")
    # three users, so each job keeps its whole window (one user's jobs would split theirs: test_fair_share.py)
    first, second, third = (client.submit(scene, count=1, name=name, user=name)
                            for name in ("first", "second", "third"))
    lowered = _cli(settings, "priority", first.spec.id, "1")
    assert lowered.exit_code == 0 and "3 queued batch(es) moved" in lowered.output
    assert _cli(settings, "priority", third.spec.id, "9").exit_code == 0
    assert _cli(settings, "priority", second.spec.id, "10").exit_code == 2
    assert client.store.spec(first.spec.id).priority == 1
    workers(concurrency=1)
    for sub in (first, second, third):
        client.wait(sub.spec.id, timeout=120)
    order = sorted((info["finished"], name) for sub, name in ((first, "first"), (second, "second"), (third, "third"))
                   for info in client.store.batches(sub.spec.id)["done"].values())
    assert [name for _, name in order] == ["third"] * 3 + ["second"] * 3 + ["first"] * 3
    assert _cli(settings, "priority", first.spec.id, "5").exit_code == 4  # done: nothing queued any more


def test_retry_frames_renders_those_frames_again_and_the_history_says_so(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "rf", TINY_ANIMATION, "Width=24\nHeight=64\n+KFI1 +KFF4\n")  # 2 slices of 32
    whole = client.submit(scene, count=1)
    sliced = client.submit(scene, slices=2)
    workers(concurrency=2)
    for sub in (whole, sliced):
        client.wait(sub.spec.id, timeout=120)
    before = {sub.spec.id: client.store.batches(sub.spec.id)["done"] for sub in (whole, sliced)}
    frames_before = frames_in_results(Path(settings.storage), whole.spec.id)

    assert _cli(settings, "retry", whole.spec.id, "--frames", "9").exit_code == 2
    assert _cli(settings, "retry", whole.spec.id, "--frames", "3-2").exit_code == 2
    result = _cli(settings, "retry", whole.spec.id, "--frames", "2-3")
    assert result.exit_code == 0 and "2 batch(es) queued again" in result.output
    assert "2 batch(es) queued again" in _cli(settings, "retry", sliced.spec.id, "--frames", "4").output
    for sub in (whole, sliced):
        final = client.wait(sub.spec.id, timeout=120)
        assert (final.state, final.frames_done) == ("done", 4)
    after = client.store.batches(whole.spec.id)["done"]
    again = {b for b in after if after[b]["finished"] != before[whole.spec.id][b]["finished"]}
    assert again == {"f000002-000002", "f000003-000003"}
    after = client.store.batches(sliced.spec.id)["done"]
    again = {b for b in after if after[b]["finished"] != before[sliced.spec.id][b]["finished"]}
    assert {b[:14] for b in again} == {"f000004-000004"} and len(again) == 2
    assert frames_in_results(Path(settings.storage), whole.spec.id) == frames_before
    status = _cli(settings, "status", whole.spec.id)
    assert "frames 2-3 rendered again (2 batch(es))" in status.output
    history = client.store.batches(sliced.spec.id)["history"]
    assert [(h.get("kind"), h["what"]) for h in history] == [("retry", "retried"),  # elapsed leaves out the gap
                                                             (None, "frame 4 rendered again (2 batch(es))")]


def test_cancel_pause_and_resume_take_several_jobs(tmp_path, settings, client):
    scene = write_scene(tmp_path / "m", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF2\n")
    a, b = (client.submit(scene, count=1).spec.id for _ in range(2))
    assert _cli(settings, "pause", a, b).exit_code == 0
    assert [client.store.state(j) for j in (a, b)] == ["paused", "paused"]
    result = _cli(settings, "resume", a, "nosuchjob", b)
    assert result.exit_code == 4 and f"job {a} resumed" in result.output and f"job {b} resumed" in result.output
    assert [client.store.state(j) for j in (a, b)] == ["running", "running"]
    assert _cli(settings, "cancel", a, b).exit_code == 0
    assert [client.store.state(j) for j in (a, b)] == ["cancelled", "cancelled"]
    assert _cli(settings, "cancel", a).exit_code == 4
