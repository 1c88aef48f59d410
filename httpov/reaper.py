"""Bringing back batches of lost render nodes: every worker sweeps for expired leases, so none is special."""
from __future__ import annotations

import base64
import json
import logging
import time
from typing import Callable

import redis
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
            attempts = store.attempts(job_id, batch_id)
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
    for job_id, batch_id in stranded(store, min_age=2 * lease_seconds):
        requeue(job_id, [batch_id])
        reissued.append((job_id, batch_id))
        log.warning("httpov: batch %s of job %s was taken by a worker that died before starting it; requeued",
                    batch_id, job_id)
    return reissued


def stranded(store: JobStore, min_age: float, limit: int = 100) -> list[tuple[str, str]]:
    """Batches whose message a worker took more than `min_age` seconds ago and never leased: it died in between.

    Redis keeps such a message in kombu's unacked table until the visibility timeout (hours). A sweeper that
    finds one whose batch is unattended takes it out of the table (one sweeper wins: the removal is atomic) and
    answers the batch, to be queued again; should the old message ever come back, it finds the batch done or busy.
    """
    table, index = f"{store.p}:kombu:unacked", f"{store.p}:kombu:unacked_index"
    tags = store.r.zrangebyscore(index, 0, time.time() - min_age, start=0, num=limit)
    found = []
    for tag in tags:
        raw = store.r.hget(table, tag)
        batch = _batch_of(raw) if raw else None
        if batch is None or not store.unattended(*batch):
            continue
        with store.r.pipeline() as pipe:
            try:
                pipe.watch(table)
                if pipe.hget(table, tag) != raw:
                    continue
                pipe.multi()
                pipe.zrem(index, tag)
                pipe.hdel(table, tag)
                pipe.execute()
            except redis.WatchError:
                continue  # another sweeper (or the worker's ack) got there first
        found.append(batch)
    return found


def _batch_of(raw: str) -> tuple[str, str] | None:
    """(job id, batch id) of an unacked render_batch message as kombu stores it, or None for anything else."""
    try:
        message = json.loads(raw)[0]
        if message.get("headers", {}).get("task") != "httpov.render_batch":
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return str(kwargs["job_id"]), str(kwargs["batch"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


class Reaper(bootsteps.StartStopStep):
    """A worker bootstep: every lease/4 seconds, say this node is alive and sweep from the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from httpov.app import make_app
        from httpov.client import Client
        from httpov.settings import Settings

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
