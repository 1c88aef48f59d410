"""Putting batches on the queue: a job's window of batches topped up, and the lease sweep's requeue of lost ones.

Fair share: a job keeps only a small window of its batches in Celery's queue; the rest wait on its pending list in
Redis. The render process that finishes a batch tops its job's window up in the same step, and every sweep tops up
every live job. Jobs at the same priority then take turns in the queue instead of the first one holding every render
process until it ends, and each takes render processes in proportion to its window (batches are served in the order
they were queued, and each one done is replaced at the back of the queue). The windows share between users first,
then between their jobs: on each queue and at each priority every user with live jobs gets the same budget
(WINDOW_FACTOR x the render processes that take that queue's batches: every live node's for the default queue, its
nodes' for a render pool's), split between that user's jobs there, a job's --max-processes leaving the rest of its
part to the user's other jobs.

Per-user limits (httpov.user_limits, set by admins): a user's budget scales with their fair-share weight (the
heaviest weight among the users there gets the whole budget, the others in proportion), and is cut to their max
processes. That cut only keeps batches that would have to wait off the queue: the cap itself is enforced exactly by
the render node's start_batch, which counts the owner's running batches over all their jobs in the step that adds
one (a window cannot: a batch running when a window shrinks stays running, and a job keeps a window of one).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from httpov.after import settle, waits_for
from httpov.broker import QueueLayout, take_queued
from httpov.plan import Batch, JobSpec
from httpov.settings import live_node_window
from httpov.store import JobStore, Share
from httpov.store.jobs import DRAIN
from httpov.sweep import NODES_FORGOTTEN, claims, reap, resplit_claim, unsent
from httpov.user_limits import Limits, UserLimits, resolve, user_budgets

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

#: A job's window: this many times the live render processes, so one job alone still keeps every process busy, with
#: slack for batches held in a retry's back-off. Measured (docs/PERFORMANCE.md): with 2x, a 4-batch job behind a
#: 200-batch one took 2.9x its time alone, with 1x 1.7x; one job's throughput was the same with either.
WINDOW_FACTOR = 1.5
#: Render processes assumed while no render node has said how many it runs (the sweeps top up as nodes appear).
MIN_PROCESSES = 2
#: How long a render node tops its jobs up from the windows it last read (WindowCache).
WINDOW_CACHE_SECONDS = 0.5
#: Messages sent per Redis round trip (kombu pipelines the LPUSHes and task-sent events of one batch).
PUBLISH_BATCH = 500


def celery_priority(spec: JobSpec, requeued: bool = False) -> int:
    """The Celery priority of a job's batches on Redis (0 is served first, 9 last; a job's priority 9 is served
    first). A batch requeued after its render node was lost goes one step ahead of its job's batches not yet
    started, so it is the next of the job's batches a render process takes."""
    return max(0, 9 - spec.priority - (1 if requeued else 0))


def enqueue(celery: Celery, spec: JobSpec, batch_ids: Iterable[str], queue: str,
            on_sent: Callable[[int], None] | None = None, requeued: bool = False) -> int:
    """Send one render_batch message per batch at the job's priority (see celery_priority).

    One producer for all of them; the queue is declared once, and kombu pipelines the LPUSHes (and task-sent
    events) PUBLISH_BATCH at a time, so a 10,000-batch job costs a few dozen Redis round trips, not 20,000.
    `on_sent` is told how many were sent after every PUBLISH_BATCH of them.
    """
    sent, priority = 0, celery_priority(spec, requeued)
    with celery.producer_or_acquire() as producer:
        producer.maybe_declare(celery.amqp.queues[queue])
        with producer.batch(PUBLISH_BATCH):
            for batch_id in batch_ids:
                label = Batch.from_id(batch_id).label
                kwargs = {"job_id": spec.id, "batch": batch_id, "label": label}
                celery.send_task("httpov.render_batch", queue=queue, priority=priority, producer=producer,
                                 kwargs=kwargs, declare=[], argsrepr="()", kwargsrepr=repr(kwargs))
                sent += 1
                if on_sent is not None and sent % PUBLISH_BATCH == 0:
                    on_sent(sent)
    return sent


