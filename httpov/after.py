"""Job dependencies: `submit --after JOB[,JOB...]` and `--after-frames JOB`.

A job submitted --after other jobs is published in state 'waiting': no batch pending, none queued, not in the active
set (no window, no render process). It is released (state 'queued', every batch pending) once every job it names is
done; if one of them fails, is cancelled or is deleted, it fails with that reason, unless --after-anyway releases it
as if that job were done.

--after-frames JOB keeps each batch whose frames the other job renders too off the pending list (the job's `held`
set) until those frames of the other job are done (every batch of theirs: a sliced frame's every slice); a batch of
frames the other job does not render is pending at once. When the other job ends, the rest is released (done, or
--after-anyway) or the job fails (as for --after).

Settled (`settle`) by the render process that finishes a batch (its dependents, at once), by every sweep (every
dependent job: a crash between steps strands none), and by the client that cancels or deletes a job. The moves are
atomic (JobStore.release, JobStore.transition): two settlers never pend a batch twice nor release a cancelled job.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from httpov.access import Action, Identity, require
from httpov.errors import ForbiddenError, JobNotFoundError, OptionError, literal
from httpov.plan import PREPASS_SUFFIX, Batch, JobSpec, handout_order, waiting_for_prepass
from httpov.states import FINISHED, JobState, TransitionRefused
from httpov.store import JobStore
from httpov.store.records import JobRecord
from httpov.text import shown

#: The state of a job that is gone, as settle reads it.
GONE = "deleted"
#: How many jobs up a dependency chain submit looks for a cycle.
MAX_DEPTH = 1000


@dataclass(frozen=True)
class After:
    """What a job waits for: whole jobs (`jobs`), the same frames of one job (`frames`), and whether it runs even if
    one of them fails or is cancelled (`anyway`)."""

    jobs: tuple[str, ...] = ()
    frames: str = ""
    anyway: bool = False

    def __bool__(self) -> bool:
        return bool(self.jobs or self.frames)

    @property
    def others(self) -> tuple[str, ...]:
        return self.jobs + ((self.frames,) if self.frames and self.frames not in self.jobs else ())

    def fields(self) -> dict[str, str]:
        """The job record's fields (JobRecord: after, after_frames, after_anyway)."""
        return {"after": ",".join(self.jobs), "after_frames": self.frames, "after_anyway": "1" if self.anyway else "0"}

    @classmethod
    def of(cls, record: JobRecord) -> After:
        jobs = tuple(j for j in (record.get("after") or "").split(",") if j)
        return cls(jobs, record.get("after_frames") or "", record.get("after_anyway") == "1")


def check(store: JobStore, who: Identity, after: After, job_id: str = "") -> None:
    """Refuse, before anything is stored, a dependency on a job that does not exist or that `who` may not control
    (another user's: only an admin names anyone's; the same words for both, so the error does not tell whether a
    job of someone else exists), and a cycle (`job_id` among the jobs it would
    wait for, through theirs: only when ids are reused). OptionError naming the job, and the option that named it
    (after or after_frames): each surface says it in its words, `--after` on the command line, `after` beside the
    web form's field."""
    for other in after.others:
        try:
            require(who, Action.CONTROL, store.owner(other), other)
        except (JobNotFoundError, ForbiddenError):
            raise OptionError.of("after" if other in after.jobs else "after_frames",
                                 f"{{0}}: there is no job {_literal(other)} of {_literal(who.name)}'s",
                                 hint="name your own jobs, by the ids the job list shows") from None
    seen: set[str] = set()
    todo = list(after.others)
    while todo and len(seen) < MAX_DEPTH:
        other = todo.pop()
        if other == job_id:
            raise OptionError.of("after" if after.jobs else "after_frames",
                                 f"{{0}}: job {_literal(job_id)} would wait for itself (a cycle through "
                                 f"{_literal(', '.join(after.others))})")
        if other in seen:
            continue
        seen.add(other)
        try:
            todo.extend(After.of(store.record(other)).others)
        except JobNotFoundError:
            continue


