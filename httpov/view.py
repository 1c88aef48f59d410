"""What a user sees of a job: one typed JobView, built in one place from a JobStore snapshot, for status, watch,
submit --wait, render and the web page (`to_json()` is `httpov status --json`)."""
from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from httpov import eta
from httpov.outage import through_outage
from httpov.plan import Batch, JobSpec, prepass_ids
from httpov.settings import Settings, live_node_window
from httpov.states import FINISHED, JobState
from httpov.store import JobStore
from httpov.store.records import Batches, DoneInfo, HistoryLine, JobRecord


@dataclass
class RunningBatch:
    """A batch a render process is rendering now, and how far it is expected to be."""

    batch: str
    label: str
    node: str
    elapsed: float
    expected: float | None
    progress: float | None
    retrying: bool
    rendered: float | None = None  # the share of its pixels povray rendered, as its node last said (None: unsaid)


@dataclass
class NodeWork:
    """What one render node did for the job, and what it renders now (batch labels)."""

    batches_done: int
    frames_done: float  # in frames: a slice counts as its share of a frame (for sums; people read `work`)
    seconds: float
    running: list[str]
    work: str = ""  # for people: '3 frames', '40 of 64 rows', '2 frames and 40 of 64 rows' (eta.work_text)


@dataclass
class FailedBatch:
    """A batch whose last attempt failed; `final` when it will not be tried again."""

    batch: str
    label: str
    node: str
    error: str
    lines: list[str]
    final: bool
    at: float | None


@dataclass
class FailureGroup:
    """Failed batches with the same error: one entry with the count, their labels and nodes, the first's log lines."""

    error: str
    final: bool
    lines: list[str]
    count: int
    labels: list[str]
    nodes: list[str]

    @property
    def what(self) -> str:
        """For people: 'frames 1-2', or '3 batches (frame 1 rows 1-32, ...)'."""
        return self.labels[0] if len(self.labels) == 1 else f"{len(self.labels)} batches ({_some(self.labels)})"

    @property
    def where(self) -> str:
        return _some(self.nodes)


@dataclass
class Prepass:
    """A job's pre-pass stage (one radiosity and/or photon pass per frame, or one for the job, ahead of its slices):
    its kind is 'radiosity', 'photons' or 'radiosity and photons'."""

    kind: str
    total: int
    done: int
    running: int
    failed: int

    @property
    def text(self) -> str:
        """In one line: 'pre-pass: radiosity 0/1 (1 rendering)'."""
        more = [f"{n} {word}" for n, word in ((self.running, "rendering"), (self.failed, "failed")) if n]
        return f"pre-pass: {self.kind} {self.done}/{self.total}" + (f" ({', '.join(more)})" if more else "")


