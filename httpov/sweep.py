"""The lease sweep: batches of lost render nodes back on the queue (every worker and waiting client sweeps)."""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable

from httpov.store import JobStore

log = logging.getLogger(__name__)

#: How long the stranded sweep remembers that a lost task's batch was requeued: longer than Redis may keep the
#: task's message unacked (the visibility timeout: the task's time limit plus an hour, 7 h by default), even if
#: no render node sweeps for a while.
REQUEUED_MEMORY = 24 * 3600.0


def reap(store: JobStore, requeue: Callable[[str, list[str]], None], lease_seconds: float,
         max_attempts: int, every: float = 0.0) -> list[tuple[str, str]]:
    """Requeue each running batch whose lease expired (a batch lost too often fails its job), then, once per lease,
    settle the messages of workers that died holding them (see `stranded`). Whoever sweeps first in each `every`
    seconds does the lease sweep for the whole cluster: its cost does not grow with the number of render nodes."""
    reissued: list[tuple[str, str]] = []
    ours = not every or store.claim("sweep:leases", every * 0.8)
    for job_id in store.active_ids() if ours else []:
        for batch_id, info in store.lost_batches(job_id).items():
            token = info.get("token", "")
            # one sweeper wins per lost execution (its lease token), however many workers sweep at once
            if not store.claim(f"reissue:{job_id}:{batch_id}:{token}", lease_seconds * 10):
                continue
            attempts = store.attempts(job_id, batch_id)
            if attempts >= max_attempts and not info.get("retrying") and not info.get("handed_back"):
                store.fail_batch(job_id, batch_id, f"render node lost {attempts} times (last: {info.get('node')})",
                                 [], final=True, node="reaper")
                continue
            # before the running entry goes: the lost task's message, still in kombu's unacked table, is then
            # never taken for a stranded one and queued a second time
            store.mark_requeued(job_id, batch_id, task_of(token), REQUEUED_MEMORY)
            if not store.reclaim(job_id, batch_id):
                continue  # a task (its retry, or a redelivery) took the batch while we looked
            requeue(job_id, [batch_id])
            store.count_requeue(job_id, batch_id)
            reissued.append((job_id, batch_id))
            log.warning("httpov: batch %s of job %s lost its render node %s; requeued", batch_id, job_id,
                        info.get("node"))
    if store.claim("sweep:stranded", lease_seconds):
        for job_id, batch_id in stranded(store, min_age=2 * lease_seconds):
            requeue(job_id, [batch_id])
            store.count_requeue(job_id, batch_id)
            reissued.append((job_id, batch_id))
            log.warning("httpov: batch %s of job %s was taken by a worker that died before starting it; requeued",
                        batch_id, job_id)
    return reissued


def task_of(token: str) -> str:
    """The Celery task id in a lease token: '<task id>/<execution>' or a hand-off 'retry:<task id>'."""
    return token.removeprefix("retry:").split("/")[0]


def stranded(store: JobStore, min_age: float, chunk: int = 500) -> list[tuple[str, str]]:
    """Batches whose message a worker took more than `min_age` seconds ago and never leased: it died in between.

    Redis keeps such a message in kombu's unacked table until the visibility timeout (hours). Each one old enough
    is looked at (JobStore.stranded_fates): a message whose batch nothing else will render is taken out of the table
    and its batch answered, to be queued again; one of a finished or vanished job, of a done batch, or of a batch
    the lease sweep already requeued is taken out and forgotten; one of a paused job is parked. Removal is atomic,
    so one sweeper wins; should an old message ever come back, it finds the batch done or busy.
    """
    table, index = f"{store.p}:kombu:unacked", f"{store.p}:kombu:unacked_index"
    taken = store.r.zrangebyscore(index, 0, time.time() - min_age, withscores=True)
    found = []
    for start in range(0, len(taken), chunk):
        part = taken[start:start + chunk]
        messages = []
        for (tag, at), raw in zip(part, store.r.hmget(table, [tag for tag, _ in part])):
            batch = _batch_of(raw) if raw else None
            if batch is not None:
                messages.append((tag, (*batch, at)))
        fates = store.stranded_fates([message for _, message in messages])
        for (tag, (job_id, batch_id, _, _)), fate in zip(messages, fates):
            if fate == "keep" or not _take(store, table, index, tag):
                continue
            if fate == "park":
                store.park(job_id, batch_id)
            elif fate == "requeue":
                found.append((job_id, batch_id))
    return found


def unsent(store: JobStore, lists: list[str], min_age: float) -> list[tuple[str, str]]:
    """Batches in a live job's window for more than `min_age` seconds that nothing will render: not running, not
    done, not parked, and no message of theirs waits in the queues' Redis `lists` (kombu's, one per priority level,
    named without the key prefix) or in kombu's unacked table.
    That is a top-up whose sender died between taking the batches (JobStore.top_up) and sending them; each such
    batch is moved to the front of its window's clock so that it is answered once, and returned to be sent.
    A message read while a worker moves it from its list to the unacked table may be missed: the batch is then sent
    twice, which is harmless (the second delivery finds it busy or done)."""
    candidates: list[tuple[str, str]] = []
    for job_id in store.active_ids():
        candidates += [(job_id, batch_id) for batch_id in store.idle_in_window(job_id, min_age)]
    if not candidates:
        return []
    pipe = store.r.pipeline()
    for name in lists:
        pipe.lrange(f"{store.p}:kombu:{name}", 0, -1)
    pipe.hvals(f"{store.p}:kombu:unacked")
    seen = {batch[:2] for messages in pipe.execute() for batch in map(_batch_of, messages) if batch is not None}
    lost = [c for c in candidates if c not in seen]
    for job_id, batch_id in lost:
        store.touch_window(job_id, batch_id)
    return lost


def take_queued(store: JobStore, lists: list[str], job_id: str, most: int | None = None) -> list[str]:
    """Take the job's messages waiting in a queue's Redis lists (kombu's, one per priority level, named without
    the key prefix) out of Redis, the last queued first (at most `most` batches); answers their batches. A message a
    worker takes meanwhile stays with it; each batch is answered once, however many messages it had."""
    taken: list[str] = []
    for key in (f"{store.p}:kombu:{name}" for name in lists):
        for raw in store.r.lrange(key, 0, -1):  # kombu pushes on the left and pops on the right
            if most is not None and len(taken) >= most:
                return taken
            batch = _batch_of(raw)
            if batch is not None and batch[0] == job_id and store.r.lrem(key, 1, raw):
                if batch[1] not in taken:
                    taken.append(batch[1])
    return taken


def _take(store: JobStore, table: str, index: str, tag: str) -> bool:
    """Remove one message from kombu's unacked table; False if it was gone (acked, or another sweeper took it)."""
    return bool(store.r.pipeline().zrem(index, tag).hdel(table, tag).execute()[1])


def _batch_of(raw: str) -> tuple[str, str, str] | None:
    """(job id, batch id, task id) of a render_batch message as kombu stores it (queued, or in its unacked table),
    or None for anything else."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # kombu's unacked table holds [message, exchange, routing key]
            message = message[0]
        if message.get("headers", {}).get("task") != "httpov.render_batch":
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return str(kwargs["job_id"]), str(kwargs["batch"]), str(message["headers"].get("id", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
