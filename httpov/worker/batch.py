"""A render node's work on one batch: lease it, render it, store its zip, record it (no Celery task or app:
only Celery's back-off helper)."""
from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import secrets
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from celery.utils.time import get_exponential_backoff_interval

from httpov import limits
from httpov.errors import (
    BadInputError,
    BrokerUnavailableError,
    HttpovError,
    JobNotFoundError,
    NodeFaultError,
    RenderError,
    RenderHungError,
    SceneError,
    StorageError,
)
from httpov.outage import through_outage
from httpov.paths import batch_key, failed_log_key, frame_key
from httpov.plan import (
    POVRAY_START_SECONDS,
    QUICK_START_SECONDS,
    Batch,
    JobSpec,
    check_batch,
    check_record,
    delivered_slices,
    handout_order,
    released_by,
    time_limit,
    unit_median,
)
from httpov.settings import Settings
from httpov.states import LIVE, JobState
from httpov.storage import Storage
from httpov.store import JobStore
from httpov.store.jobs import Recorded
from httpov.store.records import DoneInfo, NodeInfo
from httpov.text import shown
from httpov.worker import photons, povray, radiosity, room, stitch, waits
from httpov.worker.cache import SceneCache
from httpov.worker.checkpoint import Checkpoints
from httpov.worker.lease import LeaseKeeper
from httpov.worker.renewal import LeaseNote, lease_folder
from httpov.worker.sandbox import RenderLimits
from httpov.worker.workdir import WorkFolder, link_scene

log = logging.getLogger(__name__)
#: One INFO line per batch a node handles (job, batch, frames, seconds, node): what the node's journal says it did.
batch_log = logging.getLogger("httpov.batches")


_BATCH_ID = re.compile(r"^f\d{6,}-\d{6,}(-r\d{5,}-\d{5,}|-pre)?$")
#: A batch that fails the same way on this many distinct render nodes fails its job: the scene, not a node.
SAME_FAILURE_NODES = 2
#: Leases a batch handed to another node waits for it before the sweepers requeue it on the shared queue.
HAND_BACK_LEASES = 3
#: The longest back-off before a retry of a batch that failed on a transient error, in seconds.
RETRY_BACKOFF_MAX = 60
#: The longest wait, in leases, between two tries of a batch held for the farm's storage or for a node's room.
WAIT_LEASES_MAX = 2
#: Done batches a render process samples to derive a batch's time limit (the job's median time per frame) ...
DONE_SAMPLE = 64
#: ... and how long it uses a full sample before it reads a new one (not once a batch: a round trip and 64 records).
SAMPLE_SECONDS = 60.0


class Stopped(Exception):
    """The render was stopped on purpose: the job left its live states, or another task took the batch."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass
class Outcome:
    """What became of one delivery of a batch: `retry_in`, send it again after that many seconds; `send_to`, send
    it to that render node."""

    status: str
    retry_in: float | None = None
    detail: str = ""
    send_to: str | None = None  # queue the batch on this render node's own queue (Celery's worker_direct)
    hung: bool = False  # povray hung (no progress, or past the batch's derived time limit) and was killed
    dependents: bool = True  # jobs may wait for this one (httpov.after): settle them (a record says if any do)
    sent: tuple[str, list[str]] | None = None  # 'rendered': the job's queue and its batches topped up with the record,
    # to be sent now (None: no top-up was done with it)


#: povray runs a render slot makes without quick waits after one crashed with them (a prefork render process
#: was replaced after worker_max_tasks_per_child batches, and its successor had them again).
WITHOUT_WAITS_RUNS = 200
#: How long a node trusts a job's record it read: its priority may change (reprioritize) and a re-split adds slices.
SPEC_SECONDS = 60.0
#: Records a node keeps, the most recently read (a long-lived node renders many jobs; a big job's record is large).
KEEP_SPECS = 64


@dataclass
class Known:
    """What a node's render slots learn of jobs, shared between them: each job's checked record (read once a minute
    a node, not once a slot), and the jobs found gone (said once a node)."""
    specs: dict[str, tuple[float, JobSpec]] = field(default_factory=dict)  # job -> (read at, its record)
    gone: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spec(self, job_id: str) -> JobSpec | None:
        """The job's record if read within SPEC_SECONDS, else None."""
        found = self.specs.get(job_id)
        return found[1] if found is not None and time.monotonic() - found[0] < SPEC_SECONDS else None

    def keep(self, job_id: str, spec: JobSpec) -> None:
        with self.lock:
            self.specs.pop(job_id, None)
            self.specs[job_id] = (time.monotonic(), spec)
            while len(self.specs) > KEEP_SPECS:  # the oldest read first
                self.specs.pop(next(iter(self.specs)))

    def forget(self, job_id: str) -> None:
        with self.lock:
            self.specs.pop(job_id, None)

    def first_news_of_gone(self, job_id: str) -> bool:
        """Note `job_id` gone: True the first time (then its loss is said), False after."""
        with self.lock:
            first = job_id not in self.gone
            if len(self.gone) >= 4096:  # a node lives long: a job gone long ago may be said again
                self.gone.clear()
            self.gone.add(job_id)
        return first


