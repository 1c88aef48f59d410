"""The render node's threads pool (HTTPOV_RENDER_POOL=threads): Celery's own, whose cold shutdown ends the node."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import time

from celery.concurrency.thread import TaskPool as CeleryThreads
from celery.worker import state

log = logging.getLogger(__name__)


class ThreadPool(CeleryThreads):
    """Celery's threads pool. A thread cannot be stopped from outside, so Celery's cold shutdown (SIGQUIT, a second
    Ctrl+C), which stops each running task and then the pool, would wait for every running batch to end (and says
    NotImplementedError first). Here it ends the node at once instead, as a killed node does: its povrays die with
    it (bubblewrap's --die-with-parent), and their batches' leases run out for other nodes to render them, as the
    batches of a prefork pool's killed render processes do."""

    def on_start(self) -> None:
        """The node's render slots are this process's threads: they share its Redis connections and kept stop
        subscriptions (NodeTask.slots), built now rather than at the first batch (warm_up), and its open files,
        about ten a slot, where a systemd service starts with a soft limit of 1024: raised to the hard limit."""
        from httpov.worker.tasks import NodeTask, warm_up  # (a prefork render process warms up as it starts)

        super().on_start()
        NodeTask.slots = self.limit
        NodeTask.goes_on = True  # a slot goes on with the queue's next messages (its time is not Celery's to limit)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        warm_up()

    def on_stop(self) -> None:
        """Stop taking batches; wait for those running (a warm shutdown), unless a cold one is asked meanwhile, and
        no longer than the node's hard time limit and a minute: by then each batch that still runs (a slot stuck
        outside povray, which no thread can stop) has let its lease go (httpov.worker.lease), as prefork's hard
        limit killed its render process."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        give_up = time.monotonic() + (self.app.conf.task_time_limit or 0) + 60 if self.app is not None else math.inf
        for thread in list(self.executor._threads):
            while thread.is_alive():
                if state.should_terminate is not None or time.monotonic() > give_up:  # the cold shutdown (Celery
                    # sets it, then stops the pool), or a slot that never ends
                    log.warning("httpov: the node stops without waiting for its running batches: other nodes render "
                                "them once their leases run out")
                    os._exit(1)  # (the log's handler flushed the line; logging.shutdown could wait on a lock here)
                thread.join(0.5)
        super(CeleryThreads, self).on_stop()

    def terminate_job(self, pid: int, signal: int | None = None) -> None:
        """Asked for each running task by a cold shutdown (on_stop then ends the node), or by a revoke with
        terminate: a batch cannot be stopped alone here (`httpov cancel` stops a job's batches)."""
        log.info("httpov: a running batch cannot be stopped alone in a node whose render slots are threads")
