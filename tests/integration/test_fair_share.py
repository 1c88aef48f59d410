"""Jobs share render nodes: a small job is not stuck behind a big one at the same priority, --max-processes caps a
job's render processes, a higher priority still goes first, and the user is recorded. Real Redis, real
`celery worker` processes, real povray on tiny scenes."""
from __future__ import annotations

import json
import threading

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.plan import preview_order
from httpov.store.keys import Keys
from httpov.view import job_view
from tests.conftest import TINY_ANIMATION, wait_for, write_scene

TINY = "Width=8\nHeight=6\n"


def _nodes_seen(client, settings, processes: int) -> None:
    """Wait until the render nodes have said how many processes they run (their first sweep), so that windows are
    sized for them."""
    wait_for(lambda: client.store.render_processes(within=30)[0] >= processes, 60, "the render nodes' first heartbeat")


def test_a_small_job_is_not_stuck_behind_a_big_one_at_the_same_priority(tmp_path, settings, client, workers):
    workers(concurrency=2)
    _nodes_seen(client, settings, 2)
    big = client.submit(write_scene(tmp_path / "big", TINY_ANIMATION, TINY), frames=40, count=1, name="big")
    wait_for(lambda: len(client.store.batches(big.spec.id)["done"]) >= 2, 60, "the big job to be rendering")
    small = client.submit(write_scene(tmp_path / "small", TINY_ANIMATION, TINY), frames=2, count=1, name="small")
    assert client.wait(small.spec.id, timeout=120).state == "done"
    big_done = len(client.store.batches(big.spec.id)["done"])
    assert client.store.state(big.spec.id) in ("queued", "running"), "the big job ended first"
    assert big_done < 20, f"the small job waited for {big_done} of the big job's 40 batches"
    assert client.wait(big.spec.id, timeout=180).frames_done == 40
    # the big job's queue held a window, not all of its batches: nothing left pending or in flight once it is done
    assert client.store.r.llen(Keys(settings.prefix).pending(big.spec.id)) == 0
    assert client.store.r.zcard(Keys(settings.prefix).window(big.spec.id)) == 0


