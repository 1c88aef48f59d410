"""The store on a real Redis: a refused state move changes nothing, and the schema version is checked, recorded
and upgraded (httpov.store.version). No workers, no povray: each test has its own key prefix."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from httpov.errors import SchemaVersionError
from httpov.plan import JobSpec
from httpov.states import JOB_MOVES, JobState, TransitionRefused
from httpov.store import JobStore, Keys
from httpov.store import version as schema


def _spec(job_id: str = "j1") -> JobSpec:
    return JobSpec(id=job_id, name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=2, first=1,
                   last=2, width=8, height=8, count=1, batches=["f000001-000001", "f000002-000002"])


def _everything(store: JobStore) -> dict[str, Any]:
    """Every key under the store's prefix with its value (leases with their holder)."""
    out: dict[str, Any] = {}
    for key in store.r.scan_iter(match=store.keys.everything(), count=1000):
        kind = store.r.type(key)
        out[key] = {"hash": store.r.hgetall, "list": lambda k: store.r.lrange(k, 0, -1), "set": store.r.smembers,
                    "zset": lambda k: store.r.zrange(k, 0, -1, withscores=True), "string": store.r.get,
                    "stream": lambda k: store.r.xrange(k)}[kind](key)
    return out


def test_a_refused_move_leaves_the_job_as_it_was(store: JobStore):
    store.create(_spec())
    store.publish("j1")
    assert store.start_batch("j1", "f000001-000001", "tok", "node@h", 30.0) == "ok"  # a running batch and its lease
    for old in JobState:
        store.r.hset(store.keys.job("j1"), "state", old)
        for new in JobState:
            if new in JOB_MOVES[old]:
                continue
            before = _everything(store)
            with pytest.raises(TransitionRefused) as refused:
                store.transition("j1", new)
            assert (refused.value.current, refused.value.new) == (old, new)
            assert f"job j1 is {old.value}: it cannot become {new.value}" == str(refused.value)
            assert _everything(store) == before, f"{old} -> {new} changed the store"


def test_an_allowed_move_goes_through_the_table(store: JobStore):
    store.create(_spec())
    store.publish("j1")
    store.transition("j1", JobState.PAUSED)
    with pytest.raises(TransitionRefused):  # resume only from paused, retry only from a finished state
        store.transition("j1", JobState.RUNNING, only_from=(JobState.DONE,))
    store.transition("j1", JobState.RUNNING, only_from=(JobState.PAUSED,))
    store.transition("j1", JobState.CANCELLED)
    assert store.state("j1") == "cancelled" and "j1" not in store.active_ids()


def test_a_new_farm_records_the_version_at_its_first_write_only(store: JobStore):
    assert store.upgrade() is None
    assert _everything(store) == {}  # a client that only looked (or refused bad input) leaves Redis empty
    store.create(_spec())
    assert store.r.get(store.keys.schema()) == str(schema.VERSION)
    assert store.upgrade() == schema.VERSION


def test_the_first_releases_data_is_version_1_and_upgraded(store: JobStore):
    store.r.zadd(store.keys.nodes(), {"old@h": 1.0})  # what a node of the first release leaves: no version key
    assert schema.stored_version(store.r, store.keys) == 1
    assert store.upgrade() == 2
    assert store.r.get(store.keys.schema()) == "2"
    assert not store.r.exists(store.keys.schema_lock())


def test_a_newer_version_is_refused_naming_both_and_nothing_is_written(store: JobStore):
    store.r.set(store.keys.schema(), 3)
    before = _everything(store)
    with pytest.raises(SchemaVersionError, match="schema version 3; this httpov knows versions up to 2"):
        store.upgrade()
    assert _everything(store) == before