def frames_done(store: JobStore, spec: JobSpec) -> set[int]:
    """The frames of a job whose every batch is done (a sliced frame: every slice)."""
    done = store.batches(spec.id)["done"]
    covering: dict[int, list[str]] = defaultdict(list)
    for batch_id in spec.batches:
        if not batch_id.endswith(f"-{PREPASS_SUFFIX}"):
            for frame in Batch.from_id(batch_id).frames:
                covering[frame].append(batch_id)
    return {frame for frame, ids in covering.items() if all(b in done for b in ids)}


def to_hold(store: JobStore, spec: JobSpec, other: str) -> list[str]:
    """The batches of `spec` to keep off its pending list for now: those with a frame that job `other` renders and
    has not done yet."""
    theirs = store.spec(other)
    done = frames_done(store, theirs)
    return [b for b in spec.batches
            if any(theirs.first <= f <= theirs.last and f not in done for f in Batch.from_id(b).frames)]


def _state(store: JobStore, job_id: str) -> str:
    try:
        return store.state(job_id)
    except JobNotFoundError:
        return GONE


def _literal(text: str) -> str:
    """`text` shown safely, as it reads inside a Problem's format template (braces doubled)."""
    return literal(shown(text))


def _why(other: str, state: str) -> str:
    """Why a job that waited for `other` failed: the job's error, read on the web as in `httpov status` (no flag)."""
    what = {"failed": "failed", "cancelled": "was cancelled"}.get(state, "was deleted")
    return f"job {other} that it waits for {what}"


def settle(store: JobStore, job_id: str) -> bool:
    """Release or fail what dependent job `job_id` holds back, as the states of the jobs it waits for say; answers
    whether batches were pended (the caller tops the job up)."""
    try:
        record = store.record(job_id)
    except JobNotFoundError:
        store.forget_dependent(job_id)
        return False
    after, state = After.of(record), record["state"]
    if state in FINISHED or state == JobState.DELETING or not after:
        store.forget_dependent(job_id)
        return False
    if state == JobState.SUBMITTING:
        return False  # its submit publishes it, then settles it
    states = {other: _state(store, other) for other in after.others}
    bad = [other for other in after.others if states[other] not in (JobState.DONE, *_LIVE_OR_WAITING)]
    if bad and not after.anyway:
        why = _why(bad[0], states[bad[0]])
        store.set_error(job_id, why)  # its errors (API, JobFailedError) and its history (status, its page)
        store.note(job_id, why, kind="after")
        try:
            store.transition(job_id, JobState.FAILED)
        except TransitionRefused:  # cancelled or failed meanwhile
            pass
        store.forget_dependent(job_id)
        return False
    ended = {other for other in after.others if states[other] not in _LIVE_OR_WAITING}
    spec = store.spec(job_id)
    held = store.held(job_id) if after.frames else set()
    frames_over = not after.frames or after.frames in ended
    pended = False
    if state == JobState.WAITING:
        if not all(other in ended for other in after.jobs):
            return False
        # the held ones: below, as the other's frames say
        pend = handout_order(spec, [b for b in spec.batches if b not in held])
        if store.release_held(job_id, waiting_for_prepass(spec, pend), whole_job=True, last=not held) != "ok":
            return False
        pended = True
    if not after.frames or not held:
        return pended
    if frames_over:
        release = handout_order(spec, sorted(held))
    else:
        done = frames_done(store, store.spec(after.frames))
        release = handout_order(spec, sorted(b for b in held if all(f in done for f in Batch.from_id(b).frames)))
    if release or frames_over:
        store.release_held(job_id, release, whole_job=False, last=frames_over)
    return pended or bool(release)


_LIVE_OR_WAITING = (JobState.SUBMITTING, JobState.WAITING, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def waits_for(store: JobStore, job_id: str) -> list[str]:
    """The dependent jobs that wait for job `job_id` (whole or its frames): one round trip for all of them."""
    return [dependent for dependent, others in store.waiting_on().items() if job_id in others]
