"""The worker's lease sweeper: every worker sweeps for expired leases (httpov.dispatch.sweep), so none is special."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time

from celery import bootsteps
from celery.exceptions import WorkerShutdown, WorkerTerminate
from celery.signals import worker_shutdown
from celery.worker import state as worker_state

from httpov.dispatch import sweep
from httpov.errors import BrokerUnavailableError
from httpov.outage import lasting
from httpov.retention import apply_retention
from httpov.settings import Settings, unknown_variables
from httpov.storage import Storage, open_storage
from httpov.store import JobStore, open_store
from httpov.text import shown
from httpov.webhooks import Deliverer
from httpov.worker import povray, room, waits
from httpov.worker.renewal import Renewer, lease_folder
from httpov.worker.resplit import resplit_one

log = logging.getLogger(__name__)

#: Seconds between two retention sweeps of the farm (HTTPOV_KEEP_DAYS): one node does each.
RETENTION_EVERY = 600.0
#: Seconds between two checks of the farm's storage while it does not answer this node.
STORAGE_CHECK_EVERY = 60.0
#: A node started before Redis tries it this often, and says it waits at most every WAIT_LOG_EVERY seconds.
WAIT_FOR_REDIS_SECONDS = 1.0
WAIT_LOG_EVERY = 30.0


def open_store_once_up(settings: Settings) -> JobStore:
    """The farm's store, once Redis answers: a node started before Redis (a machine booting, Redis restarting) waits
    for it, as Celery's consumer waits for the broker, saying so at most every WAIT_LOG_EVERY seconds, where it
    exited with a traceback. What waiting cannot mend (httpov.outage.lasting; a schema it does not know) still stops
    the node at once, and so does a SIGTERM while it waits."""
    said = -math.inf
    while True:
        try:
            return open_store(settings)
        except BrokerUnavailableError as exc:
            if lasting(exc):
                raise
            if time.monotonic() - said >= WAIT_LOG_EVERY:
                said = time.monotonic()
                log.warning("httpov: waiting for Redis: %s", exc)
            deadline = time.monotonic() + WAIT_FOR_REDIS_SECONDS
            while time.monotonic() < deadline:  # a SIGTERM meanwhile (Celery's handler sets a flag) stops it
                if worker_state.should_terminate is not None:
                    raise WorkerTerminate(worker_state.should_terminate) from None
                if worker_state.should_stop is not None:
                    raise WorkerShutdown(worker_state.should_stop) from None
                time.sleep(0.1)


class UseMeter:
    """A render node's processes busy, sampled at each sweep, as the mean of each minute so far: the heartbeat
    carries it (node-use:<node>, the nodes page's picture of the farm's use)."""

    def __init__(self) -> None:
        self.minute, self.total, self.samples = 0.0, 0.0, 0

    def add(self, now: float, busy: int) -> tuple[float, float]:
        """Note `busy` processes at `now`: (the minute's start, its mean so far)."""
        minute = now - now % 60
        if minute != self.minute:
            self.minute, self.total, self.samples = minute, 0.0, 0
        self.total, self.samples = self.total + busy, self.samples + 1
        return minute, self.total / self.samples


def busy_processes() -> int:
    """The tasks this worker runs now (Celery's own count of its active requests: one per busy process)."""
    from celery.worker import state

    return len(state.active_requests)


class Reaper(bootsteps.StartStopStep):
    """A worker bootstep: every Settings.sweep_seconds, say this node is alive and sweep, queueing through the
    worker's own Celery app. The sweep runs in a thread of its own, never on the worker's event loop: a sweep is a
    dozen Redis round trips, and on a slow link (250 ms each way) it held up the loop that takes and acks messages
    for seconds at every period. As on the worker's timer before, the first sweep comes one period after start."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.storage: Storage | None = None
        self.webhooks: Deliverer | None = None
        self.storage_error: str | None = None  # why the farm's storage failed this node's last check (its heartbeat)
        self.use = UseMeter()
        self.draining = False  # told to drain (or stopping): SIGTERM sent to itself, warm shutdown under way
        self.said: tuple[JobStore, str, dict] | None = None  # its store, name and record, for node_stopped at exit

    def start(self, worker):
        settings = Settings.from_env()
        store = open_store_once_up(settings)
        try:
            store.load_scripts()
        except Exception as exc:  # Redis away: each script is loaded at its first use instead
            log.warning("httpov: could not load the Lua scripts into Redis: %s", exc)
        with contextlib.suppress(Exception):  # Redis away: a stale mark would drain it again at its first sweep
            store.node_started(worker.hostname)
        info = {"host": socket.gethostname(), "processes": worker.concurrency, "cores": os.cpu_count(),
                "povray": povray.version(settings.povray), "httpov": povray.httpov_version(), "started": time.time()}
        node = (worker.app, store, settings, worker.hostname, int(worker.concurrency or 0),
                self._pools(worker, settings), info)
        self.said = (store, worker.hostname, info)
        worker_shutdown.connect(self._stopped, weak=False)

        for warning in unknown_variables():  # HTTPOV_STORGE: said at start, not silently ignored
            log.warning("httpov: %s", warning)
        # The storage is opened here, on the worker's main thread, before any thread of ours runs: its modules
        # (boto3's) are imported now, never by a thread while the pool forks its render processes (a child forked
        # amid another thread's import waits on that module's lock for ever, and never starts a batch).
        try:
            storage: Storage | None = open_storage(settings.storage)
        except Exception as exc:
            storage, self.storage_error = None, shown(f"{settings.storage}: {type(exc).__name__}: {exc}")[:300]
            log.warning("httpov: the farm's storage cannot be opened: %s", self.storage_error)
        if storage is not None:
            threading.Thread(target=self._check_storage, args=(storage, settings.storage), name="httpov storage check",
                             daemon=True).start()

        def run() -> None:  # one sweep at a time, each a period after the last began (a slow one is not run twice)
            began = time.monotonic()
            while not self.stopping.wait(max(0.0, settings.sweep_seconds - (time.monotonic() - began))):
                began = time.monotonic()
                try:
                    self._sweep(*node)
                except Exception:  # the sweep says what failed itself; this one must never end the thread
                    log.exception("httpov: sweep failed")
        self.thread = threading.Thread(target=run, name="httpov sweep", daemon=True)
        self.thread.start()
        # the leases of the batches this node's processes render, renewed in one call a period (httpov.worker.renewal),
        # in a thread of its own: a slow sweep never delays a renewal
        Renewer(store, lease_folder(settings.cache_dir, worker.hostname), settings.lease_seconds).start(self.stopping)
        self.webhooks = Deliverer.of(store.r, settings).start()  # one process of the farm delivers: see webhooks.py

    def _check_storage(self, storage: Storage, named: str) -> None:
        """Whether the farm's storage answers (a wrong path, an unreachable S3), at start and each
        STORAGE_CHECK_EVERY seconds until it does: the heartbeat carries why not, for `httpov nodes` and its page.
        In a thread of its own: an unreachable S3 takes its timeouts, which must not delay the heartbeat."""
        while True:
            try:
                storage.check()
                self.storage_error = None
                return
            except Exception as exc:  # whatever it is, the node says it instead of failing batches silently
                self.storage_error = shown(f"{named}: {type(exc).__name__}: {exc}")[:300]
                log.warning("httpov: the farm's storage does not answer: %s", self.storage_error)
            if self.stopping.wait(STORAGE_CHECK_EVERY):
                return

    @staticmethod
    def _pools(worker, settings: Settings) -> list[str]:
        """The render pools whose queues this worker consumes (HTTPOV_POOLS, or Celery's -Q)."""
        mark = f"{settings.queue}.pool."
        try:
            names = list(worker.app.amqp.queues.consume_from)
        except Exception:  # no consumer set up yet: what the settings say
            return settings.pool_names
        return sorted({name[len(mark):] for name in names if name.startswith(mark)} | set(settings.pool_names))

    def _sweep(self, celery, store: JobStore, settings: Settings, node: str, processes: int,
               pools: list[str], info: dict) -> None:
        fault = room.disk_fault(settings.cache_dir, settings.min_free_mb)  # said with every heartbeat while true
        info = {**info, "fault": fault} if fault else info
        if self.storage_error:
            info = {**info, "storage_error": self.storage_error}
        waits_off = waits.off_reason(settings)  # a failed build or check of its quick waits: povray idles
        if waits_off:
            info = {**info, "waits_off": shown(waits_off)[:300]}
        busy = busy_processes()

        def resplit() -> None:  # a process idles: the slowest running slice of a still may give it half its rows left
            resplit_one(celery, store, settings.queue, settings.lease_seconds, node, pools,
                        user_cap=settings.user_max_processes or 0)
        try:
            sweep(celery, store, settings.queue, settings.lease_seconds, settings.max_attempts,
                  settings.sweep_seconds, node, processes, pools, info, user_cap=settings.user_max_processes or 0,
                  busy=self.use.add(time.time(), busy), on_drain=self._drain,
                  resplit=resplit if settings.resplit and not self.draining and busy < processes else None)
        except Exception as exc:  # Redis down for a moment: the next sweep tries again
            log.warning("httpov: lease sweep failed: %s", exc)
        if settings.keep_days:
            try:
                if self.storage is None:
                    self.storage = open_storage(settings.storage)
                apply_retention(store, self.storage, settings.keep_days, every=RETENTION_EVERY)
            except Exception as exc:
                log.warning("httpov: deleting jobs older than HTTPOV_KEEP_DAYS failed: %s", exc)

    def _drain(self) -> None:
        """Drain, told to by the heartbeat (`httpov nodes drain`): a SIGTERM to this worker, Celery's warm shutdown,
        as a service manager's stop does: the node stops consuming at once, the messages it took and has not started
        go back to the queue as they were (kombu restores unacked messages when its channel closes; no attempt
        counted, no lease), its running batches finish and are recorded done, and the worker exits 0. (The mark is
        read in the heartbeat's round trip: one round trip a node and second less than a read of its own.)"""
        if self.draining:
            return
        self.draining = True
        log.warning("httpov: told to drain: taking no new batch, finishing those running, then exiting")
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, worker):
        """The warm shutdown begins (a drain, or SIGTERM): the node marks itself draining (`httpov nodes`) and keeps
        its heartbeat and sweep while its running batches finish; they stop at exit (_stopped). Celery's cold
        shutdown calls no stop here: the sweep thread dies with the process."""
        if self.said is not None and not self.draining:
            self.draining = True
            store, node, _ = self.said
            with contextlib.suppress(Exception):  # Redis away: nothing to tell
                store.drain_node(node)

    def _stopped(self, **_: object) -> None:
        """Celery's worker_shutdown signal, after the warm shutdown waited for every running batch: the node says it
        stopped cleanly (its drain mark goes) and its sweep ends."""
        self.stopping.set()
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.thread is not None:
            self.thread.join(timeout=1.0)
        if self.said is not None:
            store, node, info = self.said
            try:
                store.node_stopped(node, info)
            except Exception as exc:
                log.warning("httpov: could not record that this node stopped: %s", exc)
