"""The one Celery task, render_batch, and the function that queues it; the work itself is in httpov.node."""
from __future__ import annotations

from typing import Callable, Iterable

from celery import Celery

from httpov.app import app
from httpov.plan import Batch, JobSpec

_node = None
#: Messages sent per Redis round trip (kombu pipelines the LPUSHes and task-sent events of one batch).
PUBLISH_BATCH = 500


def render_node():  # -> RenderNode, built once per worker process from the environment
    """The render node of this process (settings, Redis, storage and scene cache), built on first use."""
    global _node
    if _node is None:
        from httpov.cache import SceneCache
        from httpov.jobs import JobStore
        from httpov.node import RenderNode
        from httpov.settings import Settings
        from httpov.storage import open_storage

        settings = Settings.from_env()
        _node = RenderNode(settings, JobStore.connect(settings.state_url, settings.prefix, settings.redis_ca),
                           open_storage(settings.storage),
                           SceneCache(settings.cache_dir, settings.cache_max_bytes, settings.archive_limits()))
    return _node


@app.task(name="httpov.render_batch", bind=True, max_retries=None)
def render_batch(self, job_id: str, batch: str, label: str = "") -> str:
    """Render one batch of a job (`label` only makes Flower readable: 'frames 1-5', 'frame 3 rows 1-32')."""
    node = render_node()
    outcome = node.run(job_id, batch, token=self.request.id, node=self.request.hostname or "local")
    if outcome.send_to is not None:  # same task id: the new node takes over the hand-off lease left for it
        self.apply_async(kwargs={"job_id": job_id, "batch": batch, "label": label}, task_id=self.request.id,
                         queue=node_queue(node.settings.queue, outcome.send_to),
                         priority=celery_priority(node.spec(job_id)))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return f"{outcome.status}: {outcome.detail}" if outcome.detail else outcome.status


def node_queue(queue: str, node: str) -> str:
    """The queue only render node `node` (its Celery hostname) consumes, besides the shared one."""
    return f"{queue}.node.{node}"


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
