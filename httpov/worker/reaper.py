"""The worker's lease sweeper: every worker sweeps for expired leases (httpov.dispatch.sweep), so none is special."""
from __future__ import annotations

import logging

from celery import bootsteps

from httpov.dispatch import sweep
from httpov.jobs import JobStore, open_store
from httpov.settings import Settings

log = logging.getLogger(__name__)


class Reaper(bootsteps.StartStopStep):
    """A worker bootstep: every Settings.sweep_seconds, say this node is alive and sweep from the worker's timer,
    queueing through the worker's own Celery app."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        settings = Settings.from_env()
        store = open_store(settings)
        node = (worker.app, store, settings, worker.hostname, int(worker.concurrency or 0),
                self._pools(worker, settings))
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
               pools: list[str]) -> None:
        try:
            sweep(celery, store, settings.queue, settings.lease_seconds, settings.max_attempts,
                  settings.sweep_seconds, node, processes, pools)
        except Exception as exc:  # Redis down for a moment: the next sweep tries again
            log.warning("httpov: lease sweep failed: %s", exc)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
