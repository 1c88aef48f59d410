"""A render node renews its processes' leases in one call (httpov.worker.renewal), on the real Redis: what is renewed,
what is not (a process that stopped touching its note), and what a keeper hears back."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from httpov.plan import JobSpec
from httpov.states import JobState
from httpov.store import JobStore
from httpov.worker.lease import LeaseKeeper
from httpov.worker.renewal import STAMP, LeaseNote, Renewer, lease_folder
from tests.conftest import wait_for


def _job(store: JobStore, job_id: str, batches: int) -> list[str]:
    ids = [f"{n}-{n}" for n in range(1, batches + 1)]
    spec = JobSpec(id=job_id, name="r", scene_key="scenes/r.zip", root="", pov="scene.pov", options={}, initial=1,
                   final=batches, first=1, last=batches, width=8, height=8, count=1, created=time.time(), batches=ids)
    store.create(spec, user="ann")
    store.publish(job_id)
    return ids


def _ttl(store: JobStore, job_id: str, batch_id: str) -> float:
    return store.r.pttl(store.keys.lease(job_id, batch_id)) / 1000


def test_refresh_many_renews_the_leases_held_and_answers_each(store: JobStore):
    a, b, c = _job(store, "j1", 3)
    _job(store, "j2", 1)
    for batch, token in ((a, "t/a"), (b, "t/b"), (c, "t/c")):
        assert store.start_batch("j1", batch, token, "n1@h", 1.0) == "ok"
    assert store.start_batch("j2", "1-1", "t/x", "n1@h", 1.0) == "ok"
    store.transition("j2", JobState.CANCELLED)
    states = store.refresh_many([("j1", a, "t/a", 0.5), ("j1", b, "someone-else", None), ("j1", c, "t/c", None),
                                 ("j2", "1-1", "t/x", None), ("gone", "1-1", "t/y", None)], 30.0)
    assert states == ["running", "lost", "running", "cancelled", "missing"]
    assert _ttl(store, "j1", a) > 20 and _ttl(store, "j1", c) > 20
    assert _ttl(store, "j1", b) <= 1.0, "a lease held by another token is left as it was"
    running = store.running("j1")
    assert running[a].get("progress") == 0.5 and "progress" not in running[b]
    assert store.refresh("j1", a, "t/a", 30.0) == "running"  # one entry: the render process's own refresh


def test_the_renewer_renews_fresh_notes_skips_stale_ones_and_answers_a_lost_one(store: JobStore, tmp_path: Path):
    a, b, c = _job(store, "j1", 3)
    for batch in (a, b, c):
        assert store.start_batch("j1", batch, f"t/{batch}", "n1@h", 1.0) == "ok"
    folder = lease_folder(tmp_path / "cache", "n1@h/odd name")
    assert folder.parent == tmp_path / "cache" / "leases" and "/" not in folder.name
    notes = {batch: LeaseNote(folder, "j1", batch, f"t/{batch}", 8.0) for batch in (a, b, c)}
    for batch, note in notes.items():
        assert note.touch(0.25 if batch == a else None)
    old = time.time() - 5.0  # b's process stopped touching its note 5 s ago (frozen): not renewed
    os.utime(notes[b].path, (old, old))
    store.r.set(store.keys.lease("j1", c), "taken-over", px=1000)  # c's batch went to another execution
    assert not notes[a].renewed(), "no renewer has run yet: a keeper renews its own lease"

    assert Renewer(store, folder, 8.0).renew() == 2
    assert notes[a].renewed() and (folder / STAMP).exists()
    assert _ttl(store, "j1", a) > 7.0 and _ttl(store, "j1", b) <= 1.0
    assert store.running("j1")[a]["progress"] == 0.25
    assert notes[a].answer() is None and notes[b].answer() is None
    assert notes[c].answer() == "lost"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"

    dead = time.time() - 60.0  # a note untouched for several leases: its process is gone, the note goes
    os.utime(notes[b].path, (dead, dead))
    Renewer(store, folder, 8.0).renew()
    assert not notes[b].path.exists()
    notes[a].remove()
    assert not notes[a].path.exists() and not notes[a].touch(0.5), "a removed note is never written again"
    assert json.loads(notes[c].path.read_text())["token"] == f"t/{c}"


class Counting:
    """A JobStore whose refresh and state reads are counted (the rest is the real one)."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.refreshes = store, 0

    def refresh(self, *args: object, **kwargs: object) -> str:
        self.refreshes += 1
        return self.store.refresh(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_a_keeper_leaves_renewal_to_its_node_and_hears_the_nodes_answer(store: JobStore, tmp_path: Path):
    (a,) = _job(store, "j1", 1)
    assert store.start_batch("j1", a, "t/a", "n1@h", 2.0) == "ok"
    folder = lease_folder(tmp_path / "cache", "n1@h")
    renewer = Renewer(store, folder, 2.0)
    renewer.renew()  # the node's renewer runs (its stamp is fresh)
    counting = Counting(store)
    note = LeaseNote(folder, "j1", a, "t/a", 2.0)
    with LeaseKeeper(counting, "j1", a, "t/a", 2.0, note=note) as keeper:  # type: ignore[arg-type]
        began = time.monotonic()
        while time.monotonic() - began < 3.0:  # a lease and a half, the node renewing every lease / 4
            renewer.renew()
            assert keeper.live
            time.sleep(0.5)
        assert _ttl(store, "j1", a) > 1.0, "the lease lives on: the node renewed it"
        assert counting.refreshes == 0, "the keeper renewed nothing itself while its node did"
        keeper.progress = 0.5
        wait_for(lambda: json.loads(note.path.read_text())["progress"] == 0.5, 5, "the progress in the note")
        renewer.renew()
        assert store.running("j1")[a]["progress"] == 0.5, "the progress reached the batch's record (the ETA)"
        store.r.set(store.keys.lease("j1", a), "another/execution", px=5000)  # the batch was taken over
        renewer.renew()
        wait_for(lambda: not keeper.live, 5, "the keeper to hear that its batch was lost")
        assert keeper.state == "lost"
    assert not note.path.exists()


def test_a_keeper_whose_node_renews_nothing_renews_its_own_lease(store: JobStore, tmp_path: Path):
    (a,) = _job(store, "j1", 1)
    assert store.start_batch("j1", a, "t/a", "n1@h", 2.0) == "ok"
    counting = Counting(store)
    note = LeaseNote(lease_folder(tmp_path / "cache", "n1@h"), "j1", a, "t/a", 2.0)  # no renewer runs on this node
    with LeaseKeeper(counting, "j1", a, "t/a", 2.0, note=note) as keeper:  # type: ignore[arg-type]
        wait_for(lambda: counting.refreshes >= 3, 10, "the keeper's own refreshes")
        assert keeper.live and _ttl(store, "j1", a) > 1.0


def test_a_keeper_lets_its_lease_go_past_the_nodes_time_limit(store: JobStore, tmp_path: Path):
    """A render slot stuck outside povray (a hung download or upload) keeps its thread, and so its keeper, alive: past
    the node's hard time limit (`until`) the keeper stops noting and renewing, and the lease runs out for the sweep
    to requeue the batch, as when Celery killed a prefork render process there."""
    (a,) = _job(store, "j1", 1)
    assert store.start_batch("j1", a, "t/a", "n1@h", 1.0) == "ok"
    folder = lease_folder(tmp_path / "cache", "n1@h")
    renewer = Renewer(store, folder, 1.0)
    note = LeaseNote(folder, "j1", a, "t/a", 1.0)
    with LeaseKeeper(store, "j1", a, "t/a", 1.0, note=note, until=time.monotonic() + 1.5):
        began = time.monotonic()
        while time.monotonic() - began < 1.2:  # renewed while within the limit
            renewer.renew()
            time.sleep(0.2)
        assert _ttl(store, "j1", a) > 0.5
        wait_for(lambda: not note.path.exists(), 5, "the keeper to let its note go")
        assert renewer.renew() == 0, "nothing left for the node to renew"
        wait_for(lambda: store.r.get(store.keys.lease("j1", a)) is None, 5, "the lease to run out")


def test_a_kept_subscription_hears_a_stop_announced_before_its_next_listener(store: JobStore):
    """A render process's stops subscription is kept from batch to batch (made before the next take), so the keeper
    reads no state after subscribing: a stop announced between the take and the listener is still heard."""
    _job(store, "j1", 1)
    (b,) = _job(store, "j2", 1)
    first = store.listen_for_stop("j1")
    assert not first.kept, "a new subscription may have missed a stop: its keeper reads the job's state once"
    first.close()
    assert store.start_batch("j2", b, "t/b", "n1@h", 30.0) == "ok"  # the next batch's take
    store.transition("j2", JobState.CANCELLED)  # announced before its keeper listens
    second = store.listen_for_stop("j2")
    try:
        assert second.kept
        assert second.wait(5.0), "the stop announced after the take was heard"
    finally:
        second.close()


def test_a_batchs_end_hands_its_stop_subscription_to_the_slots_next_batch(store: JobStore):
    """A slot's batches follow each other within milliseconds: a keeper that ends hands its subscription back as its
    batch ends (its listen interrupted), so the next batch's keeper listens on it (no new connection, handshake and
    SUBSCRIBE, no read of the job's state), and it still hears that batch's stop."""
    a, b = _job(store, "j1", 2)
    assert store.start_batch("j1", a, "t/a", "n1@h", 30.0) == "ok"
    with LeaseKeeper(store, "j1", a, "t/a", 30.0, poll=0.5):
        wait_for(lambda: store.r.pubsub_numsub(store.keys.stops())[0][1] == 1, 5, "the keeper to subscribe")
    assert len(store._kept_listeners) == 1, "handed back when the batch ended, not a listen later"
    kept = store._kept_listeners[0]
    assert store.start_batch("j1", b, "t/b", "n1@h", 30.0) == "ok"
    with LeaseKeeper(store, "j1", b, "t/b", 30.0, poll=30.0) as keeper:
        wait_for(lambda: not store._kept_listeners, 5, "the next keeper to take the subscription")
        store.transition("j1", JobState.CANCELLED)
        wait_for(keeper.woken, 5, "the stop to wake the render")
    assert store._kept_listeners == [kept], "the same subscription, kept again"
    assert store.r.pubsub_numsub(store.keys.stops())[0][1] == 1


def test_a_nodes_slots_top_up_from_the_windows_it_read_lately(store: JobStore, monkeypatch):
    """The fair share's windows (a script over every live job) are read once for a node's slots and serve the
    batches that end within WINDOW_CACHE_SECONDS; a job not in that read, or a read older than that, is read again."""
    from httpov import dispatch

    _job(store, "j1", 4)
    store.heartbeat("n1@h", 2, [])
    reads = []
    real = dispatch.windows
    monkeypatch.setattr(dispatch, "windows", lambda *args, **kwargs: reads.append(1) or real(*args, **kwargs))
    cache = dispatch.WindowCache(seconds=0.3)
    assert cache.fresh("j1") is None, "nothing read yet"
    window = cache.read(store, 8.0, "j1")
    assert window >= 1 and len(reads) == 1
    assert cache.fresh("j1") == window and cache.fresh("j2") is None, "j2 was not in that read"
    _job(store, "j2", 1)
    wait_for(lambda: cache.fresh("j1") is None, 5, "the read to be older than its seconds")
    assert cache.read(store, 8.0, "j2") >= 1 and len(reads) == 2 and cache.fresh("j1") is not None
