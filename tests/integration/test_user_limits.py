"""Per-user limits set by admins: stored in Redis by the CLI and the JSON API, refused submits and priorities (and
another user unaffected), fair share's windows by weight, and the owner's max processes across their jobs, exact
in the render node's start step and with real workers. Real Redis; real workers and povray in the last test."""
from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from httpov.access import Identity, Role
from httpov.cli import cli
from httpov.errors import ForbiddenError
from httpov.local_farm import worker_env
from tests.conftest import TINY_ANIMATION, wait_for, write_scene
from tests.webapp import web_app

TINY = "Width=8\nHeight=6\n"
ALICE = Identity("alice", Role.USER)
BOB = Identity("bob", Role.USER)


def _run(settings, *args: str):
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


def test_admins_set_list_and_clear_limits_with_the_cli(settings, client):
    assert _run(settings, "limits", "set", "alice", "--max-processes", "2", "--max-priority", "6").exit_code == 0
    assert _run(settings, "limits", "set", "alice", "--weight", "0.5").exit_code == 0  # the others stay
    assert _run(settings, "limits", "set", "*", "--max-jobs", "3").exit_code == 0
    stored = client.store.r.hgetall(client.store.keys.user_limits())
    assert {name: json.loads(raw) for name, raw in stored.items()} == {
        "alice": {"max_processes": 2, "max_priority": 6, "weight": 0.5}, "*": {"max_jobs": 3}}
    listed = _run(settings, "limits")
    assert listed.exit_code == 0 and "alice" in listed.output and "(farm settings)" in listed.output
    as_json = json.loads(_run(settings, "limits", "--json").output)
    assert as_json["defaults"] == {"max_processes": 0, "max_jobs": 0, "max_priority": 8, "weight": 1.0}
    assert as_json["users"]["*"] == {"max_jobs": 3}
    assert client.user_limits_of("bob").max_jobs == 3 and client.user_limits_of("alice").max_processes == 2
    bad = _run(settings, "limits", "set", "alice", "--max-priority", "10")
    assert bad.exit_code == 2 and "max priority must be 0 to 9" in bad.output
    assert _run(settings, "limits", "set", "no/such", "--max-jobs", "1").exit_code == 2
    assert _run(settings, "limits", "clear", "alice").output.strip() == "alice: entry removed"
    assert client.user_limits_of("alice").max_processes == 0 and client.user_limits_of("alice").max_jobs == 3
    # only admins: a user may not change anyone's limits, their own included, nor read them
    for attempt in (lambda: client.set_limits("alice", who=ALICE, max_jobs=0), lambda: client.list_limits(who=BOB),
                    lambda: client.clear_limits("*", who=BOB)):
        with pytest.raises(ForbiddenError):
            attempt()
    assert json.loads(client.store.r.hget(client.store.keys.user_limits(), "*")) == {"max_jobs": 3}


def test_submit_past_max_jobs_or_max_priority_is_refused_and_another_user_is_not(tmp_path, settings, client):
    client.set_limits("alice", max_jobs=1, max_priority=6)
    scene = write_scene(tmp_path / "s", TINY_ANIMATION, TINY)
    first = client.submit(scene, frames=2, user="alice", who=ALICE)
    with pytest.raises(ForbiddenError, match=r"alice has 1 live job\(s\).*max jobs 1"):
        client.submit(scene, frames=2, user="alice", who=ALICE)
    with pytest.raises(ForbiddenError, match=r"max jobs 1"):  # an operator submitting for alice too: the owner's
        client.submit(scene, frames=2, user="alice")
    # bob is unaffected: two jobs, and the farm's highest priority for users (8)
    bob1 = client.submit(scene, frames=2, user="bob", who=BOB)
    bob2 = client.submit(scene, frames=2, user="bob", who=BOB, priority=8)
    with pytest.raises(ForbiddenError, match=r"priority 9 .* bob .* 8 \(max priority\)"):
        client.submit(scene, frames=2, user="bob", who=BOB, priority=9)
    assert client.store.live_jobs_of("bob") == 2 and client.store.live_jobs_of("alice") == 1
    # a job that ends frees its slot
    client.cancel(first.spec.id)
    with pytest.raises(ForbiddenError, match=r"priority 7 .* alice .* 6 \(max priority\)"):
        client.submit(scene, frames=2, user="alice", who=ALICE, priority=7)
    second = client.submit(scene, frames=2, user="alice", who=ALICE, priority=6)
    # raising a job above its owner's highest is refused likewise, nothing changed; an admin may
    with pytest.raises(ForbiddenError, match=r"priority 7 for job .* alice"):
        client.set_priority(second.spec.id, 7, who=ALICE)
    assert client.store.shares([second.spec.id])[second.spec.id].priority == 6
    client.set_priority(bob1.spec.id, 8, who=BOB)  # bob's own highest: fine
    with pytest.raises(ForbiddenError):
        client.set_priority(bob2.spec.id, 9, who=BOB)
    client.set_priority(second.spec.id, 9)  # the local operator (an admin)
    assert client.store.shares([second.spec.id])[second.spec.id].priority == 9
    # the CLI says which limit, with exit code 10
    refused = _run(settings, "submit", str(scene), "--frames", "2", "--user", "alice")
    assert refused.exit_code == 10 and "max jobs 1" in refused.output
    assert client.store.live_jobs_of("alice") == 1


