"""The sweeps judge by Redis's own clock, on a real Redis: a window's batch is unsent only at two looks apart with
its message nowhere and the batch idle at the verdict; a held message's age counts from when a sweep first saw it,
whatever clock its worker stamped it with; the sweeps' bookkeeping expires and goes with its job."""
from __future__ import annotations

import json
import time

from httpov.plan import JobSpec
from httpov.store import JobStore

BATCHES = ["f000001-000001", "f000002-000002"]


def _job(store: JobStore) -> JobSpec:
    spec = JobSpec(id="j1", name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=2, first=1,
                   last=2, width=8, height=8, count=1, batches=BATCHES)
    store.create(spec)
    store.publish(spec.id)
    return spec


def _redis_now(store: JobStore) -> float:
    seconds, micros = store.r.time()
    return seconds + micros / 1e6


def test_a_window_is_stamped_and_read_by_redis_clock(store):
    spec = _job(store)
    assert store.top_up(spec.id, 2) == ("", BATCHES)
    stamps = dict(store.r.zrange(store.keys.window(spec.id), 0, -1, withscores=True))
    assert all(abs(at - _redis_now(store)) < 2 for at in stamps.values())
    assert store.idle_in_window(spec.id, 0) == BATCHES
    assert store.idle_in_window(spec.id, 60) == [], "sent a moment ago by Redis's clock"


def test_a_batch_is_unsent_only_at_two_looks_apart_and_idle_at_the_verdict(store):
    spec = _job(store)
    store.top_up(spec.id, 2)
    first, second = BATCHES
    nowhere = {first: False, second: False}
    assert store.unsent(spec.id, nowhere, confirm=0.3, forget=60) == [], "a first look only notes them"
    assert store.unsent(spec.id, nowhere, confirm=0.3, forget=60) == [], "too soon after the first look"
    assert 0 < store.r.pttl(store.keys.unseen(spec.id)) <= 60_000, "the notes expire"
    store.r.hset(store.keys.running(spec.id), first, json.dumps({"node": "n@h"}))  # a node started it meanwhile
    time.sleep(0.35)
    assert store.unsent(spec.id, nowhere, confirm=0.3, forget=60) == [second]
    assert store.r.hkeys(store.keys.unseen(spec.id)) == [], "the started batch forgotten, the sent one answered"
    assert store.unsent(spec.id, {second: False}, confirm=0.3, forget=60) == [], "answered once"


def test_a_message_seen_between_the_looks_is_not_unsent(store):
    spec = _job(store)
    store.top_up(spec.id, 1)
    batch = BATCHES[0]
    assert store.unsent(spec.id, {batch: False}, confirm=0.2, forget=60) == []
    time.sleep(0.25)
    assert store.unsent(spec.id, {batch: True}, confirm=0.2, forget=60) == []  # its message was found
    time.sleep(0.25)
    assert store.unsent(spec.id, {batch: False}, confirm=0.2, forget=60) == [], "a first look again"


def test_a_held_message_ages_from_when_a_sweep_first_saw_it_whatever_its_workers_clock(store):
    index = f"{store.p}:kombu:unacked_index"
    store.r.zadd(index, {"tag-skewed": time.time() - 3600})  # its worker's clock an hour behind
    assert store.held_since(index, 0.3) == [], "first seen now: not old"
    assert 0 < store.r.pttl(store.keys.held_seen()), "the bookkeeping expires"
    time.sleep(0.35)
    assert store.held_since(index, 0.3) == ["tag-skewed"]
    store.r.zrem(index, "tag-skewed")  # acked
    assert store.held_since(index, 0.3) == [] and not store.r.exists(store.keys.held_seen())


def test_the_unsent_notes_go_with_their_job(store):
    spec = _job(store)
    store.top_up(spec.id, 2)
    store.unsent(spec.id, dict.fromkeys(BATCHES, False), confirm=0.3, forget=60)
    assert store.r.exists(store.keys.unseen(spec.id))
    store.drop_jobs([spec.id], {spec.id: spec.history})
    left = set(store.r.scan_iter(match=store.keys.everything()))
    assert left == {store.keys.schema(), store.keys.events()}  # the farm's event log keeps the job's events
