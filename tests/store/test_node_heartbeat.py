"""A render node's heartbeat, on the real Redis: in its one round trip a second it also reads the node's drain mark and
tries the sweep:nodes claim (each was a round trip of its own, from every node every second)."""
from __future__ import annotations

import time

from httpov.celery import make_app
from httpov.dispatch import sweep
from httpov.settings import Settings
from httpov.store import JobStore
from httpov.store.jobs import DRAIN


def test_the_heartbeat_answers_the_drain_mark_with_the_claims_won(store: JobStore):
    assert store.heartbeat("a@h", 2, [], claims={"sweep:x": 5.0}) == {"sweep:x"}
    assert store.heartbeat("a@h", 2, [], claims={"sweep:x": 5.0}) == set(), "claimed already"
    store.drain_node("a@h")
    assert store.heartbeat("a@h", 2, [], claims={"sweep:y": 5.0}) == {"sweep:y", DRAIN}
    assert store.heartbeat("b@h", 2, []) == set(), "another node's mark is not this one's"
    store.node_started("a@h")
    assert store.heartbeat("a@h", 2, []) == set()


def test_a_nodes_sweep_tells_it_to_drain_and_one_node_forgets_the_nodes_long_gone(store: JobStore):
    settings = Settings(prefix=store.p, queue=store.p)
    app = make_app(settings)
    store.heartbeat("old@h", 1, [])
    store.r.zadd(store.keys.nodes(), {"old@h": time.time() - 2 * 86400})  # last seen two days ago
    told: list[str] = []
    sweep(app, store, settings.queue, 8.0, 3, 1.0, "a@h", 2, [], {"host": "h"}, on_drain=lambda: told.append("a"))
    assert told == [] and "old@h" not in store.nodes()[0], "the first node to sweep forgot the node long gone"
    store.drain_node("a@h")
    store.heartbeat("old@h", 1, [])
    store.r.zadd(store.keys.nodes(), {"old@h": time.time() - 2 * 86400})
    sweep(app, store, settings.queue, 8.0, 3, 1.0, "a@h", 2, [], {"host": "h"}, on_drain=lambda: told.append("a"))
    assert told == ["a"], "the heartbeat found the drain mark"
    assert "old@h" in store.nodes()[0], "sweep:nodes is claimed once a minute"
