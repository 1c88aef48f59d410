"""A job's and a batch's states, and the table of the moves between them that httpov makes."""
from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from httpov.errors import JobStateError


class JobState(StrEnum):
    """The `state` field of a job's record (str values: stored records and JSON keep their plain words)."""

    SUBMITTING = "submitting"  # its client is queueing its batches: listed nowhere yet, its first batches may render
    WAITING = "waiting"  # submit --after: until the jobs it names are done; no batch pending, not in the active set
    QUEUED = "queued"  # every batch queued, none started yet
    RUNNING = "running"  # a batch has started
    PAUSED = "paused"  # batches not yet sent are parked, queued ones are parked as they come up; running ones finish
    DONE = "done"  # every batch done
    FAILED = "failed"  # a batch failed for good, or its submit was interrupted
    CANCELLED = "cancelled"  # `httpov cancel`
    DELETING = "deleting"  # `httpov delete` is removing it: listed until its keys are gone (a rerun finishes it)


#: Batches are handed out and rendered in these states.
LIVE = (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING)
#: A job in these states renders nothing more (until `httpov retry`); it has a `finished` time.
FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

_J = JobState
_JOB_VALUES = frozenset(state.value for state in JobState)
#: Every move of a job's state that httpov makes: state -> the states it may go to (and who moves it there).
JOB_MOVES: dict[JobState, frozenset[JobState]] = {
    # publish (queued, or running if a batch started meanwhile); a node meeting a dead submit lease, or the
    # interrupted submit itself (failed); pause, cancel; the last batch done or a final failure
    _J.SUBMITTING: frozenset({_J.QUEUED, _J.RUNNING, _J.WAITING, _J.PAUSED, _J.CANCELLED, _J.DONE, _J.FAILED}),
    # the jobs it waits for are done (released: queued); one of them failed, was cancelled or deleted; cancel
    _J.WAITING: frozenset({_J.QUEUED, _J.FAILED, _J.CANCELLED}),
    _J.QUEUED: frozenset({_J.RUNNING, _J.PAUSED, _J.CANCELLED, _J.DONE, _J.FAILED}),  # a node starts a batch; ...
    _J.RUNNING: frozenset({_J.PAUSED, _J.CANCELLED, _J.DONE, _J.FAILED}),
    # resume; cancel; its last running batches end while it is paused
    _J.PAUSED: frozenset({_J.RUNNING, _J.CANCELLED, _J.DONE, _J.FAILED}),
    _J.DONE: frozenset({_J.RUNNING, _J.DELETING}),  # `httpov retry`, `httpov delete`
    _J.FAILED: frozenset({_J.RUNNING, _J.DELETING}),
    _J.CANCELLED: frozenset({_J.RUNNING, _J.DELETING}),
    _J.DELETING: frozenset({_J.DELETING}),  # a delete cut short is run again
}


class TransitionRefused(JobStateError):
    """A job's state was not moved: the move from the state it is in to the new one is not allowed."""

    def __init__(self, job_id: str, current: str, new: str) -> None:
        super().__init__(f"job {job_id} is {current}: it cannot become {new}")
        self.job_id, self.current, self.new = job_id, current, new


def allowed(old: str, new: str) -> bool:
    """Whether the table lets a job in state `old` move to `new` (an unknown state moves nowhere)."""
    if old not in _JOB_VALUES or new not in _JOB_VALUES:
        return False
    return JobState(new) in JOB_MOVES[JobState(old)]


def allowed_from(new: JobState, only: Iterable[JobState] | None = None) -> tuple[JobState, ...]:
    """The states from which a job may move to `new` by the table, in the table's order; `only` narrows them to
    those of a given move (resume: only from 'paused'). A state of `only` the table does not allow is a bug of the
    caller: ValueError naming both states."""
    table = tuple(old for old, targets in JOB_MOVES.items() if new in targets)
    if only is None:
        return table
    narrowed = tuple(JobState(state) for state in only)
    wrong = [state for state in narrowed if state not in table]
    if wrong:
        raise ValueError(f"a job never moves from {wrong[0]} to {new} (httpov.states.JOB_MOVES)")
    return tuple(state for state in table if state in narrowed)


def check(job_id: str, old: str, new: str) -> None:
    """TransitionRefused unless the table allows the move from `old` to `new`."""
    if not allowed(old, new):
        raise TransitionRefused(job_id, old, new)


class BatchState(StrEnum):
    """Where a batch of a job is. Not a stored field: a batch is in the key family of its state (httpov.store.keys),
    and in none while it waits for its job's pre-pass or was never put on the pending list."""

    PENDING = "pending"  # on the job's pending list, not yet sent (job:<id>:pending, a list)
    QUEUED = "queued"  # sent to its Celery queue and not yet started: in the job's window (job:<id>:window, a zset)
    RUNNING = "running"  # a task holds its lease (job:<id>:running, a hash of running infos; lease:<id>:<batch>)
    HELD = "held"  # submit --after-frames: its frames of the other job are not done yet (job:<id>:held, a set)
    PARKED = "parked"  # set aside while its job is paused (job:<id>:parked, a set); resume pends it again
    FAILED = "failed"  # its last attempt failed (job:<id>:failed, a hash): retried unless the failure was final
    DONE = "done"  # rendered and stored (job:<id>:done, a hash of done infos); it stays done


_B = BatchState
_BATCH_VALUES = frozenset(state.value for state in BatchState)
#: Every move of a batch that httpov makes (a batch of a job gone or finished is dropped from wherever it is).
BATCH_MOVES: dict[BatchState, frozenset[BatchState]] = {
    _B.PENDING: frozenset({_B.QUEUED, _B.PARKED}),  # top-up sends it; a pause parks what was never sent
    # a node starts it; taken off the queue (unsend) or deferred by --max-processes/--max-nodes; parked when it
    # comes up while its job is paused
    _B.QUEUED: frozenset({_B.RUNNING, _B.PENDING, _B.PARKED}),
    # rendered; an attempt failed; its node was lost (the lease sweep requeues it) or it was handed back (queued)
    _B.RUNNING: frozenset({_B.DONE, _B.FAILED, _B.QUEUED}),
    _B.HELD: frozenset({_B.PENDING}),  # the other job's frames are done (or it ended): pended
    _B.PARKED: frozenset({_B.PENDING}),  # resume, retry
    # its failure stays recorded until it is done: its Celery retry starts it again; `httpov retry` pends it
    _B.FAILED: frozenset({_B.RUNNING, _B.PENDING}),
    _B.DONE: frozenset({_B.PENDING}),  # `httpov retry --frames` renders done batches again
}


def batch_allowed(old: str, new: str) -> bool:
    """Whether the table lets a batch move from `old` to `new`."""
    if old not in _BATCH_VALUES or new not in _BATCH_VALUES:
        return False
    return BatchState(new) in BATCH_MOVES[BatchState(old)]
