"""A render node renews its slots' leases in one call a period (httpov.worker.renewal), on real workers and
povray: batches longer than several leases finish without being requeued, and a frozen render process on a live
node has its batch requeued once, its thawed output discarded."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from httpov.paths import batch_key
from httpov.worker.renewal import STAMP
from tests.conftest import wait_for
from tests.integration.faults import frames_in_results, slow_scene


def _notes(cache: Path) -> list[Path]:
    return sorted(cache.glob("leases/*/*.lease"))


def test_a_nodes_processes_render_batches_longer_than_their_lease_renewed_by_the_node(tmp_path, settings, client,
                                                                                      workers):
    settings = settings.with_(lease_seconds=2.0)
    sub = client.submit(slow_scene(tmp_path / "long", 8), count=4)  # two batches of ~5 s: 2.5 leases each
    workers(concurrency=2, name="renewing", settings_=settings)
    cache = Path(settings.cache_dir)
    wait_for(lambda: len(_notes(cache)) == 2, 60, "both render processes to note their batch")
    notes = _notes(cache)
    folder = notes[0].parent
    assert folder.name.startswith("renewing@") and (folder / STAMP).exists()
    assert len({json.loads(note.read_text())["batch"] for note in notes}) == 2, "one note per batch rendering"
    stamp = (folder / STAMP).stat().st_mtime
    wait_for(lambda: (folder / STAMP).stat().st_mtime > stamp, 5, "the node's renewer to pass again")
    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done, final.batches_done) == ("done", 8, 2)
    assert client.store.batches(sub.spec.id)["requeued"] == {}, "a lease ran out under a live render"
    assert frames_in_results(Path(settings.storage), sub.spec.id) == [f"long_{n:04d}.png" for n in range(1, 9)]
    wait_for(lambda: not _notes(cache), 5, "the notes to go with their batches")


def test_a_frozen_render_process_on_a_live_node_loses_its_batch_once(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0, render_pool="prefork")  # render processes: one of them can freeze
    sub = client.submit(slow_scene(tmp_path / "frozen", 12), count=4)  # three batches of ~5 s
    workers(concurrency=3, name="node", settings_=settings)
    cache = Path(settings.cache_dir)
    wait_for(lambda: len(_notes(cache)) == 3, 60, "three render processes to note their batch")
    victim = _notes(cache)[0]
    pid = int(victim.name.split("-")[0])
    running = client.store.running(sub.spec.id)
    os.kill(pid, signal.SIGSTOP)  # the process (its lease keeper) frozen; its node and its povray run on
    try:
        # its note is no longer touched: the node stops renewing it, the lease runs out, the sweep requeues it and
        # one of the node's other processes renders it
        wait_for(lambda: client.store.batches(sub.spec.id)["requeued"], 60, "the frozen process's batch requeued")
        final = client.wait(sub.spec.id, timeout=180)
        assert (final.state, final.frames_done) == ("done", 12)
    finally:
        thawed = time.time()
        os.kill(pid, signal.SIGCONT)
    batches = client.store.batches(sub.spec.id)
    (lost,) = batches["requeued"]
    assert batches["requeued"] == {lost: 1} and lost in running
    result = Path(settings.storage) / batch_key(sub.spec.id, lost, batches["done"][lost].get("result", ""))
    # its task ends (its output discarded, or stopped: the job is done, as its kept subscription says at once)
    wait_for(lambda: (tmp_path / "node.log").read_text().count("succeeded in") >= 4, 60,
             "the thawed process to end its task (three batches and the one requeued)")
    assert result.stat().st_mtime < thawed, "the thawed process's output replaced the stored result"
    names = frames_in_results(Path(settings.storage), sub.spec.id)
    assert names == [f"frozen_{n:04d}.png" for n in range(1, 13)], "each frame exactly once in the results"