def test_max_processes_1_never_runs_two_batches_of_the_job(tmp_path, settings, client, workers):
    workers(concurrency=2, name="a")
    workers(concurrency=2, name="b")
    _nodes_seen(client, settings, 4)
    result = CliRunner().invoke(cli, ["submit", str(write_scene(tmp_path / "one", TINY_ANIMATION, TINY)),
                                      "--frames", "6", "--count", "1", "--max-processes", "1"],
                                env=worker_env(settings))
    assert result.exit_code == 0, result.output
    job = result.output.split()[1].rstrip(":")
    most, samples, stop = [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(client.store.running(job)))
            samples[0] += 1
            stop.wait(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        final = client.wait(job, timeout=180)
    finally:
        stop.set()
        sampler.join()
    assert final.frames_done == 6 and final.max_processes == 1
    assert most[0] == 1, f"{most[0]} batches of the job ran at once (sampled {samples[0]} times)"
    assert client.store.r.zcard(Keys(settings.prefix).window(job)) == 0


def test_max_nodes_1_never_renders_the_job_on_two_nodes_at_once(tmp_path, settings, client, workers):
    workers(concurrency=2, name="a")
    workers(concurrency=2, name="b")
    _nodes_seen(client, settings, 4)
    sub = client.submit(write_scene(tmp_path / "one", TINY_ANIMATION, TINY), frames=8, count=1, max_nodes=1)
    most, together, stop = [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            running = client.store.running(sub.spec.id)
            most[0] = max(most[0], len({info.get("node") for info in running.values()}))
            together[0] = max(together[0], len(running))
            stop.wait(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        final = client.wait(sub.spec.id, timeout=180)
    finally:
        stop.set()
        sampler.join()
    assert final.frames_done == 8 and final.max_nodes == 1
    assert most[0] == 1, f"{most[0]} render nodes rendered the job at once"
    assert together[0] >= 2, "one node's two render processes never rendered the job together"
    bad = CliRunner().invoke(cli, ["submit", str(tmp_path / "one"), "--max-nodes", "0"], env=worker_env(settings))
    assert bad.exit_code == 2 and "--max-nodes must be at least 1" in bad.output


def test_a_higher_priority_still_goes_first_with_windows(tmp_path, settings, client, workers):
    workers(concurrency=1)
    _nodes_seen(client, settings, 1)
    scene = write_scene(tmp_path / "pr", TINY_ANIMATION, TINY)
    low = client.submit(scene, frames=12, count=1, priority=1, name="low")
    wait_for(lambda: len(client.store.batches(low.spec.id)["done"]) >= 1, 60, "the low job to be rendering")
    high = client.submit(scene, frames=12, count=1, priority=8, name="high")
    low_at_submit = len(client.store.batches(low.spec.id)["done"])
    client.wait(high.spec.id, timeout=180)
    low_at_high_end = len(client.store.batches(low.spec.id)["done"])
    # one low batch may have been running (and one prefetched) when the high job came: no more
    assert low_at_high_end <= low_at_submit + 2, (low_at_submit, low_at_high_end)
    assert client.wait(low.spec.id, timeout=180).frames_done == 12


def test_users_share_before_their_jobs(tmp_path, settings, client, workers):
    """alice's three jobs and bob's one, at the same priority: bob gets about half of the render processes, not a
    quarter, so his job ends while alice's have done about as many batches between them."""
    workers(concurrency=2)
    _nodes_seen(client, settings, 2)
    scene = write_scene(tmp_path / "us", TINY_ANIMATION, TINY)
    alices = [client.submit(scene, frames=12, count=1, user="alice", name=f"a{i}").spec.id for i in range(3)]
    bob = client.submit(scene, frames=12, count=1, user="bob", name="b").spec.id
    assert client.wait(bob, timeout=180).frames_done == 12
    alice_done = sum(len(client.store.batches(job_id)["done"]) for job_id in alices)
    # a share per job would have given bob a quarter: alice's jobs would be (nearly) all done, 36 batches
    assert alice_done <= 20, f"alice's jobs did {alice_done} batches while bob's did 12"
    for job_id in alices:
        assert client.wait(job_id, timeout=180).frames_done == 12


def test_windows_split_each_users_budget_between_their_jobs_at_each_priority(tmp_path, settings, client):
    from httpov.dispatch import windows

    scene = write_scene(tmp_path / "w", TINY_ANIMATION, TINY)

    def submit(user: str, priority: int = 5, max_processes: int | None = None) -> str:
        return client.submit(scene, frames=9, count=1, user=user, priority=priority,
                             max_processes=max_processes).spec.id
    # no render node has said how many processes it runs: a budget of 1.5 x 2 = 3 window slots per user
    a1, a2, a3 = submit("alice"), submit("alice"), submit("alice", priority=8)
    b1 = submit("bob")
    assert windows(client.store, settings.lease_seconds) == {a1: 1, a2: 2, a3: 3, b1: 3}
    c1, c2 = submit("carol", max_processes=1), submit("carol")  # a capped job leaves the rest to the others
    assert {j: w for j, w in windows(client.store, settings.lease_seconds).items() if j in (c1, c2)} == {c1: 1, c2: 2}
    client.set_priority(a2, 8)  # a job that moves to another priority shares there
    assert {j: w for j, w in windows(client.store, settings.lease_seconds).items() if j in (a1, a2, a3)} == {
        a1: 3, a2: 1, a3: 2}
    for _ in range(4):  # one user with more jobs than the budget: each keeps one slot, and so does every user
        submit("dave")
    shares = windows(client.store, settings.lease_seconds)
    assert sorted(w for j, w in shares.items() if client.store.record(j)["user"] == "dave") == [1, 1, 1, 1]
    assert shares[b1] == 4


def test_a_pool_jobs_window_counts_the_render_processes_of_its_pool_only(tmp_path, settings, client):
    from httpov.dispatch import windows

    client.store.heartbeat("plain@a", 2, [])
    client.store.heartbeat("big@b", 20, ["big"])  # takes the default queue's batches too
    scene = write_scene(tmp_path / "pw", TINY_ANIMATION, TINY)
    anywhere = client.submit(scene, frames=40, count=1).spec.id
    big = client.submit(scene, frames=40, count=1, pool="big").spec.id
    small = client.submit(scene, frames=40, count=1, pool="small").spec.id  # no live node: the minimum
    assert windows(client.store, settings.lease_seconds) == {anywhere: 33, big: 30, small: 3}
    big2 = client.submit(scene, frames=40, count=1, pool="big").spec.id  # same user and pool: the pool's budget split
    assert windows(client.store, settings.lease_seconds) == {anywhere: 33, big: 15, big2: 15, small: 3}


def _queued(client, settings) -> dict[str, list[str]]:
    """Each job's batches waiting in Celery's queue (kombu's Redis lists), the next to be taken first."""
    from httpov.broker import QueueLayout, render_message

    found: dict[str, list[str]] = {}
    for key in QueueLayout.of(client.celery).lists(settings.queue):
        for raw in reversed(client.store.r.lrange(key, 0, -1)):
            job_id, batch_id, _ = render_message(raw)
            found.setdefault(job_id, []).append(batch_id)
    return found


def test_a_users_new_job_takes_back_the_surplus_their_older_job_had_queued(tmp_path, settings, client, workers):
    """No render node yet, so windows are sized for 2 processes: a budget of 3. The big job has its 3 queued; the
    user's preview makes its part 1, so its last 2 messages go back to its pending list and the preview's 2 are
    queued right behind its first."""
    scene = write_scene(tmp_path / "mr", TINY_ANIMATION, TINY)
    big = client.submit(scene, frames=10, count=1, user="alice", name="big").spec
    order = preview_order(big.batches)  # handed out coarse-to-fine (HTTPOV_BATCH_ORDER)
    assert _queued(client, settings) == {big.id: order[:3]}
    small = client.submit(scene, frames=3, count=1, user="alice", name="small").spec
    small_order = preview_order(small.batches)
    assert _queued(client, settings) == {big.id: order[:1], small.id: small_order[:2]}
    assert client.store.r.lrange(Keys(settings.prefix).pending(big.id), 0, -1) == order[1:]
    other = client.submit(scene, frames=3, count=1, user="bob", name="other").spec  # another user takes nothing
    assert _queued(client, settings)[big.id] == order[:1]
    workers(concurrency=2)
    for job in (big, small, other):
        assert client.wait(job.id, timeout=180).frames_done == len(job.batches)
        assert set(client.store.batches(job.id)["attempts"].values()) == {1}, "a batch was rendered twice"


def test_the_user_is_recorded_and_shown(tmp_path, settings, client):
    import getpass

    scene = write_scene(tmp_path / "u", TINY_ANIMATION, TINY)
    named = CliRunner().invoke(cli, ["submit", str(scene), "--frames", "2", "--user", "alice"],
                               env=worker_env(settings))
    assert named.exit_code == 0, named.output
    default = client.submit(scene, frames=2)
    status = CliRunner().invoke(cli, ["status", "--json"], env=worker_env(settings))
    users = {j["id"]: j["user"] for j in json.loads(status.output)}
    assert users == {named.output.split()[1].rstrip(":"): "alice", default.spec.id: getpass.getuser()}
    alices = CliRunner().invoke(cli, ["status", "--json", "--user", "alice"], env=worker_env(settings))
    assert [j["user"] for j in json.loads(alices.output)] == ["alice"]
    bad = CliRunner().invoke(cli, ["submit", str(scene), "--user", "x/../y"], env=worker_env(settings))
    assert bad.exit_code != 0 and "--user" in bad.output
    zero = CliRunner().invoke(cli, ["submit", str(scene), "--max-processes", "0"], env=worker_env(settings))
    assert zero.exit_code != 0 and "--max-processes" in zero.output
    assert len(client.store.job_ids()) == 2, "a refused submit stores no job"


def test_batches_taken_for_a_window_but_never_sent_are_sent_by_the_sweep(tmp_path, settings, workers):
    """A client (or node) that dies between taking batches into the window and sending them: the job still ends."""
    from httpov.celery import make_app
    from httpov.client import Client

    class Dropping(Client):
        def _send(self, spec, batch_ids, *rest):
            return super()._send(spec, batch_ids[1:], *rest)  # the first batch's message is never sent

    # 1 s leases: the unsent sweep sends a batch idle in the window for two leases, seen unsent at two looks a
    # lease apart, where the default 4 s leases made the job wait 12-16 s for it
    settings = settings.with_(lease_seconds=1.0)
    dropping = Dropping(settings, make_app(settings))
    sub = dropping.submit(write_scene(tmp_path / "lost", TINY_ANIMATION, TINY), frames=3, count=1)
    workers(concurrency=1, settings_=settings)
    final = dropping.wait(sub.spec.id, timeout=120)
    assert final.frames_done == 3
    assert sub.spec.batches[0] in dropping.store.batches(sub.spec.id)["done"]


def test_a_pool_job_renders_only_on_nodes_of_its_pool(tmp_path, settings, client, workers):
    workers(concurrency=1, name="plain")
    _nodes_seen(client, settings, 1)
    scene = write_scene(tmp_path / "pool", TINY_ANIMATION, TINY)
    submitted = CliRunner().invoke(cli, ["submit", str(scene), "--frames", "3", "--count", "1", "--pool", "big"],
                                   env=worker_env(settings))
    assert submitted.exit_code == 0, submitted.output
    assert "no live render node is in pool 'big'" in submitted.output
    job = submitted.output.split()[1].rstrip(":")
    plain = client.submit(scene, frames=2, count=1)  # the plain node is up and renders plain jobs meanwhile
    assert client.wait(plain.spec.id, timeout=120).state == "done"
    assert client.store.batches(job)["done"] == {} and client.store.state(job) == "queued"
    shown = CliRunner().invoke(cli, ["status", job], env=worker_env(settings))
    assert shown.exit_code == 0 and "pool big: no live render node is in it" in shown.output, shown.output
    listed = CliRunner().invoke(cli, ["status"], env=worker_env(settings))
    assert f"job {job} waits: no live render node is in pool big" in listed.output
    assert json.loads(CliRunner().invoke(cli, ["status", job, "--json"], env=worker_env(settings)).output)[
        "pool_live"] is False
    workers(concurrency=1, name="bignode", settings_=settings.with_(pools="big,other"))
    wait_for(lambda: client.store.live_pools(within=30) == {"big", "other"}, 60, "the pool node's heartbeat")
    now = job_view(client.store, job)
    assert now.pool_live is True or now.ended  # a finished job asks no more
    assert client.wait(job, timeout=120).frames_done == 3
    assert {info["node"].split("@")[0] for info in client.store.batches(job)["done"].values()} == {"bignode"}
    assert client.store.live_pools(within=30) == {"big", "other"}
    bad = CliRunner().invoke(cli, ["submit", str(scene), "--pool", "a b"], env=worker_env(settings))
    assert bad.exit_code != 0 and "--pool" in bad.output


def test_concurrent_top_ups_never_over_fill_a_window(tmp_path, settings, client):
    """Twenty render processes topping up one job at once: the window holds exactly its size, each batch sent once."""
    from concurrent.futures import ThreadPoolExecutor

    from httpov.store import JobStore

    scene = write_scene(tmp_path / "w", TINY_ANIMATION, TINY)
    job = client.submit(scene, frames=40, count=1).spec.id  # no render node: the first window is 3 batches
    stores = [JobStore.connect(settings.state_url, settings.prefix) for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        sent = [b for _, batches in pool.map(lambda s: s.top_up(job, 9), stores) for b in batches]
    window = client.store.r.zrange(Keys(settings.prefix).window(job), 0, -1)
    assert len(window) == 9 and len(sent) == 6 and len(set(sent)) == 6 and set(sent) <= set(window)
    client.pause(job)
    assert client.store.top_up(job, 20) == ("", []), "a paused job sends nothing"
    assert len(client.store.batches(job)["parked"]) == 31, "the batches never sent are set aside at once"
