"""The sweeps' verdicts by Redis's own clock (issue #31 item 3): a batch is taken for unsent only at two looks apart,
and a held message's age counts from when a sweep first saw it. A real Redis, no workers: its own key prefix."""
from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from httpov.store import JobStore
from tests.conftest import REDIS_URL, wait_for


@pytest.fixture
def store() -> Iterator[JobStore]:
    prefix = "httpovtest-" + secrets.token_hex(4)
    store = JobStore.connect(REDIS_URL, prefix)
    yield store
    keys = list(store.r.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        store.r.delete(*keys)


def test_a_batch_out_of_sight_is_unsent_only_at_a_second_look(store: JobStore):
    window = store.keys.window("j1")
    store.r.zadd(window, {"b1": 0.0, "b2": 0.0})  # sent long ago (by Redis's clock), not running, done or parked
    store.r.hset(store.keys.running("j1"), "b2", "{}")
    assert store.idle_in_window("j1", 60.0) == ["b1"]
    assert store.unsent("j1", {"b1": False}, confirm=0.3) == [], "a first look only notes it"
    assert store.unsent("j1", {"b1": True}, confirm=0.3) == [], "seen in a queue: forgotten"
    assert store.unsent("j1", {"b1": False}, confirm=0.3) == [], "so this is a first look again"
    wait_for(lambda: store.unsent("j1", {"b1": False}, confirm=0.3) == ["b1"], 5, "the second look to confirm it")
    assert store.idle_in_window("j1", 60.0) == [], "stamped as sent now, by Redis's clock"
    assert store.r.hlen(store.keys.unseen("j1")) == 0


def test_a_held_message_ages_from_when_a_sweep_first_saw_it(store: JobStore):
    index = f"{store.p}:kombu:unacked_index"
    store.r.zadd(index, {"tag1": 1.0})  # the taking worker's clock says it is 50 years old: not believed
    assert store.held_since(index, 0.3) == []
    wait_for(lambda: store.held_since(index, 0.3) == ["tag1"], 5, "the tag to be held 0.3 s by Redis's clock")
    store.r.zrem(index, "tag1")  # acked
    assert store.held_since(index, 0.3) == [] and store.r.zcard(store.keys.held_seen()) == 0
