"""What the store's records hold, typed: a job's record, the infos of its done, failed and running batches, its
batches read at once, a render node's record, and what fair share reads of a job. Pure: no Redis here.

A job record is a Redis hash, so its values are strings as stored; the batch infos are JSON. Records written by an
older release may lack the fields added since: readers use `.get` for those that are not Required."""
from __future__ import annotations

from typing import NamedTuple, NotRequired, Required, TypedDict


class JobRecord(TypedDict, total=False):
    """The hash `<prefix>:job:<id>` (Keys.job)."""

    spec: Required[str]  # the JobSpec, JSON
    state: Required[str]  # a httpov.states.JobState
    created: Required[str]  # epoch seconds
    total: str  # how many batches
    user: str  # its owner: the account (or, from the CLI, the login name or --user) it belongs to
    submitted_by: str  # who submitted it: its owner, an admin for them, or an operator (with `operator`)
    operator: str  # '1' when submitted by the CLI with direct Redis access (an operator), else '0'
    queue: str  # '' for the default queue, else its render pool's
    max_processes: str  # '0': no cap
    max_nodes: str  # '0': no cap
    priority: str  # 0-9
    started: str  # when its first batch started
    finished: str  # when it became done, failed or cancelled (gone again on retry)
    reopened: str  # when `httpov retry` reopened it: messages of its batches taken before are stale
    error: str  # why it failed, when a batch did not say (an interrupted submit)
    povray: str  # the povray version it is rendered with (the first node's)
    after: str  # submit --after: the job ids it waits for, comma-separated (state 'waiting' until they are done)
    after_frames: str  # submit --after-frames: the job whose frame N must be done before its frame N is sent
    after_anyway: str  # '1': submit --after-anyway, it is released even if a job it waits for fails or is cancelled
    waiting: str  # 'waiting for storage: <why>' while the farm's storage fails its batches (gone once one is stored)
    stored_bytes: str  # bytes of the batch zips its done batches stored (finish_batch adds each; httpov.metrics)


class RunningInfo(TypedDict, total=False):
    """A value of the hash `<prefix>:job:<id>:running` (Keys.running)."""

    node: Required[str]  # the render node (celery's node name)
    started: Required[float]
    token: Required[str]  # the lease's value: the execution's token, or a retry's hand-off ('retry:<task id>')
    handed_back: bool  # a node blocked from the job gave the batch back
    retrying: bool  # held for the task's retry (hold_for_retry)
    progress: float  # the share of the batch povray rendered (0-1), as its node last said with a lease refresh


class CheckpointInfo(TypedDict, total=False):
    """A value of the hash `<prefix>:job:<id>:checkpoints` (Keys.checkpoints)."""

    sha256: Required[str]  # of the stored zip (paths.checkpoint_key): a node refuses any other content
    bytes: Required[int]
    povray: Required[str]  # the povray version that wrote the state: another version starts over
    node: str
    saved: float  # when
    frames: list[int]  # the batch's frames finished in it
    frame: int  # the frame whose render state it holds (0: none)
    fraction: float  # the share of that frame's pixels the state holds, as povray's log said when it was saved


class DoneInfo(TypedDict, total=False):
    """A value of the hash `<prefix>:job:<id>:done` (Keys.done)."""

    node: str
    seconds: float  # povray's time on the batch
    start: float  # of it, povray's start as the node ran it (plan.POVRAY_START_SECONDS or QUICK_START_SECONDS)
    frames: int  # frames it rendered (0 for a radiosity pre-pass)
    finished: float
    started: float  # when its execution took the batch (absent from older releases: finished less seconds)
    attempt: int
    povray: str | None  # the povray version that rendered it
    httpov: str  # the render node's httpov version
    result: str  # which execution's zip is the batch's result (paths.batch_key); absent: the fixed name
    bytes: int  # the size of that zip


