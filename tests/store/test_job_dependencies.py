"""Job dependencies (submit --after, --after-frames) on the real Redis, without render nodes: the states, what a
waiting job holds (nothing), the refusals at submit (unknown id, another user's job, a cycle), and the release or
failure when the job waited for ends."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from httpov.access import Identity, Role
from httpov.after import After, check, settle
from httpov.broker import QueueLayout, queued_or_held
from httpov.cli import cli
from httpov.errors import BadInputError, JobStateError
from httpov.local_farm import worker_env
from httpov.states import JobState
from tests.conftest import write_scene

ALICE, BOB = Identity("alice", Role.USER), Identity("bob", Role.USER)


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "s", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                       "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=3\nInitial_Clock=0\nFinal_Clock=1\n")


def _sent(client, job_id: str) -> list[str]:
    """The job's batches in Celery's queue (messages a render node would take)."""
    held = queued_or_held(client.store.r, QueueLayout.of(client.celery), [client.settings.queue])
    return sorted(batch for job, batch in held if job == job_id)


def test_waiting_job_holds_nothing_until_released(client, scene):
    a = client.submit(scene, count=1, who=ALICE).spec.id
    b = client.submit(scene, count=1, after=a, who=ALICE).spec.id
    store = client.store
    assert store.state(b) == JobState.WAITING
    assert b not in store.active_ids() and b in store.dependent_ids()
    assert store.r.llen(store.keys.pending(b)) == 0 and store.window_size(b) == 0 and not _sent(client, b)
    assert _sent(client, a)  # the job it waits for is queued as usual
    view = client.view(b, who=ALICE)
    assert view.after == [a] and view.notes == [f"waiting for job(s) {a} to be done"]
    client.reap()
    assert store.state(b) == JobState.WAITING  # a sweep leaves it waiting
    store.transition(a, JobState.DONE)
    client.reap()  # the sweep releases it: a crash of the one that ended the job strands none
    assert store.state(b) == JobState.QUEUED and b in store.active_ids() and b not in store.dependent_ids()
    assert _sent(client, b) and store.window_size(b) + store.r.llen(store.keys.pending(b)) == 3


def test_cancel_fails_the_waiters_with_the_reason_unless_after_anyway(client, scene):
    a = client.submit(scene, count=3, who=ALICE).spec.id
    b = client.submit(scene, count=3, after=a, who=ALICE).spec.id
    c = client.submit(scene, count=3, after=a, after_anyway=True, who=ALICE).spec.id
    client.cancel(a, who=ALICE)  # settles its waiters at once
    assert client.store.state(b) == JobState.FAILED
    assert client.view(b, who=ALICE).errors == [f"job {a} that it waits for was cancelled"]
    assert client.store.state(c) == JobState.QUEUED and _sent(client, c)


def test_unknown_and_another_users_job_are_refused_alike(client, scene):
    a = client.submit(scene, count=3, who=ALICE).spec.id
    jobs = client.store.job_ids()
    said = {}
    for job in (a, "0123456789ab"):
        with pytest.raises(BadInputError) as refused:
            client.submit(scene, count=3, after=job, who=BOB)
        said[job] = str(refused.value).replace(job, "JOB")
    assert said[a] == said["0123456789ab"] == "after: there is no job JOB of bob's"  # the field, as the web says it
    with pytest.raises(BadInputError):
        client.submit(scene, count=3, after_frames=a, who=BOB)
    assert client.store.job_ids() == jobs  # nothing recorded
    result = CliRunner().invoke(cli, ["submit", str(scene), "--after", "not a job!"], env=worker_env(client.settings))
    assert result.exit_code != 0 and "--after: 'not a job!' is not a job id" in result.output
    for flag in ("--after", "--after-frames"):  # the CLI says the flag
        result = CliRunner().invoke(cli, ["submit", str(scene), flag, "0123456789ab"], env=worker_env(client.settings))
        assert result.exit_code == 2 and f"{flag}: there is no job 0123456789ab of " in result.output, result.output
    assert client.store.job_ids() == jobs


def test_cycle_refused(client, scene):
    a = client.submit(scene, count=3, who=ALICE).spec.id
    b = client.submit(scene, count=3, after=a, who=ALICE).spec.id
    client.store.r.hset(client.store.keys.job(a), "after", "zz")  # as if a reused id 'zz' were submitted after b
    with pytest.raises(BadInputError, match="would wait for itself"):
        check(client.store, ALICE, After((b,)), job_id="zz")
    with pytest.raises(BadInputError, match="would wait for itself"):
        check(client.store, ALICE, After((a,)), job_id=a)


def test_after_frames_holds_the_frames_not_done(client, scene, tmp_path):
    a = client.submit(scene, count=1, who=ALICE).spec.id  # frames 1-3, one a batch
    two = write_scene(tmp_path / "five", "#version 3.7;\nbackground { color rgb 1 }\n",
                      "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=5\nInitial_Clock=0\nFinal_Clock=1\n")
    b = client.submit(two, count=1, after_frames=a, who=ALICE).spec.id
    store = client.store
    assert store.state(b) == JobState.QUEUED  # not waiting as a whole
    assert store.held(b) == {"f000001-000001", "f000002-000002", "f000003-000003"}
    assert sorted(store.batches(b)["done"]) == [] and not settle(store, b)  # frames 4, 5: A has none, they go
    store.transition(a, JobState.DONE)
    assert settle(store, b) and not store.held(b) and b not in store.dependent_ids()


def test_deleting_or_cancelling_the_job_waited_for_fails_whole_and_frame_waiters(client, scene):
    a = client.submit(scene, count=1, who=ALICE).spec.id
    b = client.submit(scene, count=1, after=a, who=ALICE).spec.id
    c = client.submit(scene, count=1, after_frames=a, who=ALICE).spec.id
    with pytest.raises(JobStateError):  # a waiting job is deleted only --force (cancelled first), as a live one
        client.delete(b, who=ALICE)
    client.delete(a, force=True, who=ALICE)  # cancelled, then gone: its waiters fail with the first reason met
    assert client.store.state(b) == client.store.state(c) == JobState.FAILED
    assert client.view(b, who=ALICE).errors == [f"job {a} that it waits for was cancelled"]
    assert not client.store.dependent_ids()
    d = client.submit(scene, count=1, who=ALICE).spec.id
    e = client.submit(scene, count=1, after=d, who=ALICE).spec.id
    client.store.transition(d, JobState.CANCELLED)
    client.store.transition(d, JobState.DELETING)  # as a delete cut short before its waiters were settled
    client.reap()
    assert client.view(e, who=ALICE).errors == [f"job {d} that it waits for was deleted"]