def budget(processes: int) -> int:
    """One user's window slots at one priority on a queue served by `processes` render processes: WINDOW_FACTOR x
    them (MIN_PROCESSES while no render node has said how many it runs)."""
    return math.ceil(WINDOW_FACTOR * max(MIN_PROCESSES, processes))


def split(budget: int, caps: list[int]) -> list[int]:
    """`budget` window slots shared between jobs (oldest first) as evenly as their caps allow (0: no cap): a job
    capped below its part leaves the rest to the others, the newest get the remainder (a preview behind a long job
    of the same user), and each gets at least 1."""
    parts, left, open_ = [0] * len(caps), budget, list(range(len(caps)))
    while open_:
        share = left // len(open_)
        capped = [i for i in open_ if caps[i] and caps[i] <= share]
        if not capped:
            for n, i in enumerate(reversed(open_)):
                parts[i] = share + (1 if n < left % len(open_) else 0)
            break
        for i in capped:
            parts[i], left = caps[i], left - caps[i]
            open_.remove(i)
    return [max(1, part) for part in parts]


def windows(store: JobStore, lease_seconds: float, also: str | None = None, user_cap: int = 0) -> dict[str, int]:
    """Every live job's window (and job `also`'s, not yet listed while it is submitted): on each queue (the default
    one, or a render pool's) and at each priority, each user's budget split between the user's jobs (see the
    module's docstring). The budget counts the render processes that take the queue's batches (every node takes the
    default queue's; a pool's, only its nodes), and grows to the most jobs one user has there, so each job keeps at
    least one batch queued; each user's part of it follows their limits (`user_cap`: the farm's default max
    processes, HTTPOV_USER_MAX_PROCESSES)."""
    return _windows(store, lease_seconds, also, user_cap)[1]


def _group(share: Share) -> tuple[str, int, str]:
    """The jobs that split one budget: one user's, on one queue, at one priority."""
    return share.queue, share.priority, share.user


def _windows(store: JobStore, lease_seconds: float, also: str | None,
             user_cap: int = 0) -> tuple[dict[str, Share], dict[str, int]]:
    """windows(), with the shares it read."""
    shares, (everyone, pools), entries = store.fair_share(also, within=live_node_window(lease_seconds))
    groups: dict[tuple[str, int, str], list[str]] = defaultdict(list)
    for job_id in sorted(shares, key=lambda j: shares[j].created):
        groups[_group(shares[job_id])].append(job_id)
    most: dict[str, int] = defaultdict(int)
    competing: dict[tuple[str, int], dict[str, Limits]] = defaultdict(dict)  # queue, priority -> its users' limits
    defaults = UserLimits(max_processes=user_cap, weight=1.0)
    for (queue, priority, user), jobs in groups.items():
        most[queue] = max(most[queue], len(jobs))
        competing[queue, priority][user] = resolve(entries, user, defaults)
    parts: dict[tuple[str, int, str], int] = {}
    for (queue, priority), users in competing.items():
        processes = pools.get(queue.rpartition(".pool.")[2], 0) if queue else everyone
        for user, part in user_budgets(max(budget(processes), most[queue]), users).items():
            parts[queue, priority, user] = part
    out: dict[str, int] = {}
    for group, jobs in groups.items():
        out.update(zip(jobs, split(parts[group], [shares[j].max_processes for j in jobs])))
    return shares, out


def job_window(store: JobStore, lease_seconds: float, job_id: str, user_cap: int = 0) -> int:
    """One job's window as windows() shares them (0 for a job gone)."""
    return windows(store, lease_seconds, also=job_id, user_cap=user_cap).get(job_id, 0)


