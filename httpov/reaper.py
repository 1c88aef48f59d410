"""Bringing back batches of lost render nodes: every worker sweeps for expired leases, so none is special."""
from __future__ import annotations

import logging
from typing import Callable

from celery import bootsteps

from httpov.jobs import JobStore

log = logging.getLogger(__name__)


def reap(store: JobStore, requeue: Callable[[str, list[str]], None], lease_seconds: float,
         max_attempts: int) -> list[tuple[str, str]]:
    """Requeue each running batch whose lease expired; a batch lost too often fails its job."""
    reissued = []
    for job_id in store.active_ids():
        for batch_id, info in store.lost_batches(job_id).items():
            # one sweeper wins per lost execution (its lease token), however many workers sweep at once
            if not store.claim(f"reissue:{job_id}:{batch_id}:{info.get('token', '')}", lease_seconds * 10):
                continue
            attempts = store.batches(job_id)["attempts"].get(batch_id, 0)
            if attempts >= max_attempts and not info.get("retrying") and not info.get("handed_back"):
                store.fail_batch(job_id, batch_id, f"render node lost {attempts} times (last: {info.get('node')})",
                                 [], final=True, node="reaper")
                continue
            if not store.reclaim(job_id, batch_id):
                continue  # a task (its retry, or a redelivery) took the batch while we looked
            requeue(job_id, [batch_id])
            reissued.append((job_id, batch_id))
            log.warning("httpov: batch %s of job %s lost its render node %s; requeued", batch_id, job_id,
                        info.get("node"))
    return reissued


class Reaper(bootsteps.StartStopStep):
    """A worker bootstep: every lease/4 seconds, say this node is alive and sweep from the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from httpov.client import Client
        from httpov.settings import Settings

        from httpov.app import make_app

        settings = Settings.from_env()
        client = Client(settings, make_app(settings))
        interval = max(1.0, client.settings.lease_seconds / 4)
        self.tref = worker.timer.call_repeatedly(interval, self._sweep, (client, worker.hostname), priority=10)

    def _sweep(self, client, node: str) -> None:
        try:
            client.reap(node)
        except Exception as exc:  # Redis down for a moment: the next sweep tries again
            log.warning("httpov: lease sweep failed: %s", exc)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
