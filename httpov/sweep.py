"""The lease sweep: batches of lost render nodes back on the queue (every worker and waiting client sweeps)."""
from __future__ import annotations

import logging
from collections.abc import Callable

from httpov.broker import QueueLayout, held_messages, queued_or_held, release
from httpov.store import JobStore

log = logging.getLogger(__name__)

#: How long the stranded sweep remembers that a lost task's batch was requeued: longer than Redis may keep the
#: task's message unacked (the visibility timeout: the task's time limit plus an hour, 7 h by default), even if
#: no render node sweeps for a while.
REQUEUED_MEMORY = 24 * 3600.0
#: A render node not seen for this long is dropped from `httpov nodes` (it shows as lost until then, for an hour).
NODES_FORGOTTEN = 86400.0
#: One render node a minute forgets the nodes not seen for NODES_FORGOTTEN (the sweep:nodes claim).
NODES_CLAIM = 60.0


def resplit_claim(pools: list[str]) -> str:
    """The claim one of the render nodes with an idle process that consume the same pools wins each sweep period to
    look for a running slice to re-split (httpov.worker.resplit): the look reads every live job's running batches and
    cuts, four commands a job, which every idle node doing it every second would make most of Redis's work on a farm
    of thousands of processes at the tail of its jobs (scripts/bench_resplit_look.py)."""
    return "sweep:resplit:" + ",".join(sorted(pools))


def reap(store: JobStore, layout: QueueLayout, requeue: Callable[[str, list[str]], None], lease_seconds: float,
         max_attempts: int, every: float = 0.0, won: set[str] | None = None) -> list[tuple[str, str]]:
    """Requeue each running batch whose lease expired (a batch lost too often fails its job), then, once per lease,
    settle the messages of workers that died holding them (see `stranded`; `layout`: where kombu keeps them).
    Whoever sweeps first in each `every` seconds does the lease sweep for the whole cluster: its cost does not grow
    with the number of render nodes. `won`: the claims this sweeper already tried (see `claims`), if it did."""

    def claim(name: str, seconds: float) -> bool:
        return name in won if won is not None else store.claim(name, seconds)
    reissued: list[tuple[str, str]] = []
    ours = not every or claim("sweep:leases", every * 0.8)
    for job_id in store.active_ids() if ours else []:
        for batch_id, info in store.lost_batches(job_id).items():
            token = info.get("token", "")
            # one sweeper wins per lost execution (its lease token), however many workers sweep at once
            if not store.claim(f"reissue:{job_id}:{batch_id}:{token}", lease_seconds * 10):
                continue
            attempts = store.attempts(job_id, batch_id)
            if attempts >= max_attempts and not info.get("retrying") and not info.get("handed_back"):
                store.fail_batch(job_id, batch_id, f"render node lost {attempts} times (last: {info.get('node')})",
                                 [], final=True, node="reaper", reason="node_lost")
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
    if claim("sweep:stranded", lease_seconds):
        for job_id, batch_id in stranded(store, layout, min_age=2 * lease_seconds):
            requeue(job_id, [batch_id])
            store.count_requeue(job_id, batch_id)
            reissued.append((job_id, batch_id))
            log.warning("httpov: batch %s of job %s was taken by a worker that died before starting it; requeued",
                        batch_id, job_id)
    return reissued


def claims(lease_seconds: float, every: float) -> dict[str, float]:
    """The claims one sweep may win (name -> seconds), which a render node tries with its heartbeat in one round trip
    (JobStore.heartbeat) and passes to `reap` and dispatch.sweep as `won`."""
    return {"sweep:leases": every * 0.8, "sweep:stranded": lease_seconds, "sweep:top-up": every * 0.8,
            "sweep:unsent": lease_seconds, "sweep:dependents": every * 0.8, "sweep:nodes": NODES_CLAIM}


def task_of(token: str) -> str:
    """The Celery task id in a lease token: '<task id>/<execution>' or a hand-off 'retry:<task id>'."""
    return token.removeprefix("retry:").split("/")[0]


def stranded(store: JobStore, layout: QueueLayout, min_age: float, chunk: int = 500) -> list[tuple[str, str]]:
    """Batches whose message a worker took at least `min_age` seconds ago and never leased: it died in between.

    Redis keeps such a message in kombu's unacked table until the visibility timeout (hours). Its age is counted by
    Redis's own clock from when a sweep first saw it there (JobStore.held_since), never by comparing this machine's
    clock with the taking worker's (another machine's, whose stamp a slow link delays too). Each one old enough is
    looked at (JobStore.stranded_fates): a message whose batch nothing else will render is taken out of the table
    and its batch answered, to be queued again; one of a finished or vanished job, of a done batch, or of a batch
    the lease sweep already requeued is taken out and forgotten; one of a paused job is parked. Removal is atomic,
    so one sweeper wins; should an old message ever come back, it finds the batch done or busy.
    """
    found = []
    tags = store.held_since(layout.unacked_index, min_age)
    for start in range(0, len(tags), chunk):
        held = held_messages(store.r, layout, tags[start:start + chunk])
        fates = store.stranded_fates([(*one.message, one.taken) for one in held])
        for one, fate in zip(held, fates):
            if fate == "keep" or not release(store.r, layout, one.tag):
                continue
            job_id, batch_id = one.message.job_id, one.message.batch_id
            if fate == "park":
                store.park(job_id, batch_id)
            elif fate == "requeue":
                found.append((job_id, batch_id))
    return found


def unsent(store: JobStore, layout: QueueLayout, queues: list[str], min_age: float,
           confirm: float) -> list[tuple[str, str]]:
    """Batches in a live job's window for `min_age` seconds or more (Redis's clock) that nothing will render: not
    running, not done, not parked, and no message of theirs waits in the `queues` or in kombu's unacked table
    (broker.queued_or_held) at two looks at least `confirm` seconds apart (Redis's clock, JobStore.unsent).
    That is a top-up whose sender died between taking the batches (JobStore.top_up) and sending them; each such
    batch is stamped as sent now, so that it is answered once, and returned to be sent.
    A message is out of sight for a moment while a worker moves it from its list to the unacked table (a round trip
    or more on a slow link), and a batch found idle may start and end before its messages are looked for: one look
    could take it for unsent, two looks apart with the batch idle at the verdict do not."""
    idle = {job_id: found for job_id in store.active_ids() if (found := store.idle_in_window(job_id, min_age))}
    if not idle:
        return []
    seen = queued_or_held(store.r, layout, queues)
    lost: list[tuple[str, str]] = []
    for job_id, batch_ids in idle.items():
        verdict = store.unsent(job_id, {batch_id: (job_id, batch_id) in seen for batch_id in batch_ids}, confirm,
                               forget=min_age + 4 * confirm)
        lost += [(job_id, batch_id) for batch_id in verdict]
    return lost