def test_the_json_api_lets_admins_read_and_set_limits_and_nobody_else(settings, client):
    app = web_app(client, public_read=True, tokens=("s3cret-token",)).test_client()
    admin = {"Authorization": "Bearer s3cret-token"}
    put = app.put("/api/limits/carol", json={"max_processes": 3, "weight": 2}, headers=admin)
    assert put.status_code == 200 and put.get_json() == {"name": "carol", "limits": {"max_processes": 3,
                                                                                       "weight": 2}}
    assert app.put("/api/limits/*", data={"max_jobs": "4"}, headers=admin).status_code == 200
    listed = app.get("/api/limits", headers=admin)
    assert listed.status_code == 200 and listed.get_json()["users"] == {"*": {"max_jobs": 4},
                                                                        "carol": {"max_processes": 3, "weight": 2}}
    bad = app.put("/api/limits/carol", json={"max_priority": 11}, headers=admin)
    assert bad.status_code == 400 and bad.get_json()["field"] == "max_priority"
    assert app.put("/api/limits/carol", json={"speed": 1}, headers=admin).get_json()["field"] == "speed"
    # anyone else (a public reader): not the limits, and no change
    assert app.get("/api/limits").status_code == 403
    assert app.put("/api/limits/carol", json={"max_processes": 0}).status_code in (401, 403)
    assert app.delete("/api/limits/carol").status_code in (401, 403)
    assert client.user_limits_of("carol").max_processes == 3
    assert app.delete("/api/limits/carol", headers=admin).get_json() == {"name": "carol", "removed": True}
    assert client.user_limits_of("carol").max_processes == 0


def test_fair_share_windows_follow_weight_and_max_processes(tmp_path, settings, client):
    from httpov.dispatch import windows

    client.store.heartbeat("n@a", 4, [])  # 4 render processes: a budget of 6 window slots per user
    scene = write_scene(tmp_path / "w", TINY_ANIMATION, TINY)

    def submit(user: str) -> str:
        return client.submit(scene, frames=20, count=1, user=user).spec.id
    a, b = submit("alice"), submit("bob")
    assert windows(client.store, settings.lease_seconds) == {a: 6, b: 6}
    client.set_limits("alice", weight=3)
    assert windows(client.store, settings.lease_seconds) == {a: 6, b: 2}
    client.set_limits("alice", max_processes=1)
    assert windows(client.store, settings.lease_seconds) == {a: 1, b: 2}
    assert windows(client.store, settings.lease_seconds, user_cap=1) == {a: 1, b: 1}, "the farm's default cap"


def _start(client, job_id: str, batch_id: str, node: str = "n@a") -> str:
    return client.store.start_batch(job_id, batch_id, f"token-{batch_id}-{node}", node, 30.0)


