"""Deleting finished jobs: their Redis keys, stored results and logs, and their scene once no job uses it."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

from httpov import paths
from httpov.errors import BadInputError, JobNotFoundError, JobStateError
from httpov.plan import JobSpec
from httpov.references import drop_scene
from httpov.states import FINISHED, JobState, TransitionRefused
from httpov.storage import Storage
from httpov.store import JobStore

log = logging.getLogger(__name__)

#: A job being deleted: listed with this state until its keys are gone; `delete` run again finishes the work.
DELETING = JobState.DELETING
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


@dataclass
class Deleted:
    """What a delete removed (or, for a dry run, would remove)."""

    job_id: str
    name: str
    state: str
    finished: float | None
    objects: int = 0
    redis_keys: int = 0
    scene_deleted: bool = False


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' (a bare number is days) -> seconds."""
    match = _AGE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise BadInputError(f"--older-than {text!r}: give a positive age such as 30d, 12h, 90m or 2w")
    return float(match.group(1)) * _UNIT[match.group(2)]


def delete_job(store: JobStore, storage: Storage, job_id: str) -> Deleted:
    """Delete a finished job (done, failed, cancelled, or half deleted); see `delete_jobs`."""
    return delete_jobs(store, storage, [job_id])[0]


def delete_jobs(store: JobStore, storage: Storage, job_ids: list[str]) -> list[Deleted]:
    """Delete finished jobs (done, failed, cancelled, or half deleted). Each is first marked 'deleting', so a
    delete cut short can be run again; then go its stored batches, frames and logs and its scene if no other job
    uses it; then the Redis keys of them all (one scan of the prefix, however many jobs); and last anything a
    render node stored meanwhile (a node also removes what it stored for a job it finds gone). A live or paused
    job is JobStateError, before anything of it is touched: cancel it first (`httpov delete --force` does)."""
    done: list[Deleted] = []
    specs = []
    for job_id in job_ids:
        spec = store.spec(job_id)
        record = store.record(job_id)
        try:
            store.transition(job_id, DELETING)
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is {exc.current}: only a finished job is deleted",
                                hint=f"`httpov delete --force {job_id}` cancels it first") from exc
        finished = float(record["finished"]) if record.get("finished") else None
        gone = Deleted(job_id, spec.name, record["state"], finished)
        gone.objects = storage.delete_prefix(paths.job_prefix(job_id))
        gone.scene_deleted = drop_scene(store, storage, spec)
        done.append(gone)
        specs.append(spec)
    keys = store.drop_jobs(specs)
    for gone in done:
        gone.redis_keys = keys.get(gone.job_id, 0)
        gone.objects += storage.delete_prefix(paths.job_prefix(gone.job_id))
    return done


def expired(store: JobStore, older_than: float, states: tuple[str, ...] = FINISHED,
            now: float | None = None) -> list[Deleted]:
    """Jobs in one of `states` (finished ones only) that finished more than `older_than` seconds ago, oldest
    first. Jobs cut short in a delete are listed too."""
    live = set(states) - set(FINISHED) - {DELETING}
    if live:
        raise BadInputError(f"--state {','.join(sorted(live))}: only finished jobs are pruned "
                            f"({', '.join(FINISHED)}); cancel a live one first")
    cutoff = (time.time() if now is None else now) - older_than
    found = []
    for job_id in store.job_ids(created_before=cutoff):  # a job finishes after it is created
        try:
            record = store.record(job_id)
        except JobNotFoundError:  # deleted meanwhile
            continue
        finished = float(record.get("finished") or record.get("created") or 0)
        if record["state"] == DELETING or (record["state"] in states and finished <= cutoff):
            name = JobSpec.from_dict(json.loads(record["spec"])).name
            found.append(Deleted(job_id, name, record["state"], finished))
    return found


def prune(store: JobStore, storage: Storage, older_than: float, states: tuple[str, ...] = FINISHED,
          dry_run: bool = False) -> list[Deleted]:
    """Delete (or with `dry_run` only list) the finished jobs older than `older_than` seconds (see `expired`)."""
    found = expired(store, older_than, states)
    if dry_run:
        return found
    return delete_jobs(store, storage, [job.job_id for job in found])


def apply_retention(store: JobStore, storage: Storage, keep_days: float | None, every: float = 3600.0) -> list[str]:
    """HTTPOV_KEEP_DAYS on a render node's sweep: whoever sweeps first in each `every` seconds deletes the
    finished jobs older than that for the whole farm. Answers the ids deleted."""
    if not keep_days or not store.claim("sweep:retention", every):
        return []
    deleted = []
    for job in expired(store, keep_days * 86400.0):
        try:
            delete_job(store, storage, job.job_id)
        except (JobStateError, JobNotFoundError):
            continue  # retried, or deleted by someone else, meanwhile
        deleted.append(job.job_id)
        log.info("httpov: job %s deleted: finished more than %g days ago (HTTPOV_KEEP_DAYS)", job.job_id, keep_days)
    return deleted
