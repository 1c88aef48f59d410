"""A render node's heartbeat, on the real Redis: in its one round trip a second it also reads the node's drain mark and
tries the sweep:nodes claim (each was a round trip of its own, from every node every second)."""
from __future__ import annotations

import json
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


def test_the_heartbeat_writes_a_nodes_record_only_when_it_changes_or_is_gone(store: JobStore):
    """Each second a node said the same processes, pools, record and node-use sample again: a dozen writes of the same
    values, most of an idle farm's Redis load. Now they are written when they change, and at once again should the
    node be missing from the nodes zset (Redis restarted empty, or the node forgotten)."""
    minute = time.time() - time.time() % 60
    store.heartbeat("a@h", 4, ["big"], {"host": "h"}, busy=(minute, 2.0))
    assert store.r.hget(store.keys.node_processes(), "a@h") == "4"
    store.r.hdel(store.keys.node_info(), "a@h")  # (no one else writes it: only to see whether it is written again)
    store.r.delete(store.keys.node_use("a@h"))
    store.heartbeat("a@h", 4, ["big"], {"host": "h"}, busy=(minute, 2.0))
    assert store.r.hget(store.keys.node_info(), "a@h") is None, "the same record was written again"
    assert not store.r.exists(store.keys.node_use("a@h")), "the same node-use sample was written again"
    assert store.live_nodes(within=10) == {"a@h"}, "the heartbeat itself is written every time"
    store.heartbeat("a@h", 4, ["big"], {"host": "h", "fault": "disk full"}, busy=(minute, 3.0))  # changed
    assert json.loads(store.r.hget(store.keys.node_info(), "a@h"))["fault"] == "disk full"
    assert store.r.zrange(store.keys.node_use("a@h"), 0, -1) == [f"{minute:.0f}:3.00"]
    for key in (store.keys.nodes(), store.keys.node_info(), store.keys.node_processes(), store.keys.node_pools(),
                store.keys.node_use("a@h")):
        store.r.delete(key)  # Redis restarted empty
    store.heartbeat("a@h", 4, ["big"], {"host": "h", "fault": "disk full"}, busy=(minute, 3.0))
    assert store.r.hget(store.keys.node_processes(), "a@h") == "4"
    assert store.r.hget(store.keys.node_pools(), "a@h") == "big"
    assert json.loads(store.r.hget(store.keys.node_info(), "a@h"))["host"] == "h"
    assert store.r.zrange(store.keys.node_use("a@h"), 0, -1) == [f"{minute:.0f}:3.00"]
    store.node_stopped("a@h", {"host": "h"})
    store.heartbeat("a@h", 4, ["big"], {"host": "h", "fault": "disk full"}, busy=(minute, 3.0))
    assert "stopped" not in json.loads(store.r.hget(store.keys.node_info(), "a@h")), "a heartbeat after a stop"


def test_a_node_hands_a_batch_only_to_live_nodes_that_may_take_one(store: JobStore, tmp_path):
    """RenderNode._others, the targets of a hand-back (blocked, another povray, no room) and of a hung batch: the
    nodes seen within the live window, but not the asking node, nor one blocked from the job, one told to drain,
    one that stopped cleanly (its last heartbeat still in the window) or one that said it has no room."""
    from httpov.storage import LocalStorage
    from httpov.worker.batch import RenderNode
    from httpov.worker.cache import SceneCache

    settings = Settings(prefix=store.p, queue=store.p, cache_dir=tmp_path / "cache")
    node = RenderNode(settings, store, LocalStorage(tmp_path / "store"), SceneCache(tmp_path / "cache", 1 << 20))
    for name in ("me", "ok", "blocked", "draining", "stopped", "full"):
        store.heartbeat(f"{name}@h", 2, [], {"host": "h"})
    store.heartbeat("full@h", 2, [], {"host": "h", "fault": "disk full (cache folder, 3 MiB free)"})
    store.drain_node("draining@h")
    store.node_stopped("stopped@h", {"host": "h"})
    assert "stopped@h" in store.live_nodes(within=settings.live_node_seconds), "seen within the window, stopped"
    targets, records = node._others("me@h", {"blocked@h"})
    assert targets == {"ok@h"}
    assert records["stopped@h"]["stopped"] and records["full@h"]["fault"]