def test_upgrade_steps_run_in_order_once_under_a_lock(store: JobStore, monkeypatch):
    """Several nodes meeting an old version at once: each step runs once, and a step cut short is run again."""
    ran: list[int] = []
    fail_once = [True]

    def step(to: int):
        def run(r: redis.Redis, keys: Keys) -> None:
            if to == 3 and fail_once[0]:
                fail_once[0] = False
                raise RuntimeError("cut short")
            r.incr(keys.claim(f"step{to}"))  # a step's own write, to count it
            ran.append(to)
        return run

    monkeypatch.setattr(schema, "VERSION", 4)
    steps = [schema.Step(n, f"step {n}", step(n)) for n in (2, 3, 4)]
    store.r.zadd(store.keys.jobs(), {"old": 1.0})
    with pytest.raises(RuntimeError):
        schema.ensure(store.r, store.keys, steps)
    assert store.r.get(store.keys.schema()) == "2" and ran == [2]  # the version says how far it got
    results: list[int | None] = []
    threads = [threading.Thread(target=lambda: results.append(schema.ensure(store.r, store.keys, steps)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [4] * 4 and ran == [2, 3, 4]
    assert store.r.get(store.keys.schema()) == "4"


def test_a_job_waiting_for_storage_says_so_until_a_batch_is_stored_or_it_ends(store: JobStore):
    from httpov.store.records import DoneInfo

    for job in ("j1", "j2"):
        store.create(_spec(job))
        store.publish(job)
        assert store.start_batch(job, "f000001-000001", "tok", "node@h", 30.0) == "ok"
        store.wait_for_storage(job, "f000001-000001", "retry:t", "node@h", 10.0, "cannot write: No space left")
        assert store.r.hget(store.keys.job(job), "waiting") == "waiting for storage: cannot write: No space left"
        assert store.r.get(store.keys.lease(job, "f000001-000001")) == "retry:t"  # held for the task's retry
        assert store.running(job)["f000001-000001"]["retrying"] is True
        assert store.blocked(job) == set() and store.batches(job)["failed"] == {}  # no one is blamed
    store.finish_batch("j1", "f000001-000001", DoneInfo(node="node@h"), [1], "retry:t")  # the retry holds it
    assert store.r.hget(store.keys.job("j1"), "waiting") is None  # storage is back
    store.transition("j2", JobState.CANCELLED)
    assert store.r.hget(store.keys.job("j2"), "waiting") is None  # a finished job waits for nothing
    store.wait_for_storage("j2", "f000002-000002", "retry:u", "node@h", 10.0, "late")
    assert store.r.hget(store.keys.job("j2"), "waiting") is None  # and a late node does not bring it back


def _started(store: JobStore, token: str, batch: str = "f000001-000001") -> None:
    store.create(_spec())
    store.publish("j1")
    assert store.start_batch("j1", batch, token, "a@host", 60.0) == "ok"


def test_an_execution_that_lost_its_lease_records_nothing(store: JobStore):
    """The fence (scripts/finish_batch.lua): the batch taken over by another execution, the first one's commit is
    refused and the record stays the one that owns the batch; a repeated commit of the owner answers as the first."""
    batch = "f000001-000001"
    _started(store, "stale/1")
    store.r.delete(store.keys.lease("j1", batch))  # its lease ran out; the sweep gave the batch to another node
    store.r.hdel(store.keys.running("j1"), batch)
    assert store.start_batch("j1", batch, "fresh/2", "b@host", 60.0) == "ok"
    assert store.finish_batch("j1", batch, {"node": "a@host", "result": "1"}, [1], "stale/1") == "lost"
    assert store.batches("j1")["done"] == {} and store.r.get(store.keys.lease("j1", batch)) == "fresh/2"
    assert store.finish_batch("j1", batch, {"node": "b@host", "result": "2"}, [1], "fresh/2") == "ok"
    assert store.finish_batch("j1", batch, {"node": "b@host", "result": "2"}, [1], "fresh/2") == "ok"  # a retried call
    assert store.finish_batch("j1", batch, {"node": "a@host", "result": "1"}, [1], "stale/1") == "lost"
    assert store.batches("j1")["done"][batch] == {"node": "b@host", "result": "2"}
    assert not store.owns("j1", batch, "stale/1", "1")


def test_an_execution_whose_lease_ran_out_unclaimed_still_records(store: JobStore):
    """A lease that expired while no one took the batch (Redis out of reach a while): still the execution's."""
    batch = "f000001-000001"
    _started(store, "slow/1")
    store.r.delete(store.keys.lease("j1", batch))
    assert store.owns("j1", batch, "slow/1", "1")
    assert store.finish_batch("j1", batch, {"node": "a@host", "result": "1"}, [1], "slow/1") == "ok"
    assert store.batches("j1")["done"][batch]["result"] == "1" and store.batches("j1")["running"] == {}


def test_a_finishing_transition_announces_the_jobs_stop(store: JobStore):
    _started(store, "t/1")
    listener = store.listen_for_stop("j1")
    try:
        assert not listener.wait(0.05)
        store.transition("j1", JobState.CANCELLED)
        assert listener.wait(5.0)
    finally:
        listener.close()


def test_a_render_process_listens_for_stops_on_one_kept_subscription(store: JobStore):
    """A listener's subscription serves the next batch's (no connection and SUBSCRIBE per batch): a stop announced
    in between wakes the next listener of that job, and no other job's."""
    _started(store, "t/1")
    first = store.listen_for_stop("j1")
    assert not first.wait(0.05)
    first.close()
    store.transition("j1", JobState.CANCELLED)  # announced while no batch listens
    other = store.listen_for_stop("j2")
    try:
        assert not other.wait(0.2), "j1's stop is not j2's"
    finally:
        other.close()
    second = store.listen_for_stop("j1")
    try:
        assert second._pubsub is first._pubsub, "the same subscription: no new connection to Redis"
        store.r.publish(store.keys.stops(), "j1")  # as a transition to a finished state announces it
        assert second.wait(5.0)
    finally:
        second.close()


def test_a_hang_is_kept_with_its_batch_in_the_jobs_history_and_on_its_nodes_count(store: JobStore):
    """What RenderNode._hung writes, read back from Redis: the batch's failure with its hang count, the job's history
    line of kind 'hang' (the job page's Hangs), the node's hung batches of the last hour (the nodes page); and the
    job's measured frame times that a batch's derived time limit comes from (plan.batch_time_limit)."""
    from httpov.nodes import farm_nodes
    from httpov.plan import batch_time_limit
    from httpov.store.records import DoneInfo
    from httpov.view import job_view

    batch = "f000002-000002"
    _started(store, "t/1")
    store.finish_batch("j1", "f000001-000001", DoneInfo(node="a@host", seconds=3.0, frames=1), [1], "t/1")
    assert store.start_batch("j1", batch, "t/2", "a@host", 60.0) == "ok"
    assert store.failure("j1", batch) is None
    store.fail_batch("j1", batch, "no progress for 2 s", ["l"], final=False, node="a@host", hangs=1)
    store.note("j1", "frame 2 hung on a@host: no progress for 2 s", kind="hang")
    store.note("j1", "frames 1 rendered again")
    store.heartbeat("a@host")
    store.count_batch("a@host", "failed")
    store.count_batch("a@host", "hung")
    assert store.failure("j1", batch) == {"error": "no progress for 2 s", "lines": ["l"], "node": "a@host",
                                          "final": False, "at": store.failure("j1", batch)["at"], "hangs": 1}
    assert [h["what"] for h in job_view(store, "j1").hangs] == ["frame 2 hung on a@host: no progress for 2 s"]
    [node] = farm_nodes(store, 8.0)
    assert (node["failed_last_hour"], node["hung_last_hour"], node["done_last_hour"]) == (1, 1, 0)
    sample = store.done_sample("j1")
    assert list(sample) == ["f000001-000001"]
    assert batch_time_limit(sample, 8, batch, factor=20, floor=30) == 60.0  # 20 x 3 s, above the floor


def test_the_jobs_overview_reads_them_in_a_few_round_trips_and_filters_like_one_view_each(store: JobStore,
                                                                                          monkeypatch):
    from httpov.view import job_view, overview

    for n in range(45):
        spec = _spec(f"j{n:02d}")
        spec.name = f"shot-{n}" if n % 3 else f"preview-{n}"
        store.create(spec, user="ann" if n % 2 else "bob")
        store.publish(spec.id)
        if n % 5 == 0:
            store.transition(spec.id, JobState.CANCELLED)
    now = time.time()
    every = [job_view(store, job_id, now) for job_id in store.job_ids()]
    newest = every[::-1]

    def expected(limit: int | None, keep) -> list[str]:
        return [v.id for v in newest if keep(v)][:limit][::-1]

    trips = []
    monkeypatch.setattr(redis.Redis, "execute_command", _counting(redis.Redis.execute_command, trips, "command"))
    monkeypatch.setattr(redis.client.Pipeline, "execute", _counting(redis.client.Pipeline.execute, trips, "pipeline"))
    listed = overview(store, now, limit=20)
    assert [v.id for v in listed] == expected(20, lambda v: True)
    assert len(trips) <= 4, trips  # the ids, one pipeline of 20 snapshots, the live nodes (pools and faults)
    assert [v.to_json() for v in listed] == [v.to_json() for v in every[-20:]]
    for limit, filters, keep in [
            (None, {}, lambda v: True),
            (7, {"states": ["cancelled"]}, lambda v: v.state == "cancelled"),
            (5, {"user": "bob", "name": "shot-*"}, lambda v: v.user == "bob" and v.name.startswith("shot-")),
            (3, {"user": "nobody"}, lambda v: False)]:
        assert [v.id for v in overview(store, limit=limit, **filters)] == expected(limit, keep), filters


def test_one_jobs_snapshot_is_one_round_trip_and_reads_what_the_overview_reads(store: JobStore, monkeypatch):
    from httpov.errors import JobNotFoundError

    store.create(_spec())
    store.publish("j1")
    assert store.start_batch("j1", "f000001-000001", "t1", "node@h", 30.0) == "ok"
    store.finish_batch("j1", "f000001-000001", {"node": "node@h", "seconds": 2.0, "frames": 1, "finished": 5.0},
                       [1], "t1")
    assert store.start_batch("j1", "f000002-000002", "t2", "node@h", 30.0) == "ok"
    trips: list[str] = []
    monkeypatch.setattr(redis.Redis, "execute_command", _counting(redis.Redis.execute_command, trips, "command"))
    monkeypatch.setattr(redis.client.Pipeline, "execute", _counting(redis.client.Pipeline.execute, trips, "pipeline"))
    record, spec, batches = store.snapshot("j1")
    assert len(trips) == 1, trips  # the record and every batch record, in one transaction
    assert (record, spec, batches) == store.snapshots(["j1"])["j1"]
    assert record["state"] == "running" and spec.batches == _spec().batches and batches["frames"] == [1]
    assert list(batches["done"]) == ["f000001-000001"] and list(batches["running"]) == ["f000002-000002"]
    with pytest.raises(JobNotFoundError, match="no job with id 'gone'"):
        store.snapshot("gone")


def _counting(method, calls: list[str], what: str):
    def counted(self, *args, **kwargs):
        if what == "pipeline" or not isinstance(self, redis.client.Pipeline):
            calls.append(f"{what} {args[0] if args and what == 'command' else ''}")
        return method(self, *args, **kwargs)
    return counted


def test_submits_warnings_are_kept_in_the_jobs_history_and_expire_with_an_abandoned_submit(store: JobStore):
    """What submit warned of (an ini typo) is written with the record, read back as the view's warnings; a submit
    interrupted before publish lets it expire with the job's other keys (nothing kept forever)."""
    from httpov.view import job_view

    said = "Widht: did you mean Width? (the ini's line is ignored)"
    store.create(_spec(), user="u", warnings=[said])
    store.note("j1", "frames 1 rendered again")
    assert [(h["what"], h.get("kind")) for h in job_view(store, "j1").history] == [
        (said, "warning"), ("frames 1 rendered again", None)]
    assert [h["what"] for h in job_view(store, "j1").warnings] == [said]
    assert store.abandon("j1", "interrupted", keep_seconds=60) == "ok"
    assert 0 < store.r.ttl(store.keys.history("j1")) <= 60
    store.create(_spec("j2"), user="u")
    assert not store.r.exists(store.keys.history("j2")) and job_view(store, "j2").warnings == []


def test_a_nodes_use_is_a_sample_a_minute_for_six_hours_and_goes_with_the_node(store: JobStore):
    """node-use:<node> (the nodes page's picture): one sample a minute (the last of it replaces the earlier), older
    than 6 hours trimmed, the key expiring with them, and forgotten with the node."""
    from httpov.store.jobs import NODE_USE_SECONDS

    now = time.time()
    minute = now - now % 60
    store.heartbeat("a@host", 2, busy=(minute - NODE_USE_SECONDS - 120, 1.0))  # older than 6 hours: trimmed
    store.heartbeat("a@host", 2, busy=(minute - 60, 0.5))
    store.heartbeat("a@host", 2, busy=(minute, 1.0))
    store.heartbeat("a@host", 2, busy=(minute, 1.5))
    assert store.node_use(now - NODE_USE_SECONDS) == ({"a@host": [(minute - 60, 0.5), (minute, 1.5)]}, {"a@host": 2})
    key = store.keys.node_use("a@host")
    assert 0 < store.r.ttl(key) <= NODE_USE_SECONDS + 60 and store.r.zcard(key) == 2
    assert store.forget_nodes(-1.0) == ["a@host"] and not store.r.exists(key)
    assert store.node_use(now - NODE_USE_SECONDS) == ({}, {})


def test_a_recorded_batch_tops_its_job_up_and_says_if_jobs_wait_in_the_same_round_trip(store: JobStore,
                                                                                        monkeypatch):
    """record_batch (scripts/finish_batch.lua): a render node's record of its batch also moves the job's next
    batches into its window (as top_up) and says whether any job waits for others (httpov.after), in one call."""
    store.create(_spec())
    store.publish("j1")
    store.pend("j1", _spec().batches, front=False, replace=True)
    assert store.top_up("j1", 1) == ("", ["f000001-000001"])
    assert store.start_batch("j1", "f000001-000001", "t/1", "a@host", 60.0) == "ok"
    store.load_scripts()
    sent: list[str] = []
    monkeypatch.setattr(redis.Redis, "execute_command", _counting(redis.Redis.execute_command, sent, "command"))
    from httpov.store.records import DoneInfo

    recorded = store.record_batch("j1", "f000001-000001", DoneInfo(node="a@host", result="r"), [1], "t/1",
                                  node="a@host", top_up=1)
    assert len(sent) == 1, sent
    assert recorded == ("ok", False, ("", ["f000002-000002"])) and store.window_size("j1") == 1
    store.r.sadd(store.keys.dependent(), "j9")  # a job that waits for others
    assert store.start_batch("j1", "f000002-000002", "t/2", "a@host", 60.0) == "ok"
    assert store.record_batch("j1", "f000002-000002", DoneInfo(node="a@host", result="s"), [2], "t/2",
                              top_up=1) == ("done", True, ("", []))  # the last one: nothing left to top up
    late = store.record_batch("j1", "f000002-000002", DoneInfo(node="a@host", result="x"), [2], "t/3")
    assert late == ("lost", False, None)


def test_povrays_progress_rides_the_lease_refresh_and_only_the_lease_holder_names_a_checkpoint(store: JobStore):
    """refresh.lua writes the share povray rendered into the batch's running info with the renewal (nothing for an
    execution that lost the lease); checkpoint.lua records a checkpoint only for the lease's holder; both go with the
    job."""
    batch = "f000001-000001"
    _started(store, "exec/1")
    assert store.refresh("j1", batch, "exec/1", 60.0, progress=0.364) == "running"
    running = store.running("j1")[batch]
    assert running["progress"] == 0.364 and running["node"] == "a@host" and running["token"] == "exec/1"
    assert store.refresh("j1", batch, "exec/1", 60.0) == "running"  # none said: the last one stays
    assert store.running("j1")[batch]["progress"] == 0.364
    info = {"sha256": "a" * 64, "bytes": 10, "povray": "3.7.0.10", "node": "a@host", "frames": [], "frame": 1,
            "fraction": 0.36}
    assert store.save_checkpoint("j1", batch, "exec/1", info) == "ok"  # type: ignore[arg-type]
    assert store.checkpoint("j1", batch) == info

    store.r.set(store.keys.lease("j1", batch), "exec/2")  # the batch taken over by another execution
    assert store.refresh("j1", batch, "exec/1", 60.0, progress=0.9) == "lost"
    assert store.running("j1")[batch]["progress"] == 0.364
    assert store.save_checkpoint("j1", batch, "exec/1", {**info, "fraction": 0.9}) == "lost"  # type: ignore[arg-type]
    assert store.checkpoint("j1", batch) == info
    store.drop_checkpoint("j1", batch)
    assert store.checkpoint("j1", batch) is None
    assert store.save_checkpoint("j1", batch, "exec/2", info) == "ok"  # type: ignore[arg-type]
    store.drop_jobs(["j1"])
    assert store.checkpoint("j1", batch) is None and not store.r.exists(store.keys.checkpoints("j1"))


def test_a_take_says_whether_a_checkpoint_of_its_batch_is_saved(store: JobStore):
    """A render node reads a batch's checkpoint only when its take (one round trip) says one is saved: none on a
    batch's first take, one after an execution that lost the batch saved it."""
    batch = "f000001-000001"
    store.create(_spec())
    store.publish("j1")
    assert store.take_batch("j1", batch, "exec/1", "a@host", 60.0) == ("ok", 1, False)
    info = {"sha256": "a" * 64, "bytes": 10, "povray": "3.7.0.10", "node": "a@host", "frames": [], "frame": 1,
            "fraction": 0.36}
    assert store.save_checkpoint("j1", batch, "exec/1", info) == "ok"  # type: ignore[arg-type]
    store.r.delete(store.keys.lease("j1", batch))  # its node lost: the lease ran out
    assert store.take_batch("j1", batch, "exec/2", "b@host", 60.0) == ("ok", 2, True)
    store.drop_checkpoint("j1", batch)
    store.r.delete(store.keys.lease("j1", batch))
    assert store.take_batch("j1", batch, "exec/3", "b@host", 60.0) == ("ok", 3, False)


def test_fair_share_keeps_the_farms_render_processes_summed_and_counts_a_node_that_joins_at_once(store: JobStore):
    """Every batch reads the farm's render processes (its job's window): summed once a second, not per batch; a node
    that joins or is lost is counted at once, a node's change of processes within FARM_PROCESSES_SECONDS."""
    from httpov.store.jobs import FARM_PROCESSES_SECONDS

    store.heartbeat("a@h", 4, [])
    store.heartbeat("b@h", 8, ["gpu", "big"])
    _, farm, _ = store.fair_share(None, within=30.0)
    assert farm == (12, {"gpu": 8, "big": 8}) == store.render_processes(30.0)
    assert store.r.hget(store.keys.farm_processes(), "processes") == "12"
    store.heartbeat("c@h", 2, ["gpu"])  # joins: counted at the next read
    assert store.fair_share(None, within=30.0)[1] == (14, {"gpu": 10, "big": 8})
    store.heartbeat("a@h", 1, [])  # the same nodes: the sums kept are read until they expire
    assert store.fair_share(None, within=30.0)[1] == (14, {"gpu": 10, "big": 8})
    assert store.fair_share(None, within=60.0)[1] == (11, {"gpu": 10, "big": 8})  # another live window: summed
    ttl = store.r.pttl(store.keys.farm_processes())
    assert 0 < ttl <= FARM_PROCESSES_SECONDS * 1000
    store.r.zadd(store.keys.nodes(), {"b@h": time.time() - 3600})  # lost: no longer counted, at once
    assert store.fair_share(None, within=30.0)[1] == (3, {"gpu": 2}) == store.render_processes(30.0)


def test_a_heartbeat_tries_the_sweeps_claims_in_its_round_trip_and_one_node_wins_each(store: JobStore):
    from httpov.sweep import claims

    tried = claims(lease_seconds=8.0, every=1.0)
    assert store.heartbeat("a@h", 4, [], claims=tried) == set(tried)
    assert store.heartbeat("b@h", 4, [], claims=tried) == set()  # this period's are a@h's
    assert store.live_nodes(within=30.0) == {"a@h", "b@h"}
    store.r.delete(store.keys.claim("sweep:leases"))  # its period over
    assert store.heartbeat("b@h", 4, [], claims=tried) == {"sweep:leases"}
    assert store.heartbeat("b@h", 4, []) == set()


def test_a_sliced_jobs_done_slices_time_later_jobs_of_its_scene_and_go_with_it(store: JobStore):
    """Slices are filed apart from whole-frame jobs (a slice is no frame time): --slices auto reads them back."""
    sliced = JobSpec(id="s1", name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=1, first=1,
                     last=1, width=8, height=64, count=1, slices=[(1, 32), (33, 64)],
                     batches=["f000001-000001-r00001-00032", "f000001-000001-r00033-00064"])
    store.create(sliced)
    store.create(_spec("w1"))  # a whole-frame job of the same scene at another size
    store.publish("s1")
    # one node ran povray with quick waits (its start 0.1 s), the other's record is from before records said it
    for batch, info in zip(sliced.batches, ({"seconds": 0.9, "start": 0.1}, {"seconds": 4.5})):
        assert store.start_batch("s1", batch, f"t-{batch}", "a@host", 60.0) == "ok"
        done = store.finish_batch("s1", batch, {"node": "a@host", **info}, [], f"t-{batch}")
        assert done in ("ok", "done")  # 'done': the job's last batch
    assert sorted(store.slice_times(sliced.history)) == [("f000001-000001-r00001-00032", pytest.approx(0.8)),
                                                         ("f000001-000001-r00033-00064", pytest.approx(3.8))]
    assert store.frame_times(sliced.history) == (0.0, 0, 0)  # not counted as frames
    store.drop_jobs(["s1"], {"s1": sliced.history})
    assert store.slice_times(sliced.history) == [] and store.r.exists(store.keys.slice_history(sliced.history)) == 0


def test_frame_times_are_net_of_the_povray_start_each_batch_paid(store: JobStore):
    """A node with quick waits paid 0.1 s of povray's start a batch, one without 0.7 s, a record from before says
    nothing (0.7 s): the scene's later jobs plan from what the frames took."""
    spec = _spec("w1")
    store.create(spec)
    store.publish("w1")
    infos = ({"seconds": 0.6, "start": 0.1}, {"seconds": 1.2})
    for batch, info in zip(spec.batches, infos):
        assert store.start_batch("w1", batch, f"t-{batch}", "a@host", 60.0) == "ok"
        info = {"node": "a@host", "frames": 1, **info}
        assert store.finish_batch("w1", batch, info, [], f"t-{batch}") in ("ok", "done")
    seconds, frames, batches = store.frame_times(spec.history)
    assert (seconds, frames, batches) == (pytest.approx(0.5 + 0.5), 2, 2)


def test_a_resplit_slices_time_is_filed_under_the_rows_it_delivered(store: JobStore):
    """A slice cut by a re-split rendered only its rows up to the cut: --slices auto reads its seconds for those rows,
    and the new slice's for the rest, not the cut slice's seconds spread over every row its id names."""
    sliced = JobSpec(id="s2", name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=1, first=1,
                     last=1, width=8, height=128, count=1, slices=[(1, 32), (33, 128)],
                     batches=["f000001-000001-r00001-00032", "f000001-000001-r00033-00128"])
    store.create(sliced)
    store.publish("s2")
    assert store.top_up("s2", 2) == ("", sliced.batches)  # both sent: nothing of the job waits
    for batch in sliced.batches:
        assert store.start_batch("s2", batch, f"t-{batch}", "a@host", 60.0) == "ok"
    candidates = store.resplit_candidates()  # read by a node with an idle process: every batch sent, both running
    assert list(candidates) == ["s2"] and candidates["s2"][0] == "" and sorted(candidates["s2"][1]) == sliced.batches
    new = "f000001-000001-r00097-00128"
    # a window with no room for a third batch (the job's share, or its user's cap, is two processes): no split
    assert store.resplit("s2", sliced.batches[1], 96, new, "b@host", 2) == "no room"
    assert store.cuts("s2") == {} and store.r.llen(store.keys.pending("s2")) == 0
    assert store.resplit("s2", sliced.batches[1], 96, new, "b@host", 3) == "ok"
    assert store.resplit_candidates() == {}  # the new slice waits to be sent: nothing to cut meanwhile
    assert store.cuts("s2") == {sliced.batches[1]: 96} and store.cut("s2", sliced.batches[1]) == 96
    assert store.top_up("s2", 3) == ("", [new])  # the new slice goes out at once
    assert store.start_batch("s2", new, f"t-{new}", "b@host", 60.0) == "ok"
    assert store.resplit("s2", sliced.batches[1], 64, "f000001-000001-r00065-00128", "b@host", 9) == "cut"  # once
    assert store.resplit_candidates()["s2"][2] == {sliced.batches[1]: 96}
    for batch, seconds in ((sliced.batches[0], 0.9), (sliced.batches[1], 3.0), (new, 2.0)):
        info = {"node": "a@host", "seconds": seconds + 0.1, "start": 0.1}
        assert store.finish_batch("s2", batch, info, [], f"t-{batch}") in ("ok", "done")
    assert sorted(store.slice_times(sliced.history)) == [("f000001-000001-r00001-00032", pytest.approx(0.9)),
                                                         ("f000001-000001-r00033-00096", pytest.approx(3.0)),
                                                         (new, pytest.approx(2.0))]
