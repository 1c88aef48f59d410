"""The one Celery task, render_batch; the work itself is in httpov.worker.batch."""
from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property

from celery import Task
from celery.signals import worker_before_create_process, worker_process_init
from celery.utils import worker_direct
from celery.utils.nodenames import anon_nodename
from celery.worker import state as worker_state

from httpov.broker import NextMessages, QueueLayout, RenderMessages, load_take_script
from httpov.celery import app
from httpov.dispatch import WindowCache, celery_priority, enqueue, settle_dependents, top_up
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings
from httpov.storage import open_storage
from httpov.store import open_store
from httpov.text import shown
from httpov.worker import waits
from httpov.worker.batch import Outcome, RenderNode, batch_log
from httpov.worker.cache import SceneCache

log = logging.getLogger(__name__)
#: Connections to Redis a render slot opens as it starts: its own calls, its lease keeper's refresh and stop
#: subscription, and its reads while povray runs.
WARM_CONNECTIONS = 4
#: ... at most, for a process of many slots (they are opened as they are needed past these)
MAX_WARM_CONNECTIONS = 32


class _Slot(threading.local):
    """What one render slot (a thread of Celery's threads pool, the default, or a prefork render process) keeps
    from batch to batch: its own RenderNode (a batch's state: its back-off, its povray start) and a thread for
    the Redis reads made while its batch renders."""
    node: RenderNode | None = None
    reader: ThreadPoolExecutor | None = None
    messages: NextMessages | None = None
    builder: RenderMessages | None = None


