"""The worker's lease sweeper: every worker sweeps for expired leases (httpov.dispatch.sweep), so none is special."""
from __future__ import annotations

import logging
import os
import socket
import time

from celery import bootsteps

from httpov.dispatch import sweep
from httpov.retention import apply_retention
from httpov.settings import Settings
from httpov.storage import Storage, open_storage
from httpov.store import JobStore, open_store
from httpov.worker import povray, room

log = logging.getLogger(__name__)

#: A render node not seen for this long is dropped from `httpov nodes` (it shows as lost until then, for an hour).
NODES_FORGOTTEN = 86400.0
#: Seconds between two retention sweeps of the farm (HTTPOV_KEEP_DAYS): one node does each.
RETENTION_EVERY = 600.0


class Reaper(bootsteps.StartStopStep):
    """A worker bootstep: every Settings.sweep_seconds, say this node is alive and sweep from the worker's timer,
    queueing through the worker's own Celery app."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None
        self.storage: Storage | None = None

    def start(self, worker):
        settings = Settings.from_env()
        store = open_store(settings)
        info = {"host": socket.gethostname(), "processes": worker.concurrency, "cores": os.cpu_count(),
                "povray": povray.version(settings.povray), "httpov": povray.httpov_version(), "started": time.time()}
        node = (worker.app, store, settings, worker.hostname, int(worker.concurrency or 0),
                self._pools(worker, settings), info)
        self.tref = worker.timer.call_repeatedly(settings.sweep_seconds, self._sweep, node, priority=10)

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
        try:
            sweep(celery, store, settings.queue, settings.lease_seconds, settings.max_attempts,
                  settings.sweep_seconds, node, processes, pools, info, user_cap=settings.user_max_processes or 0)
            if store.claim("sweep:nodes", 60.0):
                store.forget_nodes(NODES_FORGOTTEN)
        except Exception as exc:  # Redis down for a moment: the next sweep tries again
            log.warning("httpov: lease sweep failed: %s", exc)
        if settings.keep_days:
            try:
                if self.storage is None:
                    self.storage = open_storage(settings.storage)
                apply_retention(store, self.storage, settings.keep_days, every=RETENTION_EVERY)
            except Exception as exc:
                log.warning("httpov: deleting jobs older than HTTPOV_KEEP_DAYS failed: %s", exc)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