class FailedInfo(TypedDict, total=False):
    """A value of the hash `<prefix>:job:<id>:failed` (Keys.failed): the batch's last failure."""

    error: Required[str]
    lines: list[str]  # the last lines of povray's log that say why
    node: str
    final: bool  # the job failed with it (no attempt left, or an error that retrying cannot mend)
    at: float
    hangs: int  # times the batch hung (povray killed for no progress or past its derived time limit)


class HistoryLine(TypedDict):
    """A line of the list `<prefix>:job:<id>:history` (Keys.history)."""

    at: float
    what: str
    kind: NotRequired[str]  # 'hang': a batch hung and its povray was killed; 'warning': what submit warned of (the
    # ini's unknown keys); both shown on the job's page. 'pause', 'resume', 'retry': left out of its elapsed time.
    # 'resplit': a running slice was cut and a new slice renders its rest (scripts/resplit.lua)
    since: NotRequired[float]  # of a 'retry': when the job had finished (the gap until `at` is no rendering time)


class Batches(TypedDict):
    """Every batch of a job that has any record, read at once (JobStore.batches)."""

    done: dict[str, DoneInfo]
    failed: dict[str, FailedInfo]
    running: dict[str, RunningInfo]
    attempts: dict[str, int]
    requeued: dict[str, int]
    parked: list[str]
    frames: list[int]
    blocked: list[str]
    history: list[HistoryLine]


class NodeInfo(TypedDict, total=False):
    """A value of the hash `<prefix>:node-info` (Keys.node_info): what a render node says of itself."""

    host: str
    processes: int
    cores: int
    povray: str | None
    httpov: str
    started: float
    fault: str  # 'disk full (cache folder, N MiB free)' while the node hands batches back (httpov.worker.room)
    storage_error: str  # why the node could not reach the farm's storage at its last check (httpov.worker.reaper)
    waits_off: str  # why its povray runs without quick waits: their build or check failed (httpov.worker.waits)
    stopped: float  # when it exited cleanly (drained, or SIGTERM), until it starts again (httpov.worker.reaper)


class Share(NamedTuple):
    """What fair share reads of a job (httpov.dispatch.windows)."""

    user: str
    priority: int
    created: float
    max_processes: int  # 0: no cap
    queue: str  # '' for the default queue, else its render pool's


class FarmCounts(TypedDict):
    """What httpov.metrics shows, as JobStore.farm_counts reads it at one scrape."""

    jobs: list[tuple[str, str, int]]  # every listed job: (state, queue, stored bytes)
    batches: list[tuple[str, int, int, int]]  # every active job: (queue, pending, queued, running)
    counters: dict[str, str]  # the `metrics` hash
    nodes: dict[str, float]  # render node -> when last seen


#: Upper bounds (seconds) of the batch duration histogram's buckets (povray's time on a batch; `+Inf` past the last).
BATCH_SECONDS_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)

#: Why a batch attempt failed, as a category (the metric's label; never povray's own text): `render` povray or the
#: scene failed (its own error, a time limit), `transient` an error tried again (crash, storage), `hung` povray
#: stopped making progress, `node_lost` its node vanished too often, `no_node` no live node may render it (blocked
#: everywhere, another povray version), `invalid_record` the job's record failed its check.
FAILURE_REASONS = ("render", "transient", "hung", "node_lost", "no_node", "invalid_record")


def bucket_field(seconds: float) -> str:
    """The `metrics` hash field counting batches whose povray time falls in the bucket of `seconds` (not cumulative:
    httpov.metrics adds them up): `le:<bound>`, or `le:+Inf`."""
    bound = next((b for b in BATCH_SECONDS_BUCKETS if seconds <= b), None)
    return f"le:{bound:g}" if bound is not None else "le:+Inf"


def failure_field(reason: str) -> str:
    """The `metrics` hash field counting failed attempts of `reason` (one of FAILURE_REASONS, else `other`)."""
    return f"failed:{reason if reason in FAILURE_REASONS else 'other'}"