class NodeTask(Task):
    """A task that holds its render node: the parts a node's slots share (settings, Redis, storage, scene cache,
    what they know of jobs), built on first use and once a process, and a RenderNode of each slot's own over them
    (Celery makes one task instance per process; its slots are threads of it, or each a process)."""

    _slot = _Slot()
    _lock = threading.Lock()
    #: the render slots of this process: its threads pool's size (httpov.worker.pool sets it), 1 in prefork
    slots = 1
    #: the jobs' windows as this process last read them, for all its slots
    windows = WindowCache()
    #: whether a slot goes on with the queue's next messages after a batch (go_on): in the node's threads pool
    #: (httpov.worker.pool sets it), not in prefork, whose render processes Celery's time limits stop by the task
    goes_on = False

    @cached_property
    def _shared(self) -> RenderNode:
        """The node's shared parts, which each slot's RenderNode is made alike from (RenderNode.sibling)."""
        if logging.getLogger().getEffectiveLevel() == logging.WARNING:
            # a bare `celery -A httpov worker` logs at WARNING: its journal still says what it did, one line a
            # batch (an explicit --loglevel ERROR silences these too)
            batch_log.setLevel(logging.INFO)
        settings = Settings.from_env()

        def release(spec: JobSpec, batch_ids: list[str]) -> None:  # a finished pre-pass queues its slices:
            store.pend(spec.id, batch_ids)  # first on its pending list, sent as its window allows
            store.park_pending(spec.id)  # set aside at once if the job was paused meanwhile
            top_up(self.app, store, spec.id, settings.queue, settings.lease_seconds, spec,
                   user_cap=settings.user_max_processes or 0)
        store = open_store(settings)
        store.keep_listeners = self.slots  # a stop subscription kept for each slot's next batch
        return RenderNode(settings, store, open_storage(settings.storage),
                          SceneCache(settings.cache_dir, settings.cache_max_bytes, settings.archive_limits()), release)

    @property
    def node(self) -> RenderNode:
        """This slot's render node."""
        if self._slot.node is None:
            with self._lock:  # the slots of a node start together: the shared parts are built once
                shared = self._shared
            self._slot.node = shared.sibling()
        return self._slot.node

    def render(self, job_id: str, batch: str, token: str) -> Outcome:
        """Render one batch under lease token `token` (its message's task id), then top its job up and settle the
        jobs waiting for it; answers the outcome, whose retry or hand-back is for the caller to send."""
        node = self.node
        user_cap = node.settings.user_max_processes or 0
        # the job's window (fair share's reads, one round trip) is read while the batch renders, not after it,
        # unless the node read it lately; the record of the batch tops the job up with it in the same round trip
        known = self.windows.fresh(job_id)
        window: Future[int] | None = None if known is not None else self.reader.submit(
            self.windows.read, node.store, node.settings.lease_seconds, job_id, user_cap)

        def limit() -> int | None:
            if window is None:
                return known
            try:
                return window.result()
            except Exception:  # read again below
                return None
        outcome = node.run(job_id, batch, token=token, node=self.request.hostname or "local", window=limit)
        if outcome.status == "rendered":  # the job's next batch goes on the queue before this slot asks for one
            try:
                if outcome.sent is None:  # not topped up with the record
                    top_up(self.app, node.store, job_id, node.settings.queue, node.settings.lease_seconds,
                           node.spec(job_id), limit=limit(), user_cap=user_cap)
                elif outcome.sent[1]:
                    own, batch_ids = outcome.sent
                    if self.going_on:  # sent in the round trip of the slot's next take (go_on)
                        self._queue_up(node.spec(job_id), batch_ids, own or node.settings.queue)
                    else:
                        enqueue(self.app, node.spec(job_id), batch_ids, own or node.settings.queue)
            except Exception as exc:  # the batch is stored and recorded; the next sweep tops the job up instead
                log.warning("httpov: could not top up job %s after batch %s: %s", job_id, batch, exc)
        if outcome.status in ("rendered", "failed") and outcome.dependents:  # jobs waiting for this one's frames or
            # end go on at once (a recorded batch says whether any job waits for others)
            try:
                settle_dependents(self.app, node.store, node.settings.queue, node.settings.lease_seconds, of=job_id,
                                  user_cap=user_cap)
            except Exception as exc:  # the next sweep settles them
                log.warning("httpov: could not settle the jobs waiting for job %s: %s", job_id, exc)
        return outcome

    def go_on(self) -> int:
        """After a rendered batch, a render slot of the node's threads pool (`going_on`) takes the next messages of
        its node's queues itself (broker.NextMessages: the one Celery's consumer would take next, in one round trip)
        and renders them, for up to a lease (its own message is acked when it returns: should that take long, the
        stranded sweep finds its batch done and lets it go), while each is rendered, the node is not shutting down
        or draining, and Celery has no request waiting for a free slot (a retry whose back-off ended, a batch handed
        to this node); answers how many it took. A batch so taken skips what Celery's consumer, its acks and its
        task trace cost a message (docs/PERFORMANCE.md). The order is the queues', as the consumer's would be: a
        slot never goes before another job's messages. Anything else next on the queue (a countdown's, another
        task's) ends it: Celery's consumer takes it. Each take first queues what the last batch's top-up moved
        (_queue_up), in the same round trip; what is left to queue when the slot stops is sent then."""
        if not self.going_on:
            return 0
        try:
            return self._go_on(self.messages)
        finally:  # the last batch's top-up, unless a take sent it
            try:
                self.messages.send(self.node.store.r)
            except Exception as exc:  # the unsent sweep sends them (httpov.sweep.unsent)
                log.warning("httpov: could not queue the next batches: %s", exc)

    def _go_on(self, messages: NextMessages) -> int:
        until, taken = time.monotonic() + self.node.settings.lease_seconds, 0
        while time.monotonic() < until and worker_state.should_stop is None and worker_state.should_terminate is None:
            if len(worker_state.reserved_requests) > len(worker_state.active_requests):  # (active ones are reserved)
                return taken  # Celery holds a request for a free slot: this slot goes back to it
            try:
                found = messages.take(self.node.store.r)
            except Exception as exc:  # Redis away: Celery's consumer rides it out
                log.warning("httpov: could not take the next batch from the queue: %s", exc)
                return taken
            if found is None:
                return taken
            queue, message = found
            taken += 1
            try:
                outcome = self.render(message.job_id, message.batch_id, message.task_id)
            except Exception as exc:  # its lease runs out (or it was never taken) and a sweep sends it again
                log.warning("httpov: batch %s of job %s failed on this node: %s", message.batch_id, message.job_id,
                            shown(f"{type(exc).__name__}: {exc}"))
                return taken
            if outcome.send_to is not None or outcome.retry_in is not None:  # sent again as Celery's retry would:
                # under its task id, to the node named or back to the queue it came from
                kwargs = {"job_id": message.job_id, "batch": message.batch_id,
                          "label": Batch.from_id(message.batch_id).label}
                try:
                    self.apply_async(kwargs=kwargs, task_id=message.task_id, countdown=outcome.retry_in,
                                     queue=worker_direct(outcome.send_to) if outcome.send_to is not None else queue,
                                     priority=celery_priority(self.node.spec(message.job_id)))
                except Exception as exc:  # its hand-off lease runs out and the lease sweep sends it again
                    log.warning("httpov: could not send batch %s of job %s again: %s", message.batch_id,
                                message.job_id, exc)
            if outcome.status != "rendered":
                return taken
        return taken

    @property
    def going_on(self) -> bool:
        """Whether this slot goes on with its queues' next messages (go_on): in the threads pool (`goes_on`), and
        when the job state's Redis is the broker's (HTTPOV_STATE_URL unset), where those messages are."""
        return self.goes_on and self.node.settings.state_url == self.node.settings.broker_url

    @property
    def messages(self) -> NextMessages:
        """This slot's look at its node's queues (go_on)."""
        if self._slot.messages is None:
            self._slot.messages = NextMessages(QueueLayout.of(self.app), self.app.amqp.queues.consume_from or {},
                                               self.node.store.keys.take_mark)
        return self._slot.messages

    def _queue_up(self, spec: JobSpec, batch_ids: list[str], queue: str) -> None:
        """The job's batches topped up, to be sent with the slot's next take (NextMessages.pending): messages built
        as Celery's send_task builds them (broker.RenderMessages), about 1 ms of CPU a message less."""
        if self._slot.builder is None:
            self._slot.builder = RenderMessages(QueueLayout.of(self.app), anon_nodename(), self.app.thread_oid)
        priority = celery_priority(spec)
        self.messages.pending += [self._slot.builder.new(spec.id, batch_id, Batch.from_id(batch_id).label, queue,
                                                         priority) for batch_id in batch_ids]

    @property
    def reader(self) -> ThreadPoolExecutor:
        """A thread of this slot for Redis reads made while its batch renders."""
        if self._slot.reader is None:
            self._slot.reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="httpov read")
        return self._slot.reader


