"""The re-split of a still's slowest running slice when a render process of this node idles and no batch waits
(issue #28 item 2; docs/PERFORMANCE.md "The re-split"): the slice with the most rows left ends at a block row halfway
through what it has left (its povray continues with +C up to it) and a new slice renders the rest."""
from __future__ import annotations

import logging

from celery import Celery

from httpov.dispatch import top_up
from httpov.errors import BadInputError
from httpov.plan import Batch, resplit_cut, split_batch_id
from httpov.store import JobStore
from httpov.text import shown

log = logging.getLogger(__name__)


def slowest_slice(running: dict, cuts: dict[str, int]) -> tuple[float, str, int] | None:
    """Of a job's running batches (id -> running info with its `progress`), the slice with the most rows left that
    may be split: (its rows left, its id, the row it would end at); None if none may (a pre-pass, a whole frame, one
    cut already, fewer than 2 block rows left past the one it renders)."""
    best: tuple[float, str, int] | None = None
    for batch_id, info in running.items():
        try:
            batch = Batch.from_id(batch_id)
        except BadInputError:
            continue
        if batch.rows is None or batch.prepass or batch_id in cuts or info.get("retrying") or info.get("handed_back"):
            continue
        progress = info.get("progress")
        done = float(progress) if isinstance(progress, (int, float)) else 0.0
        cut = resplit_cut(batch.rows, done)
        if cut is None:
            continue
        left = (1.0 - done) * (batch.rows[1] - batch.rows[0] + 1)
        if best is None or left > best[0]:
            best = (left, batch_id, cut)
    return best


def resplit_one(celery: Celery, store: JobStore, queue: str, lease_seconds: float, node: str,
                pools: list[str]) -> str | None:
    """Split the running slice with the most rows left among the live sliced jobs this node may render (their queue
    the default one or one of `pools`) whose batches have all started, and send the new slice; answers its id, or
    None if no slice was split. Called by the reaper while this node has an idle render process."""
    best: tuple[float, str, str, int] | None = None
    for job_id, (own, running, cuts) in store.resplit_candidates().items():
        if own and own.rpartition(".pool.")[2] not in pools:
            continue
        found = slowest_slice(running, cuts)
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], job_id, found[1], found[2])
    if best is None:
        return None
    _, job_id, batch_id, cut = best
    new_id = split_batch_id(batch_id, cut)
    said = store.resplit(job_id, batch_id, cut, new_id, node)
    if said != "ok":
        log.debug("httpov: no re-split of %s of job %s: %s", batch_id, job_id, said)
        return None
    log.info("httpov: re-split %s of job %s: it ends at row %d, %s renders the rest", Batch.from_id(batch_id).label,
             shown(job_id), cut, Batch.from_id(new_id).label)
    top_up(celery, store, job_id, queue, lease_seconds)
    return new_id
