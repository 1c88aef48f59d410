"""The table of job and batch states: every pair of states is either a move httpov makes or refused."""
from __future__ import annotations

import itertools

import pytest

from httpov.errors import JobStateError
from httpov.states import (
    BATCH_MOVES,
    FINISHED,
    JOB_MOVES,
    LIVE,
    BatchState,
    JobState,
    TransitionRefused,
    allowed,
    allowed_from,
    batch_allowed,
    check,
)

J = JobState
#: The table spelled out pair by pair, as the code moves jobs (client, store scripts, retention).
JOB_PAIRS = {
    (J.SUBMITTING, J.QUEUED), (J.SUBMITTING, J.RUNNING), (J.SUBMITTING, J.PAUSED), (J.SUBMITTING, J.CANCELLED),
    (J.SUBMITTING, J.DONE), (J.SUBMITTING, J.FAILED), (J.SUBMITTING, J.WAITING),
    (J.WAITING, J.QUEUED), (J.WAITING, J.FAILED), (J.WAITING, J.CANCELLED),
    (J.QUEUED, J.RUNNING), (J.QUEUED, J.PAUSED), (J.QUEUED, J.CANCELLED), (J.QUEUED, J.DONE), (J.QUEUED, J.FAILED),
    (J.RUNNING, J.PAUSED), (J.RUNNING, J.CANCELLED), (J.RUNNING, J.DONE), (J.RUNNING, J.FAILED),
    (J.PAUSED, J.RUNNING), (J.PAUSED, J.CANCELLED), (J.PAUSED, J.DONE), (J.PAUSED, J.FAILED),
    (J.DONE, J.RUNNING), (J.DONE, J.DELETING),
    (J.FAILED, J.RUNNING), (J.FAILED, J.DELETING),
    (J.CANCELLED, J.RUNNING), (J.CANCELLED, J.DELETING),
    (J.DELETING, J.DELETING),
}
B = BatchState
BATCH_PAIRS = {
    (B.PENDING, B.QUEUED), (B.PENDING, B.PARKED),
    (B.QUEUED, B.RUNNING), (B.QUEUED, B.PENDING), (B.QUEUED, B.PARKED),
    (B.RUNNING, B.DONE), (B.RUNNING, B.FAILED), (B.RUNNING, B.QUEUED),
    (B.PARKED, B.PENDING), (B.HELD, B.PENDING),
    (B.FAILED, B.RUNNING), (B.FAILED, B.PENDING),
    (B.DONE, B.PENDING),
}


def test_the_table_is_the_pairs_spelled_out():
    assert {(old, new) for old, targets in JOB_MOVES.items() for new in targets} == JOB_PAIRS
    assert {(old, new) for old, targets in BATCH_MOVES.items() for new in targets} == BATCH_PAIRS
    assert set(JOB_MOVES) == set(JobState) and set(BATCH_MOVES) == set(BatchState)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobState, JobState)))
def test_every_job_pair_is_allowed_or_refused_naming_both_states(old: JobState, new: JobState):
    if (old, new) in JOB_PAIRS:
        assert allowed(old, new) and allowed(old.value, new.value)
        check("j1", old, new)
        assert old in allowed_from(new)
    else:
        assert not allowed(old, new)
        with pytest.raises(TransitionRefused) as refused:
            check("j1", old, new)
        assert f"is {old.value}" in str(refused.value) and f"become {new.value}" in str(refused.value)
        assert (refused.value.current, refused.value.new) == (old, new)
        assert isinstance(refused.value, JobStateError)  # the CLI's exit code 4
        assert old not in allowed_from(new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(BatchState, BatchState)))
def test_every_batch_pair_is_allowed_or_refused(old: BatchState, new: BatchState):
    assert batch_allowed(old, new) == ((old, new) in BATCH_PAIRS)


def test_unknown_states_move_nowhere():
    assert not allowed("lost", "running") and not allowed("running", "lost")
    assert not batch_allowed("lost", "done")


def test_a_narrowed_move_must_be_in_the_table():
    assert allowed_from(J.RUNNING, only=(J.PAUSED,)) == (J.PAUSED,)
    assert allowed_from(J.RUNNING, only=FINISHED) == FINISHED
    with pytest.raises(ValueError, match="never moves from running to running"):
        allowed_from(J.RUNNING, only=(J.RUNNING,))


def test_states_are_the_plain_words_stored_in_redis():
    assert [s.value for s in JobState] == ["submitting", "waiting", "queued", "running", "paused", "done", "failed",
                                           "cancelled", "deleting"]
    assert f"{J.DONE}" == "done" and J.DONE == "done" and "done" in FINISHED
    assert LIVE == ("submitting", "queued", "running")
    assert {J.PAUSED: 1}.get("paused") == 1  # a plain string read from Redis finds its enum's entry