@app.task(name="httpov.render_batch", base=NodeTask, bind=True, max_retries=None)
def render_batch(self: NodeTask, job_id: str, batch: str, label: str = "") -> str:
    """Render one batch of a job (`label` only makes Flower readable: 'frames 1-5', 'frame 3 rows 1-32'); once it
    is rendered, the slot goes on with the next messages of the queue itself (NodeTask.go_on)."""
    outcome = self.render(job_id, batch, self.request.id)
    if outcome.send_to is not None:  # same task id: the new node takes over the hand-off lease left for it
        self.apply_async(kwargs={"job_id": job_id, "batch": batch, "label": label}, task_id=self.request.id,
                         queue=worker_direct(outcome.send_to), priority=celery_priority(self.node.spec(job_id)))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    said = f"{outcome.status}: {outcome.detail}" if outcome.detail else outcome.status
    more = self.go_on() if outcome.status == "rendered" else 0
    return f"{said}; then {more} more taken from the queue" if more else said


@worker_process_init.connect
def warm_up(**_: object) -> None:
    """Build the node's shared parts (settings, Redis connection, schema check, povray version) in the background
    as a render process starts (prefork), or as the node starts (its threads pool: httpov.worker.pool), not when
    the first batch arrives: on a slow link to Redis that is several round trips the first batch would wait for.
    (Not in the signal itself: Celery gives a starting process only a few seconds.) The node's check of its quick
    waits (httpov.worker.waits) starts here too. Each of the process's slots (NodeTask.slots) has WARM_CONNECTIONS
    opened for it, up to MAX_WARM_CONNECTIONS."""
    def build() -> None:
        with contextlib.suppress(Exception):  # Redis away: built at the first batch, which says why
            with NodeTask._lock:
                node = render_batch._shared
            _ = node.povray_version
            waits.library_for(node.settings)  # the node's check of its quick waits starts now
            node.store.warm_up(min(WARM_CONNECTIONS * NodeTask.slots, MAX_WARM_CONNECTIONS))
            if NodeTask.goes_on:  # its slots' takes (go_on) find their script loaded
                load_take_script(node.store.r)
    threading.Thread(target=build, name="httpov warm-up", daemon=True).start()


@worker_before_create_process.connect
def _share_with_render_processes(**_: object) -> None:
    """Just before the worker forks a render process: collect the parent's garbage, then move every object it holds
    to the collector's permanent generation (gc.freeze). A render process shares the parent's memory copy-on-write;
    without this, its first garbage collections walk (and so write to) every object inherited from the parent,
    copying the pages that hold them: about 15 MiB of private memory per idle render process
    (docs/PERFORMANCE.md, idle memory)."""
    gc.collect()
    gc.freeze()