class RenderNode:
    """Everything one render slot needs (a thread of the node's threads pool, or a prefork render process), built
    once per slot and reused for every batch; its settings, store, storage and cache are the node's, shared."""

    def __init__(self, settings: Settings, store: JobStore, storage: Storage, cache: SceneCache,
                 release: Callable[[JobSpec, list[str]], None] | None = None,
                 povray_render: Callable[..., povray.RenderOutput] | None = None, known: Known | None = None) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.cache = cache
        self.release = release  # queues batches (dispatch.enqueue): a finished pre-pass's slices
        # povray.render with this node's quick waits; unit tests pass a stand-in with povray.render's signature
        self.povray_render = povray_render or self._povray
        self._known = known or Known()  # the node's, shared by its slots
        self._waits = 0  # batches this process held for storage or room in a row (their back-off)
        self._storage_failed = False  # the farm's storage failed this process's last upload or download
        self._started_povray = 0.0  # seconds of povray's start the batch in hand paid (its done record's `start`)
        self._deadline = math.inf  # when the batch in hand reaches the node's soft time limit (time.monotonic)
        self._without_waits = 0  # povray runs this slot has left without quick waits, since one crashed with them
        self._samples: dict[str, tuple[float, float | None]] = {}  # job -> (read at, the median of a full sample)
        self._work = WorkFolder(settings.cache_dir / "work")  # the slot's own

    def sibling(self) -> RenderNode:
        """A RenderNode for another slot of this node: the same settings, store, storage, cache and knowledge of
        jobs, its own batch state."""
        return RenderNode(self.settings, self.store, self.storage, self.cache, self.release,
                          None if self.povray_render == self._povray else self.povray_render, self._known)

    def spec(self, job_id: str) -> JobSpec:
        """The job's record, checked (plan.check_record) before any use: Redis may hold a forged one."""
        spec = self._known.spec(job_id)
        if spec is None:
            spec = check_record(job_id, self.store.spec(job_id))
            limits.check_image(spec.width, spec.height, self.settings)  # this node's own limits
            self._known.keep(job_id, spec)
        return spec

    def run(self, job_id: str, batch_id: str, token: str, node: str,
            window: Callable[[], int | None] | None = None) -> Outcome:
        """Render one batch; every outcome but 'rendered', 'retry' and 'handback' leaves the queue as it found it.

        `token` is the Celery task id, which a retry of the task keeps and a redelivered message repeats; each
        execution leases the batch under its own token, so a duplicate delivery finds the batch busy instead of
        rendering it a second time, while a retry takes over the hand-off its failed attempt left.
        A job whose record is gone (deleted, or lost with a Redis restarted empty) is dropped: 'missing', said once
        per job in the log, and nothing written to Redis.
        `window`, asked when the batch is recorded: the job's window, which the record then tops up in the same
        round trip (Outcome.sent); None (or no `window`) for no top-up."""
        started = time.monotonic()
        try:
            outcome = self._run(job_id, batch_id, token, node, window)
        except JobNotFoundError:
            outcome = Outcome("missing")
        finally:  # the next batch reads povray's version again (a slot lives as long as its node: an upgrade, or an
            # 'unknown' asked again) and has a time limit of its own
            self.__dict__.pop("povray_version", None)
            self._deadline = math.inf
        if outcome.status in ("failed", "retry"):  # `httpov nodes`: batches failed lately (finish_batch counts done)
            with contextlib.suppress(HttpovError):
                self.store.count_batch(node, "failed", error=outcome.detail)
                if outcome.hung:
                    self.store.count_batch(node, "hung")
        if outcome.status != "missing":  # a deleted job's batches are said once per job, below
            why = f" ({shown(outcome.detail)})" if outcome.status not in ("rendered", "handback") else ""
            batch_log.info("httpov: batch %s: job=%s batch=%s frames=%s seconds=%.2f node=%s%s", outcome.status,
                           shown(str(job_id)), shown(str(batch_id)), _frames(batch_id), time.monotonic() - started,
                           shown(node), why)
        if outcome.status == "missing":
            self._known.forget(job_id)
            self._samples.pop(job_id, None)
            if self._known.first_news_of_gone(job_id):
                log.warning("httpov: job %s is gone from Redis (deleted, or Redis restarted without its data): "
                            "its batches are dropped", job_id)
        return outcome

    def _run(self, job_id: str, batch_id: str, token: str, node: str,
             window: Callable[[], int | None] | None) -> Outcome:
        lease = self.settings.lease_seconds
        handoff = f"retry:{token}"
        result = secrets.token_hex(4)  # this execution's own name for its zip: never a name another one wrote
        execution = f"{token}/{result}"  # its lease's value, the fence its result is recorded behind
        try:  # before any lease or file: every field of the record and the message this node acts on
            spec = self.spec(job_id)
        except JobNotFoundError:
            return Outcome("missing")
        except (SceneError, BadInputError) as exc:
            return self._refuse_job(job_id, batch_id, node, exc)
        try:
            try:
                batch = check_batch(spec, batch_id)
            except BadInputError:  # a slice a re-split added since this process read the job: read it again
                self._known.forget(job_id)
                spec = self.spec(job_id)
                batch = check_batch(spec, batch_id)
        except BadInputError as exc:
            return Outcome("refused", detail=str(exc))  # a message no one planned: dropped, the job goes on
        except JobNotFoundError:
            return Outcome("missing")
        except SceneError as exc:
            return self._refuse_job(job_id, batch_id, node, exc)
        fault = room.disk_fault(self.settings.cache_dir, self.settings.min_free_mb)
        if fault:  # no room for a frame here: before any lease, the batch goes to a node that has some
            return self._hand_back(job_id, batch_id, execution, handoff, node, self.store.blocked(job_id),
                                   fault=fault)
        pin = self.povray_version if not spec.any_povray and self.povray_version != "unknown" else ""
        # one round trip: refused if this node is blocked from the job or (`pin`) the job renders with another
        # povray, else the job pinned to this node's povray if it has none yet, the lease taken and the start counted
        status, attempt, saved = self.store.take_batch(job_id, batch_id, execution, node, lease, handoff,
                                                       user_max_processes=self.settings.user_max_processes or 0,
                                                       povray=pin)
        if status == "blocked":
            return self._hand_back(job_id, batch_id, execution, handoff, node, self.store.blocked(job_id))
        if status.startswith("povray:"):  # its pixels would differ: a node with the job's povray renders it
            return self._hand_back(job_id, batch_id, execution, handoff, node, self.store.blocked(job_id),
                                   povray_version=status.removeprefix("povray:"))
        if status == JobState.PAUSED:
            return Outcome("parked")  # start_batch parked it; resume queues it again
        if status == "deferred":  # --max-processes (the job's or its owner's) reached: back on its pending list,
            # sent when one of them ends
            return Outcome("deferred")
        if status != "ok":
            return Outcome(status)  # duplicate, busy elsewhere, cancelled, failed, done, missing
        began = time.time()  # the done record's start (the job's timeline)
        # the node's time limits, from the take: povray is stopped past the soft one (the batch fails); past the
        # hard one the lease is let go, so that a slot stuck outside povray (a hung download or upload) loses its
        # batch to another node, as a prefork render process Celery killed there did
        self._deadline = time.monotonic() + self.settings.soft_time_limit
        try:
            note = LeaseNote(lease_folder(self.settings.cache_dir, node), job_id, batch_id, execution, lease)
            with LeaseKeeper(self.store, job_id, batch_id, execution, lease,
                             poll=self.settings.stop_poll_seconds, note=note,
                             until=time.monotonic() + self.settings.task_time_limit) as keeper:
                if self._storage_failed:  # one probe rather than a render whose result cannot be stored
                    self.storage.check()
                    self._storage_failed = False
                self._started_povray = 0.0
                seconds, stored_bytes = self._render_and_store(spec, batch, keeper, result, execution, node, saved)
                if batch.prepass:  # queued before it is recorded done: a node lost in between leaves it to redo
                    self._release(spec, batch)
        except Stopped as stop:
            if stop.state == "missing":
                return Outcome("missing")
            if stop.state != "lost":
                self.store.release(job_id, batch_id)
            return Outcome("stopped", detail=f"job {stop.state}")
        except Exception as exc:  # the node's own faults first, whatever their kind
            fault = room.own_fault(exc, self.settings.cache_dir, self.settings.min_free_mb)
            if fault:  # not the scene's failure: another node renders it, this one waits for room
                self.store.add_attempt(job_id, batch_id, -1)  # not an attempt of the batch: given back
                return self._hand_back(job_id, batch_id, execution, handoff, node, self.store.blocked(job_id),
                                       fault=fault, started=True)
            if isinstance(exc, StorageError):  # the farm's storage: the job waits for it, no node is to blame
                self.store.add_attempt(job_id, batch_id, -1)
                return self._wait_for_storage(spec, batch, handoff, node, exc)
            if isinstance(exc, RenderHungError):
                return self._hung(spec, batch, execution, handoff, node, exc)
            if isinstance(exc, HttpovError):
                return self._failed(spec, batch, handoff, node, attempt, exc)
            if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's, raised while povray ran: it is killed
                error = RenderError(f"the batch ran past the render node's time limit of "
                                    f"{self.settings.soft_time_limit} s (HTTPOV_TASK_TIME_LIMIT less 30 s); "
                                    "povray was stopped", transient=False)
            else:
                error = RenderError(f"{type(exc).__name__}: {exc}", transient=True)
            return self._failed(spec, batch, handoff, node, attempt, error)
        self._waits, self._storage_failed = 0, False
        frames_done = 0 if batch.prepass else batch.last - batch.first + 1  # a pre-pass renders no frame of the job
        info = DoneInfo(node=node, seconds=round(seconds, 3), start=round(self._started_povray, 3), frames=frames_done,
                        finished=time.time(), started=began,
                        attempt=attempt, povray=self.povray_version, httpov=povray.httpov_version(), result=result,
                        bytes=stored_bytes)

        stored = [batch_key(job_id, batch_id, result)]

        def record() -> Recorded:
            if batch.prepass:
                frames: list[int] = []
            else:
                frames = (self._stitch_if_complete(spec, batch, execution, result) if spec.slices
                          else list(batch.frames))
            stored.extend(frame_key(job_id, povray.frame_file(spec.name, f, spec.final)) for f in frames if spec.slices)
            return self.store.record_batch(job_id, batch_id, info, frames, execution, node=node,
                                           top_up=None if window is None else window())
        try:  # the render is stored: ride out a Redis restart rather than render it again
            recorded = through_outage(record, max(self.settings.outage_seconds, 3 * lease))
        except JobNotFoundError:  # the job was deleted while this batch rendered: nothing of it may stay behind
            for key in stored:
                self.storage.delete(key)
            raise
        except _Lost:
            recorded = Recorded("lost")
        except RenderError as exc:  # the frame could not be stitched yet
            self.storage.delete(stored[0])
            return self._failed(spec, batch, handoff, node, attempt, exc)
        if recorded.status == "lost":  # its lease was taken over: the batch's result is another execution's, left alone
            self.storage.delete(stored[0])
            return Outcome("discarded", detail=f"{batch.label}: this execution lost its lease (its node was frozen "
                                               "or cut off past it) and the batch was taken over; its output is "
                                               "discarded, the stored result is the other execution's")
        return Outcome("rendered", detail=f"{batch.label} in {seconds:.1f}s", dependents=recorded.dependents,
                       sent=recorded.sent)

    def _refuse_job(self, job_id: str, batch_id: str, node: str, exc: HttpovError) -> Outcome:
        """A job record that httpov did not write (or a corrupt one) fails its job, without a lease or a file."""
        message = f"the job record is not valid, nothing was rendered: {exc}"
        where = batch_id if isinstance(batch_id, str) and _BATCH_ID.match(batch_id) else "record"
        self.store.fail_batch(job_id, where, message, [], final=True, node=node, reason="invalid_record")
        return Outcome("failed", detail=message)

    def _others(self, node: str, blocked: set[str]) -> tuple[set[str], dict[str, NodeInfo]]:
        """The live nodes other than `node` and `blocked` that may be sent a batch by name, and every node's record:
        not stopped (a node stops cleanly and keeps its heartbeat's time), not draining (about to exit), not short
        of room (its record's fault: disk full, out of memory)."""
        seen = self.store.live_nodes(within=self.settings.live_node_seconds) - blocked - {node}
        seen -= set(self.store.draining())
        _, records = self.store.nodes()
        unfit = {n for n, record in records.items() if record.get("stopped") or record.get("fault")}
        return seen - unfit, records

    def _hand_back(self, job_id: str, batch_id: str, execution: str, handoff: str, node: str,
                   blocked: set[str], povray_version: str | None = None, fault: str | None = None,
                   started: bool = False) -> Outcome:
        """This node is blocked from the job, (`povray_version`) the job renders with another povray, or (`fault`)
        this node has no room for it (its disk full, out of memory: a node-local fault, httpov.worker.room): give
        the batch to a live node that may render it; if none is left, fail the job, or for a node-local fault
        keep the batch for this node's next try (its disk may have room by then). `started`: this execution holds
        the batch's lease (a render that failed for want of room), which is handed over."""
        lease = self.settings.lease_seconds
        state = self.store.state(job_id)
        if state == JobState.PAUSED:
            if started:
                self.store.release(job_id, batch_id)
            self.store.park(job_id, batch_id)
            return Outcome("parked")
        if state not in LIVE:
            return Outcome(state)
        targets, records = self._others(node, blocked)
        if povray_version is not None:
            targets = {n for n in targets if records.get(n, {}).get("povray") == povray_version}
        if not targets and fault:
            wait = self._wait_seconds()
            if started:
                self.store.hold_for_retry(job_id, batch_id, handoff, node, wait + lease)
            else:  # the lease for this task's retry, unless another execution holds it (or the job moved on)
                status = self.store.start_batch(job_id, batch_id, execution, node, wait + lease, handoff,
                                                hand_back=True,
                                                user_max_processes=self.settings.user_max_processes or 0)
                if status != "ok":
                    return Outcome("parked" if status == JobState.PAUSED else status)
            log.warning("httpov: %s: %s; no other live node has room for batch %s of job %s: tried again here in "
                        "%.0f s", node, fault, batch_id, job_id, wait)
            return Outcome("waiting", retry_in=wait, detail=f"{node}: {fault}")
        if not targets and povray_version is not None:
            message = (f"no live render node has povray {povray_version}, the version this job renders with (the "
                       f"first node's; this node has {self.povray_version}); a job submitted with 'any povray' "
                       "may be rendered by any version")
            self.store.fail_batch(job_id, batch_id, message, [], final=True, node=node, reason="no_node")
            return Outcome("failed", detail=message)
        if not targets:
            failed = self.store.batches(job_id)["failed"]
            last = max(failed.values(), key=lambda f: f.get("at", 0), default={"error": "", "lines": []})
            message = (f"every live render node has failed this job repeatedly ({', '.join(sorted(blocked))}); "
                       f"last error: {last['error']}")
            self.store.fail_batch(job_id, batch_id, message, list(last.get("lines") or []), final=True, node=node,
                                  reason="no_node")
            return Outcome("failed", detail=message)
        # Send the batch straight to a node that may render it: put back on the shared queue, it would most
        # likely come straight back to this idle node. Should that node die first, the lease runs out and the
        # sweepers requeue the batch as for any lost node.
        target = random.choice(sorted(targets))
        status = self.store.start_batch(job_id, batch_id, execution, node, HAND_BACK_LEASES * lease, handoff,
                                        hand_back=True, user_max_processes=self.settings.user_max_processes or 0)
        if status == JobState.PAUSED:
            return Outcome("parked")
        if status != "ok":
            return Outcome(status)
        if fault:
            why = f"{node}: {fault}"
            log.warning("httpov: %s: batch %s of job %s sent to %s", why, batch_id, job_id, target)
        elif povray_version is not None:
            why = f"{node} has povray {self.povray_version}, job {job_id} renders with {povray_version}"
        else:
            why = f"{node} is blocked from job {job_id}"
        return Outcome("handback", send_to=target, detail=f"{why}: sent to {target}")

    def _wait_seconds(self) -> float:
        """Back-off before the next try of a batch held for storage or for room: 2, 4, 8... seconds as this render
        process keeps waiting, at most WAIT_LEASES_MAX leases (the farm notices storage is back within that)."""
        self._waits += 1
        longest = max(2.0, WAIT_LEASES_MAX * self.settings.lease_seconds)
        return float(get_exponential_backoff_interval(factor=1, retries=self._waits, maximum=int(longest)))

    def _wait_for_storage(self, spec: JobSpec, batch: Batch, handoff: str, node: str,
                          exc: StorageError) -> Outcome:
        """The farm's storage failed (full, unreachable): the job waits for it, saying why on its record, and the
        batch is tried again after a back-off. Neither a failure of the batch nor of the node: nothing counts
        toward the blocklist or the batch's attempts."""
        wait = self._wait_seconds()
        self._storage_failed = True  # until it answers again, probed before a batch is rendered for nothing
        self.store.wait_for_storage(spec.id, batch.id, handoff, node, wait + self.settings.lease_seconds, str(exc))
        return Outcome("waiting", retry_in=wait, detail=f"waiting for storage: {exc}")

    def _render_and_store(self, spec: JobSpec, batch: Batch, lease: LeaseKeeper, result: str, execution: str = "",
                          node: str = "", saved: bool = True) -> tuple[float, int]:
        """Render the batch and store its zip: povray's seconds and the zip's bytes. A batch continues from its
        latest checkpoint, if one was saved by an execution that lost it (httpov.worker.checkpoint; `saved`: whether
        the take found one), and saves its own while it renders; a resumed run that fails starts over from the
        beginning."""
        stopped: list[str] = []
        checkpoints = None if batch.prepass else Checkpoints(
            self.store, self.storage, spec, batch, execution, node, self.povray_version,
            self.settings.checkpoint_seconds, self.settings.checkpoint_share, self.limits.output_bytes,
            on_progress=lease, saved=saved)

        store = self.store
        # a slice re-split before this execution took it (its node was lost) renders only up to its cut
        cut = store.cut(spec.id, batch.id) if batch.rows is not None and not batch.prepass else None
        shown_batch = batch.ending_at(cut)

        class KeepGoing:  # asked every povray tick (half a second), and at once when the job's stop is announced
            fileno = staticmethod(lease.fileno)  # readable when it is (povray._wait selects on it)
            tick = self.settings.stop_poll_seconds  # and between messages, this often
            heard: int | None = None  # the row a re-split said this slice now ends at (the same message wakes it)

            def cut(self) -> int | None:
                return self.heard

            def __call__(self) -> bool:
                if lease.woken():  # the message only wakes the render up: the job's state, read now, decides
                    if shown_batch.rows is not None and cut is None and self.heard is None:
                        with contextlib.suppress(HttpovError):
                            self.heard = store.cut(spec.id, batch.id)
                            if self.heard is not None:
                                log.info("httpov: %s re-split: it now ends at row %d, povray continues up to it "
                                         "(+C)", batch.label, self.heard)
                    return keep_going()
                if lease.live:  # as the keeper's thread last read it (its refresh and its poll of the state)
                    return True
                stopped.append(lease.state)
                return False

        def keep_going() -> bool:
            state = lease.state  # at the last renewal, or 'lost' if another task took the batch
            if lease.live:
                try:  # between renewals one HGET of the job's state, so that a cancel kills povray at once
                    state = self.store.state(spec.id)
                except JobNotFoundError:
                    state = "missing"
                except BrokerUnavailableError:
                    return True  # Redis restarting: keep rendering (see LeaseKeeper)
                if state in LIVE or state == JobState.PAUSED:  # a paused job's running batches finish
                    return True
            stopped.append(state)  # cancelled, failed, done elsewhere, gone, or 'lost' to another task
            return False

        hang_limit = None if batch.prepass or spec.time_limit is not None else self._hang_limit(spec, batch)
        with self._work.batch(spec.id) as workdir:
            try:
                with self.cache.use(self.storage, spec.scene_key) as scene:
                    link_scene(scene / spec.root if spec.root else scene, workdir / "scene")

                def render(extra: list[str] | None = None,
                           size: tuple[int, int] | None = None) -> povray.RenderOutput:
                    try:
                        return self.povray_render(self.settings.povray, spec, shown_batch, workdir,
                                                  self.settings.render_threads, KeepGoing(), self.limits,
                                                  spec.time_limit, extra, size, self.settings.no_progress_seconds,
                                                  hang_limit, watcher=checkpoints if size is None else None)
                    except RenderError:
                        if stopped:
                            raise Stopped(stopped[0]) from None
                        self._keep_failed_log(spec, batch, workdir / "render.log")
                        raise
                farm = radiosity.Farm(self.store, self.storage, self.cache)
                maps = None if spec.photons == "off" else photons.PhotonMaps(
                    self.store, self.storage, self.cache, self.settings.photon_map_mb * 2**20)
                if batch.prepass:
                    return farm.prepass(spec, batch, workdir / "scene", render, result, maps)
                extra, refused, pov = None, "", None
                if maps is not None and spec.slices:  # a copy of the scene that loads the frame's photon map
                    pov, refused = maps.load(spec, batch, workdir / "scene")
                if spec.radiosity != "off" and (spec.slices or spec.radiosity == "shared"):
                    extra, why = farm.load(spec, batch, workdir / "scene", pov)
                    refused = "\n".join(x for x in (refused, why) if x)
                if extra is None and pov is not None:
                    extra = [f"+I{pov}"]
                try:
                    output = render(extra)
                except RenderError as exc:
                    if checkpoints is None or checkpoints.resumed is None:
                        raise
                    log.warning("httpov: %s failed when continued from its checkpoint (%s): it renders from the "
                                "start", batch.label, shown(str(exc)))
                    checkpoints.refused = (f"continuing {batch.label} from its checkpoint failed ({exc}): it "
                                           "rendered from the start")
                    checkpoints.resume = False
                    checkpoints.discard()
                    output = render(extra)
                if checkpoints is not None and checkpoints.resumed is not None:
                    refused = "\n".join(x for x in (refused, f"continued from the checkpoint node "
                                                             f"{shown(checkpoints.resumed.node)} saved: "
                                                             f"{checkpoints.describe()}") if x)
                elif checkpoints is not None and checkpoints.refused:
                    refused = "\n".join(x for x in (refused, checkpoints.refused) if x)
                archive = workdir / f"{batch.id}.zip"
                with zipfile.ZipFile(archive, "w") as zf:
                    for frame, image in sorted(output.images.items()):
                        zf.write(image, povray.frame_file(spec.name, frame, spec.final), zipfile.ZIP_STORED)
                    zf.writestr(f"{batch.id}.log", "".join(f"httpov: {line}\n" for line in refused.splitlines())
                                + output.log, zipfile.ZIP_DEFLATED)
                self.storage.put_file(batch_key(spec.id, batch.id, result), archive)
                if checkpoints is not None and (checkpoints.saved or checkpoints.resumed is not None):
                    checkpoints.discard()  # its result is stored: nothing to continue from any more
                return output.seconds, archive.stat().st_size
            except (Stopped, NodeFaultError):
                raise
            except Exception as exc:  # measured now, before the work folder is removed
                fault = room.own_fault(exc, self._work.root, self.settings.min_free_mb)
                if fault:
                    raise NodeFaultError(fault) from exc
                raise

    def _release(self, spec: JobSpec, batch: Batch) -> None:
        """Queue the batches a finished pre-pass was holding back (a redelivered one is dropped as a duplicate)."""
        if self.release is None:
            raise RenderError("this render process cannot queue batches: a pre-pass needs its Celery app",
                              transient=True)
        waiting = released_by(spec, batch)
        done = self.store.batches(spec.id)["done"]
        self.release(spec, handout_order(spec, [b for b in waiting if b not in done]))

    def _keep_failed_log(self, spec: JobSpec, batch: Batch, log: Path) -> None:
        """Store povray's log of a failed attempt for `httpov fetch`; the render error matters more than this."""
        if log.exists():
            try:
                self.storage.put_file(failed_log_key(spec.id, batch.id), log)
            except StorageError:
                pass  # the batch fails with povray's error lines in Redis all the same

    def _hang_limit(self, spec: JobSpec, batch: Batch) -> tuple[float, str] | None:
        """The batch's own time limit, from a sample of the job's finished batches (batch_time_limit), with
        the settings that make it; None before any batch of the job finished (the node's limit applies)."""
        seconds = time_limit(self._unit_median(spec.id, spec.height), spec.height, batch.id,
                             self.settings.batch_time_factor, self.settings.batch_time_floor)
        if seconds is None:
            return None
        return seconds, (f"{self.settings.batch_time_factor:g} times the job's median measured time per frame, at "
                         f"least {self.settings.batch_time_floor:g} s: HTTPOV_BATCH_TIME_FACTOR, "
                         "HTTPOV_BATCH_TIME_FLOOR")

    def _unit_median(self, job_id: str, height: int) -> float | None:
        """The job's median seconds per frame (plan.unit_median) in a random sample of its done batches: read again
        for each batch until the sample is full (the first batches' times move the median most), then kept
        SAMPLE_SECONDS, for the jobs this process renders lately."""
        now = time.monotonic()
        kept = self._samples.get(job_id)
        if kept is not None and now - kept[0] < SAMPLE_SECONDS:
            return kept[1]
        sample = self.store.done_sample(job_id, DONE_SAMPLE)
        median = unit_median(sample, height)
        if len(sample) >= DONE_SAMPLE:
            self._samples.pop(job_id, None)
            self._samples[job_id] = (now, median)
            while len(self._samples) > 16:  # the oldest read first
                self._samples.pop(next(iter(self._samples)))
        return median

    def _hung(self, spec: JobSpec, batch: Batch, execution: str, handoff: str, node: str,
              exc: RenderHungError) -> Outcome:
        """povray hung and was killed: the batch is tried once more, on another live node that may render the job
        (this one may be the cause: a stopped process, a starved machine), else here; a second hang fails the job
        with the reason. Each hang counts against this node like any failure, and goes in the job's history."""
        lines = list(exc.lines)
        before = self.store.failure(spec.id, batch.id)
        hangs = (before.get("hangs", 0) if before else 0) + 1
        earlier = before.get("node", "?") if before else "?"
        self.store.record_failure(spec.id, batch.id, node, "hung", self.block_after)
        self.store.note(spec.id, f"{batch.label} hung on {node}: {exc}", kind="hang")
        if hangs > 1:
            message = f"{exc} (the batch hung {hangs} times, last on {node}, before on {earlier})"
            self.store.fail_batch(spec.id, batch.id, message, lines, final=True, node=node, hangs=hangs,
                                  reason="hung")
            return Outcome("failed", detail=message, hung=True)
        self.store.fail_batch(spec.id, batch.id, str(exc), lines, final=False, node=node, hangs=hangs,
                              reason="hung")
        targets, _ = self._others(node, self.store.blocked(spec.id))
        if not targets:  # this node is the farm: tried again here, after a lease
            wait = self.settings.lease_seconds
            self.store.hold_for_retry(spec.id, batch.id, handoff, node, 2 * wait)
            return Outcome("retry", retry_in=wait, detail=f"{exc}; no other live node: tried again here", hung=True)
        target = random.choice(sorted(targets))
        status = self.store.start_batch(spec.id, batch.id, execution, node,
                                        HAND_BACK_LEASES * self.settings.lease_seconds, handoff, hand_back=True,
                                        user_max_processes=self.settings.user_max_processes or 0)
        if status != "ok":
            return Outcome("parked" if status == JobState.PAUSED else status, hung=True)
        return Outcome("retry", send_to=target, detail=f"{exc}; sent to {target}", hung=True)

    def _failed(self, spec: JobSpec, batch: Batch, handoff: str, node: str, attempt: int,
                exc: HttpovError) -> Outcome:
        """A transient failure is retried with back-off, unless the batch failed the same way on several nodes
        or used up its attempts; each one counts against this node, which is blocked from the job after a few."""
        lines = getattr(exc, "lines", [])
        transient = isinstance(exc, StorageError) or getattr(exc, "transient", False)
        if not transient:
            message = str(exc)
        else:
            nodes, _ = self.store.record_failure(spec.id, batch.id, node, str(exc), self.block_after)
            if nodes >= SAME_FAILURE_NODES:
                message = f"{exc} (the same failure on {nodes} render nodes)"
            elif attempt < self.settings.max_attempts:
                backoff = get_exponential_backoff_interval(factor=1, retries=attempt, maximum=RETRY_BACKOFF_MAX)
                self.store.fail_batch(spec.id, batch.id, str(exc), lines, final=False, node=node,
                                      reason="transient")
                self.store.hold_for_retry(spec.id, batch.id, handoff, node, backoff + self.settings.lease_seconds)
                return Outcome("retry", retry_in=backoff, detail=str(exc))
            else:
                message = f"{exc} (failed {attempt} times)"
        self.store.fail_batch(spec.id, batch.id, message, lines, final=True, node=node,
                              reason="transient" if transient else "render")
        return Outcome("failed", detail=message)

    def _povray(self, *args: Any, **options: Any) -> povray.RenderOutput:
        """povray.render with the preload library of the node's quick waits (httpov.worker.waits), when it has one;
        a povray that crashes with it renders without it in this slot for its next WITHOUT_WAITS_RUNS runs (the
        batch's retry too, should it come here): the node's other slots keep it, as a crash may be the scene's."""
        if self._without_waits > 0:
            self._without_waits -= 1
            preload = options["preload"] = None
        else:
            preload = options["preload"] = waits.library_for(self.settings)
        limit = f"the render node's time limit of {self.settings.soft_time_limit} s (HTTPOV_TASK_TIME_LIMIT less 30 s)"
        left = self._deadline - time.monotonic()
        if left <= 0:  # (a probe and a pass, a checkpoint's render again: no povray started past it)
            raise RenderError(f"the batch ran past {limit}; povray was not started again", transient=False)
        options.setdefault("node_limit", (left, limit))
        options.setdefault("home", self._work.home)  # the slot's: its confs stay from batch to batch
        options.setdefault("out", self._work.out)  # and its batch folder's output folder
        try:
            output = povray.render(*args, **options)
            # the starts its seconds include, taken off them for the scene's frame times (plan.net_seconds)
            self._started_povray += output.runs * (POVRAY_START_SECONDS if preload is None else QUICK_START_SECONDS)
            return output
        except RenderError as exc:
            if preload is not None and "povray crashed" in str(exc):
                self._without_waits = WITHOUT_WAITS_RUNS
                waits.refuse(preload, f"povray crashed with it: {exc}", WITHOUT_WAITS_RUNS)
            raise

    @cached_property
    def povray_version(self) -> str:
        """This node's povray version, read once a batch (povray.version asks povray once a process)."""
        return povray.version(self.settings.povray)

    @property
    def limits(self) -> RenderLimits:
        """What one batch may use and write: HTTPOV_BATCH_MAX_MEMORY_MB, _BYTES and _FILES."""
        return RenderLimits.from_settings(self.settings)

    @property
    def block_after(self) -> int:
        """Failures of one node on one job that keep it off the job: one fewer than a batch's attempts, so a
        single bad node can never use up a batch's attempts alone."""
        return max(1, self.settings.max_attempts - 1)

    def _stitch_if_complete(self, spec: JobSpec, batch: Batch, execution: str, result: str) -> list[int]:
        """After a slice is stored (as `result`): if it was the frame's last, stitch the frame from the slices' results
        (the other slices' as their done records name them) and answer [frame]; _Lost, stitching nothing, if this
        execution no longer owns its batch."""
        frame = batch.first
        done_slices = self.store.slice_done(spec.id, frame, batch.id)
        # read after this slice counted itself done: a re-split is refused from then on (scripts/resplit.lua)
        delivered = delivered_slices(spec.slices or [], frame, self.store.cuts(spec.id))
        if done_slices < len(delivered):
            return []
        if not self.store.owns(spec.id, batch.id, execution, result):  # a stale slice never replaces the frame
            raise _Lost()
        pieces = [piece for piece, _, _ in delivered]
        deadline = time.monotonic() + self.settings.lease_seconds / 2  # well before this execution's lease runs out
        while True:  # another slice's node may be between its slice_done and its finish_batch: a moment
            done = self.store.done_infos(spec.id, [p for p in pieces if p != batch.id])
            if all(done.values()):
                break
            if time.monotonic() > deadline:  # its node died in between: this one's retry stitches the frame
                raise RenderError(f"a slice of frame {frame} was stored but never recorded done", transient=True)
            time.sleep(0.05)
        name = povray.frame_file(spec.name, frame, spec.final)
        with tempfile.TemporaryDirectory(prefix="httpov-stitch-") as tmp:
            slices = []
            for piece_id, first, last in delivered:  # each slice's delivered rows: a re-split one's up to its cut
                stored = result if piece_id == batch.id else (done[piece_id] or {}).get("result", "")
                key = batch_key(spec.id, piece_id, stored)
                archive = Path(tmp) / f"{piece_id}.zip"
                self.storage.get_file(key, archive)
                slices.append((archive, key, first, last))
            whole = Path(tmp) / name
            stitch.stitch_results(slices, name, spec.width, spec.height, whole)  # each zip checked as fetch does
            self.storage.put_file(frame_key(spec.id, name), whole)
        return [frame]


class _Lost(Exception):
    """This execution's lease was taken over: what it rendered is not the batch's result."""


def _frames(batch_id: str) -> str:
    """'1-4' (or '3' for a slice of frame 3) from a batch id; '?' for one no one planned."""
    try:
        batch = Batch.from_id(batch_id)
    except (BadInputError, ValueError, TypeError, AttributeError):
        return "?"
    return str(batch.first) if batch.first == batch.last else f"{batch.first}-{batch.last}"