@dataclass
class JobView:
    """A job's progress, ETA, running and failed batches and per-node work, at one moment."""

    id: str
    name: str
    state: str
    frames_total: int
    frames_done: int
    frames_failed: int
    first_frame: int
    last_frame: int
    batches_total: int
    batches_done: int
    batches_failed: list[str]
    batches_requeued: int
    batches_running: dict[str, str]
    sliced: bool
    width: int
    height: int
    priority: int
    created: float
    finished: float | None
    elapsed: float
    rate: float
    errors: list[str]
    nodes_blocked: list[str]
    radiosity_cache: str
    prepass: Prepass | None
    eta_seconds: float | None
    eta_at: float | None
    frame_seconds: float | None
    overhead_factor: float
    rate_recent: float
    render_processes: int
    frames_running: int
    batches_queued: int
    running: list[RunningBatch]
    nodes: dict[str, NodeWork]
    failed: list[FailedBatch]
    povray: str | None = None  # the povray version the job renders with (the first node's), None with any_povray
    any_povray: bool = False
    versions: list[dict[str, Any]] = field(default_factory=list)  # povray/httpov versions of its done batches
    history: list[HistoryLine] = field(default_factory=list)  # what was rendered again, hung, warned of at submit
    user: str = ""  # whose job it is: its owner (the account that submitted it, or submit --user)
    max_processes: int | None = None  # submit --max-processes
    max_nodes: int | None = None  # submit --max-nodes
    queue: str = ""  # the Celery queue of submit --pool; '' for the default one
    pool: str = ""  # submit --pool
    pool_live: bool | None = None  # whether a live render node is in that pool (None: no pool, or finished)
    submitted_by: str = ""  # who submitted it (an admin or operator for `user`); '' for jobs of older releases
    submitted_by_operator: bool = False  # by the CLI with direct Redis access
    after: list[str] = field(default_factory=list)  # submit --after: the jobs it waits for (state 'waiting')
    after_frames: str = ""  # submit --after-frames: the job whose frame N its frame N waits for
    # why a live job waits: 'waiting for storage: <why>' (the farm's storage failed its batches), and 'node X: disk
    # full (cache folder, N MiB free)' for each live node that hands batches back for want of room
    notes: list[str] = field(default_factory=list)
    # when a batch of it last started or ended, or it was submitted, resumed or retried (what `stalled` counts from)
    idle_since: float | None = None
    # idle for longer than the farm's live-node window (about three leases): its batches wait and no render node has
    # taken one for that long (set by job_view and overview; a job between two batches is idle, not stalled)
    stalled: bool = False
    frames_rendering: float = 0.0  # frames' worth of the running batches povray rendered (0.36: a frame 36% done)
    photons: str = "off"  # PHOTON_PLANS: 'shared' when each sliced frame's slices load its pre-pass's photon map

    def to_json(self) -> dict[str, Any]:
        """The view as `httpov status --json` and the page's /api/jobs print it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobView:
        """The view back from its to_json() (the API's answer, for `httpov --server`): unknown keys (a newer
        server's) are left out, the nested parts rebuilt."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in known}
        prepass = given.get("prepass")
        given["prepass"] = Prepass(**_known(Prepass, prepass)) if prepass else None
        given["running"] = [RunningBatch(**_known(RunningBatch, r)) for r in given.get("running", [])]
        given["nodes"] = {node: NodeWork(**_known(NodeWork, w)) for node, w in given.get("nodes", {}).items()}
        given["failed"] = [FailedBatch(**_known(FailedBatch, f)) for f in given.get("failed", [])]
        return cls(**given)

    @property
    def ended(self) -> bool:
        return self.state in FINISHED

    @property
    def percent(self) -> int:
        return int(100 * (self.frames_done + min(self.frames_rendering, self.frames_running))
                   // max(1, self.frames_total))

    @property
    def eta_text(self) -> str:
        """'-' for a job that will not end by itself, '0s' when done, else the ETA ('?' when there is no honest one)."""
        if self.state in (JobState.FAILED, JobState.CANCELLED, JobState.PAUSED):
            return "-"
        if self.state == JobState.DONE:
            return "0s"
        return eta.duration(self.eta_seconds)

    @property
    def idle(self) -> bool:
        """Batches wait but no render process is taking this job's batches now (why there is no ETA)."""
        return self.state in (JobState.QUEUED, JobState.RUNNING) and not self.running and self.batches_queued > 0

    @property
    def hangs(self) -> list[HistoryLine]:
        """The job's hung batches (RenderNode._hung): which, on which node, and why povray was killed."""
        return [line for line in self.history if line.get("kind") == "hang"]

    @property
    def warnings(self) -> list[HistoryLine]:
        """What submit warned of and kept with the job: the ini's keys that are no POV-Ray option ('Widht: did you
        mean Width?')."""
        return [line for line in self.history if line.get("kind") == "warning"]

    def failure_groups(self) -> list[FailureGroup]:
        return failure_groups(self.failed)


def from_snapshot(record: JobRecord, spec: JobSpec, batches: Batches, now: float) -> JobView:
    """The view of a job from its record, spec and batches (JobStore.snapshot) at `now`: no I/O."""
    final_failures = {k: v for k, v in batches["failed"].items() if v.get("final")}
    failed_frames = {f for batch in final_failures for f in Batch.from_id(batch).frames} - set(batches["frames"])
    created = float(record["created"])
    started = float(record.get("started") or created)
    finished = float(record["finished"]) if record.get("finished") else None
    elapsed = eta.active_seconds(started, finished or now, batches.get("history", []))  # not paused, not waiting
    done = len(batches["frames"])
    errors = [record["error"]] if record.get("error") else []
    errors += [line for v in final_failures.values() for line in [v["error"], *v["lines"]]]
    estimate = eta.estimate(spec, record["state"], batches, now, started, finished)
    return JobView(
        id=spec.id, name=spec.name, state=record["state"],
        frames_total=spec.frame_count, frames_done=done, frames_failed=len(failed_frames),
        first_frame=spec.first, last_frame=spec.last,
        batches_total=len(spec.batches), batches_done=len(batches["done"]),
        batches_failed=sorted(final_failures), batches_requeued=sum(batches.get("requeued", {}).values()),
        batches_running={k: v["node"] for k, v in batches["running"].items()},
        sliced=bool(spec.slices), width=spec.width, height=spec.height, priority=spec.priority,
        created=created, finished=finished, elapsed=round(elapsed, 3),
        rate=round(done / elapsed, 4) if done and elapsed > 0 else 0.0, errors=errors[:40],
        nodes_blocked=batches["blocked"], radiosity_cache=spec.radiosity, photons=spec.photons,
        prepass=_prepass(spec, batches),
        eta_seconds=estimate["eta_seconds"], eta_at=estimate["eta_at"], frame_seconds=estimate["frame_seconds"],
        overhead_factor=estimate["overhead_factor"], rate_recent=estimate["rate_recent"],
        render_processes=estimate["render_processes"], frames_running=estimate["frames_running"],
        batches_queued=estimate["batches_queued"], frames_rendering=estimate["frames_rendering"],
        running=[RunningBatch(**item) for item in estimate["running"]],
        nodes={node: NodeWork(**work) for node, work in estimate["nodes"].items()},
        failed=[FailedBatch(batch=b, label=Batch.from_id(b).label, node=info.get("node", "?"),
                            error=info.get("error", ""), lines=info.get("lines", []), final=bool(info.get("final")),
                            at=info.get("at"))
                for b, info in sorted(batches["failed"].items())],
        povray=record.get("povray"), any_povray=spec.any_povray, versions=_versions(batches["done"]),
        history=batches.get("history", []),
        user=record.get("user", ""), submitted_by=record.get("submitted_by", ""),
        submitted_by_operator=record.get("operator") == "1",
        max_processes=int(record.get("max_processes") or 0) or None,
        max_nodes=int(record.get("max_nodes") or 0) or None,
        queue=record.get("queue", ""), pool=record.get("queue", "").partition(".pool.")[2],
        after=[j for j in (record.get("after") or "").split(",") if j], after_frames=record.get("after_frames", ""),
        notes=_notes(record),
        idle_since=_last_activity(created, record, batches),
    )


def _notes(record: JobRecord) -> list[str]:
    """Why a live job waits: for storage (record `waiting`), for the jobs of submit --after, for another job's frames
    (submit --after-frames)."""
    if record["state"] in FINISHED:
        return []
    notes = [record["waiting"]] if record.get("waiting") else []
    if record["state"] == JobState.WAITING and record.get("after"):
        notes.append(f"waiting for job(s) {record['after'].replace(',', ', ')} to be done")
    if record.get("after_frames"):
        notes.append(f"each frame waits for the same frame of job {record['after_frames']}")
    return notes


def _last_activity(created: float, record: JobRecord, batches: Batches) -> float:
    """When a batch of the job last started or ended, or the job was submitted, started, resumed or retried."""
    times = [created, float(record.get("started") or 0.0)]
    times += [float(info.get("started", 0.0)) for info in batches["running"].values()]
    times += [float(info.get("finished", 0.0)) for info in batches["done"].values()]
    times += [float(info.get("at") or 0.0) for info in batches["failed"].values()]
    times += [float(line["at"]) for line in batches.get("history", []) if line.get("kind") in ("resume", "retry")]
    return max(times)


def _known(kind: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}


def _versions(done: Mapping[str, DoneInfo]) -> list[dict[str, Any]]:
    """The povray and httpov versions that rendered a job's done batches, with how many batches each."""
    counts: dict[tuple[str, str], int] = {}
    for info in done.values():
        key = (str(info.get("povray", "unknown")), str(info.get("httpov", "unknown")))
        counts[key] = counts.get(key, 0) + 1
    return [{"povray": p, "httpov": h, "batches": n} for (p, h), n in sorted(counts.items())]


def _prepass(spec: JobSpec, batches: Batches) -> Prepass | None:
    ids = prepass_ids(spec)
    if not ids:
        return None
    kinds = [kind for kind, on in (("radiosity", spec.radiosity != "off"), ("photons", spec.photons != "off")) if on]
    return Prepass(kind=" and ".join(kinds) or "radiosity", total=len(ids),
                   done=sum(1 for i in ids if i in batches["done"]),
                   running=sum(1 for i in ids if i in batches["running"]),
                   failed=sum(1 for i in ids if i in batches["failed"] and batches["failed"][i].get("final")))


def job_view(store: JobStore, job_id: str, now: float | None = None, *, live_within: float | None = None,
             snapshot: tuple[JobRecord, JobSpec, Batches] | None = None) -> JobView:
    """The job as it is now, read from Redis in one snapshot (or from `snapshot`, JobStore.snapshot's, already
    read); for a live job sent to a render pool, whether any live render node is in that pool. `live_within`: the
    farm's Settings.live_node_seconds (None: the default lease's), the same window the dispatcher counts render
    processes in."""
    now = time.time() if now is None else now
    view = from_snapshot(*(snapshot or store.snapshot(job_id)), now=now)
    _add_farm_notes(store, [view], live_within, now)
    return view


def _add_farm_notes(store: JobStore, views: list[JobView], live_within: float | None, now: float) -> None:
    """What the farm says about live jobs, read once for all `views`: whether a live render node is in the
    job's render pool, the faults of live render nodes (a full disk), and whether the job is stalled (idle for
    longer than the live-node window)."""
    live = [view for view in views if not view.ended]
    if not live:
        return
    within = live_node_window(Settings.lease_seconds) if live_within is None else live_within
    pools = store.live_pools(within=within) if any(view.pool for view in live) else set()
    faults = node_faults(store, within)
    for view in live:
        view.stalled = view.idle and now - (view.idle_since or view.created) >= within
        if view.pool:
            view.pool_live = view.pool in pools
        view.notes += faults


def node_faults(store: JobStore, within: float, now: float | None = None) -> list[str]:
    """'node X: disk full (cache folder, N MiB free)' for each live render node whose last heartbeat said it has no
    room for a batch (httpov.worker.room)."""
    now = time.time() if now is None else now
    seen, records = store.nodes()
    return [f"node {node}: {records[node]['fault']}" for node in sorted(records)
            if records[node].get("fault") and seen.get(node, 0) >= now - within]


def overview(store: JobStore, now: float | None = None, *, states: Collection[str] | None = None,
             name: str | None = None, user: str | None = None, limit: int | None = None,
             live_within: float | None = None, skip: int = 0) -> list[JobView]:
    """job_view of the jobs in `states`, whose name matches the shell-style pattern `name` and of `user`: the newest
    `limit` of them (None: all) after the newest `skip` (a page of the web's jobs), oldest first. Jobs are read newest
    first, as many at once as are still wanted (one round trip for an unfiltered `httpov status`), until enough are
    found; with no filter, the `skip` newest are not read at all."""
    now = time.time() if now is None else now
    newest_first = store.job_ids()[::-1]
    if not states and name is None and user is None:
        newest_first, skip = newest_first[skip:], 0
    chosen: list[JobView] = []
    start = 0
    while start < len(newest_first) and (limit is None or len(chosen) < limit):
        wanted = len(newest_first) if limit is None else max(limit + skip - len(chosen), _OVERVIEW_READ)
        ids = newest_first[start:start + wanted]
        start += len(ids)
        snapshots = store.snapshots(ids)
        for job_id in ids:
            if job_id not in snapshots:  # deleted meanwhile
                continue
            view = from_snapshot(*snapshots[job_id], now=now)
            if (states and view.state not in states) or (user is not None and view.user != user) or \
                    (name is not None and not fnmatch.fnmatchcase(view.name, name)):
                continue
            if skip:
                skip -= 1
                continue
            chosen.append(view)
            if limit is not None and len(chosen) >= limit:
                break
    _add_farm_notes(store, chosen, live_within, now)
    return chosen[::-1]


#: Jobs overview reads at least at once while looking for the jobs a filter wants.
_OVERVIEW_READ = 20


def follow(store: JobStore, job_id: str, poll: float = 1.0, timeout: float | None = None, outage: float = 0.0,
           on_outage: Callable[[str], None] | None = None, live_within: float | None = None) -> Iterator[JobView]:
    """job_view of the job every `poll` seconds until it is finished (the last view is the finished one), riding
    out a Redis outage (a restart) of up to `outage` seconds and telling `on_outage` once per outage."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = through_outage(lambda: job_view(store, job_id, live_within=live_within), outage, on_outage)
        yield view
        if view.ended or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(poll)


def failure_groups(failed: list[FailedBatch]) -> list[FailureGroup]:
    """Failed batches grouped by their error, in the order first seen: the same error from several slices or
    batches is one entry with the count, their labels and nodes, and the log lines of the first."""
    groups: dict[tuple[bool, str], FailureGroup] = {}
    for f in failed:
        group = groups.setdefault((f.final, f.error), FailureGroup(f.error, f.final, f.lines, 0, [], []))
        group.count += 1
        group.labels.append(f.label)
        if f.node not in group.nodes:
            group.nodes.append(f.node)
    return list(groups.values())


def _some(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def backlog(store: JobStore) -> dict[str, Any]:
    """The work to scale render nodes by (README, "Scaling render nodes"), for the default queue ('default') and
    each render pool ('pools'): 'waiting', the batches of live jobs neither done, failed for good nor running (on
    Celery's queue or, most of them, on their jobs' pending lists: the queue holds only each job's window);
    'running', the batches rendering now; 'work', the two together (a render process each). Paused jobs' batches
    wait for nobody and are not counted."""
    now = time.time()
    pools: dict[str, dict[str, int]] = {}
    for record, spec, batches in store.snapshots(store.active_ids()).values():
        view = from_snapshot(record, spec, batches, now)
        if view.state not in (JobState.QUEUED, JobState.RUNNING, JobState.SUBMITTING):
            continue
        counts = pools.setdefault(view.pool, {"waiting": 0, "running": 0, "work": 0})
        running = len(view.batches_running)
        waiting = max(view.batches_total - view.batches_done - len(view.batches_failed) - running, 0)
        counts["waiting"] += waiting
        counts["running"] += running
        counts["work"] += waiting + running
    default = pools.pop("", {"waiting": 0, "running": 0, "work": 0})
    return {"default": default, "pools": pools}