def test_start_batch_defers_past_the_owners_max_processes_over_all_their_jobs(tmp_path, settings, client):
    client.set_limits("alice", max_processes=2)
    scene = write_scene(tmp_path / "s", TINY_ANIMATION, TINY)
    a1, a2, b1 = (client.submit(scene, frames=4, count=1, user=user).spec
                  for user in ("alice", "alice", "bob"))
    batches = {spec.id: spec.batches for spec in (a1, a2, b1)}
    assert _start(client, a1.id, batches[a1.id][0]) == "ok"
    assert _start(client, a2.id, batches[a2.id][0]) == "ok"
    assert _start(client, a2.id, batches[a2.id][1]) == "deferred", "a third of alice's batches at once"
    assert _start(client, a1.id, batches[a1.id][1]) == "deferred"
    assert client.store.r.lindex(client.store.keys.pending(a2.id), 0) == batches[a2.id][1], "back at the front"
    assert [_start(client, b1.id, batch) for batch in batches[b1.id]] == ["ok"] * 4, "bob is not limited"
    client.set_limits("alice", max_processes=3)
    assert _start(client, a1.id, batches[a1.id][1]) == "ok"
    # the farm's default (HTTPOV_USER_MAX_PROCESSES) binds a user with no entry, and a `*` entry wins over it
    carol = client.submit(scene, frames=4, count=1, user="carol").spec
    assert client.store.start_batch(carol.id, carol.batches[0], "t0", "n@a", 30.0, user_max_processes=1) == "ok"
    assert client.store.start_batch(carol.id, carol.batches[1], "t1", "n@a", 30.0,
                                    user_max_processes=1) == "deferred"
    client.set_limits("*", max_processes=2)
    assert client.store.start_batch(carol.id, carol.batches[1], "t1", "n@a", 30.0, user_max_processes=1) == "ok"


def test_a_users_max_processes_1_never_runs_two_of_their_batches_at_once(tmp_path, settings, client, workers):
    workers(concurrency=2, name="a")
    workers(concurrency=2, name="b")
    wait_for(lambda: client.store.render_processes(within=30)[0] >= 4, 60, "the render nodes' first heartbeat")
    client.set_limits("alice", max_processes=1)
    scene = write_scene(tmp_path / "one", TINY_ANIMATION, TINY)
    jobs = [client.submit(scene, frames=4, count=1, user="alice", who=ALICE).spec.id for _ in range(2)]
    bob = client.submit(scene, frames=8, count=1, user="bob", who=BOB).spec.id
    most, bob_most, samples, stop = [0], [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], sum(len(client.store.running(job)) for job in jobs))
            bob_most[0] = max(bob_most[0], len(client.store.running(bob)))
            samples[0] += 1
            time.sleep(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        finals = [client.wait(job, timeout=180) for job in (*jobs, bob)]
    finally:
        stop.set()
        sampler.join()
    assert [final.frames_done for final in finals] == [4, 4, 8]
    assert most[0] == 1, f"{most[0]} of alice's batches ran at once (sampled {samples[0]} times)"
    assert bob_most[0] >= 2, "bob's job, not limited, never ran two batches at once"


def test_a_re_split_never_takes_a_user_past_their_max_processes(tmp_path, settings, client):
    """A node with an idle render process splits the slowest running slice of a still (issue #28 item 2), but not
    one of a user at their max processes: the new slice would run a third batch of alice's at once. Bob's job, with
    fewer rows left and no cap, is split instead."""
    from httpov.plan import split_batch_id
    from httpov.worker.resplit import resplit_one

    client.store.heartbeat("n@a", 4, [])
    client.set_limits("alice", max_processes=2)
    jobs = {}
    for user, height in (("alice", 512), ("bob", 256)):
        scene = write_scene(tmp_path / user, TINY_ANIMATION, f"Width=8\nHeight={height}\n")
        jobs[user] = client.submit(scene, slices=2, user=user).spec
        for batch in jobs[user].batches:
            assert _start(client, jobs[user].id, batch) == "ok"
    split = resplit_one(client.celery, client.store, settings.queue, settings.lease_seconds, "n@b", [])
    alice, bob = jobs["alice"], jobs["bob"]
    assert client.store.cuts(alice.id) == {}, "alice is at her 2 processes"
    assert client.store.spec(alice.id).batches == alice.batches
    (cut_slice, cut), = client.store.cuts(bob.id).items()  # one of bob's two slices, each with 128 rows left
    assert cut_slice in bob.batches and split == split_batch_id(cut_slice, cut)
    assert client.store.window_size(bob.id) == 3, "bob's new slice is sent at once"