class WindowCache:
    """Every live job's window (windows()) as a render node last read it, shared by its slots: a batch that ended
    within `seconds` of the read tops its job up from it. A node whose batches end every few milliseconds then reads
    the farm's fair share (a script over every live job) a few times a second, not once a batch; a window that
    changed meanwhile (a job submitted or finished, a node gone) reaches the node's top-ups that much later."""

    def __init__(self, seconds: float = WINDOW_CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._windows: dict[str, int] = {}

    def fresh(self, job_id: str) -> int | None:
        """The job's window from the last read if it is fresh and names the job, else None (read it)."""
        with self._lock:
            if time.monotonic() - self._read_at < self.seconds:
                return self._windows.get(job_id)
        return None

    def read(self, store: JobStore, lease_seconds: float, job_id: str, user_cap: int = 0) -> int:
        """The job's window, read now with every other live job's (kept for the next `seconds`)."""
        found = windows(store, lease_seconds, also=job_id, user_cap=user_cap)
        with self._lock:
            self._windows, self._read_at = found, time.monotonic()
        return found.get(job_id, 0)


def top_up(celery: Celery, store: JobStore, job_id: str, queue: str, lease_seconds: float,
           spec: JobSpec | None = None, limit: int | None = None, user_cap: int = 0) -> int:
    """Send the next batches of a live job's pending list until its window (default: its share, see windows) is
    full (JobStore.top_up, atomic); answers how many were sent. `queue` is the default queue, for jobs sent to no
    pool; `user_cap` as for windows."""
    own, batch_ids = store.top_up(job_id, job_window(store, lease_seconds, job_id, user_cap) if limit is None
                                  else limit)
    if not batch_ids:
        return 0
    return enqueue(celery, spec or store.spec(job_id), batch_ids, own or queue)


def sweep(celery: Celery, store: JobStore, queue: str, lease_seconds: float, max_attempts: int, every: float,
          node: str | None = None, processes: int = 0, pools: list[str] | None = None,
          info: dict[str, Any] | None = None, user_cap: int = 0,
          busy: tuple[float, float] | None = None,
          on_drain: Callable[[], None] | None = None,
          resplit: Callable[[], object] | None = None) -> list[tuple[str, str]]:
    """Requeue batches whose render node is gone, then top up every live job's window; a render node passes its
    name, render processes, pools and record (`httpov nodes`), which also tells the others it is alive, and its
    processes busy this minute (`busy`, JobStore.heartbeat); `on_drain` is called if the heartbeat finds the node
    told to drain (`httpov nodes drain`), and the node that wins sweep:nodes forgets the nodes long gone. Used by the
    worker's reaper (with the worker's own app) and by waiting clients; `user_cap` as for windows. `resplit`: a node
    with an idle render process passes its look for a slice to re-split, run last if it wins its pools' claim
    (resplit_claim; without `every`, always), even when the rest of the sweep failed."""
    won: set[str] | None = None  # the claims below, tried in the heartbeat's round trip (one period's: `every`)
    looks = resplit_claim(pools or [])
    if node:
        tried = claims(lease_seconds, every) if every else None
        if tried is not None and resplit is not None:
            tried[looks] = every * 0.8
        said = store.heartbeat(node, processes, pools, info, busy, claims=tried)
        if DRAIN in said and on_drain is not None:
            on_drain()
        won = said - {DRAIN} if tried else None

    try:
        return _sweep(celery, store, queue, lease_seconds, max_attempts, every, user_cap, won)
    finally:  # whatever the rest of the sweep met: no other node looks this period once this one won the claim
        if resplit is not None:
            try:
                if not every or _claimed(store, won, looks, every * 0.8):
                    resplit()
            except Exception as exc:  # never in place of the sweep's own error, nor losing what it requeued
                log.warning("httpov: re-split failed: %s", exc)


def _claimed(store: JobStore, won: set[str] | None, name: str, seconds: float) -> bool:
    """Whether this sweep holds claim `name`: among those `won` with the heartbeat, or (None: no heartbeat tried them)
    claimed now for `seconds`."""
    return name in won if won is not None else store.claim(name, seconds)


def _sweep(celery: Celery, store: JobStore, queue: str, lease_seconds: float, max_attempts: int, every: float,
           user_cap: int, won: set[str] | None) -> list[tuple[str, str]]:
    """sweep()'s work after the heartbeat: the claims `won` with it (None: each is claimed on its own)."""
    def requeue(job_id: str, batch_ids: list[str]) -> None:  # still in the job's window: sent as they are
        enqueue(celery, store.spec(job_id), batch_ids, store.queue_of(job_id) or queue,
                requeued=True)  # ahead of the job's others
    def claim(name: str, seconds: float) -> bool:
        return _claimed(store, won, name, seconds)
    if won is None or claim("sweep:dependents", every * 0.8):  # one node a period: a settler that died strands none
        settle_dependents(celery, store, queue, lease_seconds, user_cap=user_cap)
    layout = QueueLayout.of(celery)
    reissued = reap(store, layout, requeue, lease_seconds, max_attempts, every=every, won=won)
    if not every or claim("sweep:top-up", every * 0.8):  # one sweeper per `every` fills the windows
        for job_id, limit in windows(store, lease_seconds, user_cap=user_cap).items():
            top_up(celery, store, job_id, queue, lease_seconds, limit=limit)
    if claim("sweep:unsent", lease_seconds):  # a top-up whose sender died before sending: send it now
        jobs = store.active_ids()
        queues = sorted({queue} | {store.queue_of(job_id) for job_id in jobs} - {""})
        for job_id, batch_id in unsent(store, layout, queues, min_age=2 * lease_seconds, confirm=lease_seconds / 2):
            requeue(job_id, [batch_id])
            reissued.append((job_id, batch_id))
            log.warning("httpov: batch %s of job %s was taken for its window and never sent; sent now", batch_id,
                        job_id)
    if won is not None and "sweep:nodes" in won:  # one node a minute
        store.forget_nodes(NODES_FORGOTTEN)
    return reissued


def settle_dependents(celery: Celery, store: JobStore, queue: str, lease_seconds: float, of: str | None = None,
                      user_cap: int = 0) -> list[str]:
    """Release or fail the jobs that wait for other jobs (httpov.after), every one or only those waiting for job
    `of` (one just ended or with a batch just done), and top up those released; answers the ids released."""
    released = []
    for job_id in waits_for(store, of) if of else store.dependent_ids():
        try:
            if settle(store, job_id):
                released.append(job_id)
                make_room(celery, store, job_id, queue, lease_seconds, user_cap)
                top_up(celery, store, job_id, queue, lease_seconds, user_cap=user_cap)
        except Exception as exc:  # the next sweep settles it again
            log.warning("httpov: could not settle job %s that waits for others: %s", job_id, exc)
    return released


def reprioritize(celery: Celery, store: JobStore, job_id: str, queue: str, priority: int) -> int:
    """Give a live or paused job a new priority: its queued messages (its window) are taken off the queue and sent
    again at that priority; its pending batches go at it when topped up, set-aside ones on resume. Answers how many
    batches moved."""
    spec = store.set_priority(job_id, priority)
    own = store.queue_of(job_id) or queue
    return enqueue(celery, spec, take_queued(store.r, QueueLayout.of(celery), own, job_id), own)


def make_room(celery: Celery, store: JobStore, job_id: str, queue: str, lease_seconds: float,
              user_cap: int = 0) -> int:
    """A job joins its user's jobs at its priority (submitted, resumed, retried): their parts of the user's budget
    shrink, so each of them whose window now holds more than its part takes its last queued messages back (to the
    front of its pending list), and the joining job's first batches are not queued behind them. Without this, one
    user's 4-batch preview behind their own 200-batch job waited for the big job's surplus (docs/PERFORMANCE.md).
    Answers the joining job's window (0 for a job gone)."""
    shares, parts = _windows(store, lease_seconds, job_id, user_cap)
    if job_id not in shares:
        return 0
    layout = QueueLayout.of(celery)
    for other, part in parts.items():
        if other == job_id or _group(shares[other]) != _group(shares[job_id]):
            continue
        surplus = store.window_size(other) - part
        if surplus > 0:
            taken = take_queued(store.r, layout, shares[other].queue or queue, other, surplus)
            store.unsend(other, taken)
    return parts[job_id]

