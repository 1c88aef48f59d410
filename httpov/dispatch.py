"""Putting batches on the queue: a job's first send, a retry's, and the lease sweep's requeue of lost ones."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from httpov.jobs import JobStore
from httpov.plan import Batch, JobSpec
from httpov.sweep import reap, take_queued

if TYPE_CHECKING:
    from celery import Celery

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


def sweep(celery: Celery, store: JobStore, queue: str, lease_seconds: float, max_attempts: int, every: float,
          node: str | None = None, info: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Requeue batches whose render node is gone; a render node passes its name (and its record, `httpov nodes`),
    which also tells the others it is alive. Used by the worker's reaper (with the worker's own app) and by
    waiting clients."""
    if node:
        store.heartbeat(node, info)

    def requeue(job_id: str, batch_ids: list[str]) -> None:
        enqueue(celery, store.spec(job_id), batch_ids, queue, requeued=True)  # ahead of the job's others
    return reap(store, requeue, lease_seconds, max_attempts, every=every)


def reprioritize(celery: Celery, store: JobStore, job_id: str, queue: str, priority: int) -> int:
    """Give a live or paused job a new priority: its waiting messages are taken off the queue and sent again at
    that priority (set-aside batches of a paused job go at it on resume); answers how many batches moved."""
    spec = store.set_priority(job_id, priority)
    options = celery.conf.broker_transport_options or {}
    sep, steps = options.get("sep", "\x06\x16"), options.get("priority_steps", [0, 3, 6, 9])
    lists = [f"{queue}{sep}{step}" if step else queue for step in steps]  # kombu's list of each priority level
    return enqueue(celery, spec, take_queued(store, lists, job_id), queue)
