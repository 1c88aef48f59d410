"""The re-split of a still's slowest running slice when a render process of this node idles and no batch waits
(issue #28 item 2; docs/PERFORMANCE.md "The re-split"): the slice with the most rows left ends at a block row halfway
through what it has left (its povray continues with +C up to it) and a new slice renders the rest."""
from __future__ import annotations

import logging

from celery import Celery

from httpov.dispatch import top_up, windows
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
                pools: list[str], user_cap: int = 0) -> str | None:
    """Split the running slice with the most rows left among the live sliced jobs this node may render (their queue
    the default one or one of `pools`) whose batches have all started and whose window (their share of the farm,
    their user's cap: `user_cap` as for httpov.dispatch.windows) has room for one more, and send the new slice within
    that window; answers its id, or None if no slice was split. The reaper calls it through dispatch.sweep while this
    node has an idle render process and has won its pools' claim (sweep.resplit_claim)."""
    found = []
    for job_id, (own, running, cuts) in store.resplit_candidates().items():
        if own and own.rpartition(".pool.")[2] not in pools:
            continue
        slowest = slowest_slice(running, cuts)
        if slowest is not None:
            found.append((slowest[0], job_id, slowest[1], slowest[2]))
    if not found:
        return None
    room = windows(store, lease_seconds, user_cap=user_cap)  # a job at its share (or its user's cap) is not split
    for _, job_id, batch_id, cut in sorted(found, reverse=True):
        new_id = split_batch_id(batch_id, cut)
        said = store.resplit(job_id, batch_id, cut, new_id, node, room.get(job_id, 0))
        if said != "ok":
            log.debug("httpov: no re-split of %s of job %s: %s", batch_id, job_id, said)
            continue
        log.info("httpov: re-split %s of job %s: it ends at row %d, %s renders the rest",
                 Batch.from_id(batch_id).label, shown(job_id), cut, Batch.from_id(new_id).label)
        top_up(celery, store, job_id, queue, lease_seconds, limit=room[job_id])
        return new_id
    return None
