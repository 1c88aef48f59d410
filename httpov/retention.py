"""Deleting finished jobs: their Redis keys, stored results and logs, and their scene once no job uses it."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

from httpov import paths
from httpov.errors import BadInputError, JobNotFoundError, JobStateError, SceneError
from httpov.plan import JobSpec, check_record
from httpov.references import drop_scene
from httpov.states import FINISHED, JobState, TransitionRefused
from httpov.storage import Storage
from httpov.store import JobStore
from httpov.text import shown

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
    job is JobStateError, before anything of it is touched: cancel it first (`httpov delete --force` does).

    Nothing a record names is deleted on its word: in storage only the keys under the job's own prefix, built from
    its id (paths.job_prefix), and its shared objects (scene, radiosity caches) only through their references, and
    only when its record passes the checks a render node makes before rendering (plan.check_record). A record that
    fails them (forged, or corrupt) loses its own keys and objects all the same; the shared objects it names are
    left alone (their reference to it stays: the object is kept, not lost)."""
    done: list[Deleted] = []
    histories: dict[str, str] = {}
    for job_id in job_ids:
        record = store.record(job_id)
        spec, why = _trusted(store, job_id)
        try:
            store.transition(job_id, DELETING)
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is {exc.current}: only a finished job is deleted",
                                hint=f"`httpov delete --force {job_id}` cancels it first") from exc
        gone = Deleted(job_id, spec.name if spec else NOT_VALID, str(record.get("state", "")),
                       _seconds(record.get("finished")))
        gone.objects = _delete_own(storage, job_id)
        if spec is None:
            log.warning("httpov: job %s: its record is not one httpov wrote (%s): only its own keys and stored "
                        "objects are deleted, nothing it names", shown(str(job_id)), shown(why))
        else:
            gone.scene_deleted = drop_scene(store, storage, spec)
            histories[job_id] = spec.history
        done.append(gone)
    keys = store.drop_jobs([gone.job_id for gone in done], histories)
    for gone in done:
        gone.redis_keys = keys.get(gone.job_id, 0)
        gone.objects += _delete_own(storage, gone.job_id)
    return done


#: The name listed for a job whose record is not one httpov wrote.
NOT_VALID = "(not a valid job record)"


def _trusted(store: JobStore, job_id: str) -> tuple[JobSpec | None, str]:
    """The job's spec if its record passes a render node's checks (plan.check_record), else None and why."""
    try:
        return check_record(job_id, store.spec(job_id)), ""
    except (SceneError, BadInputError, ValueError) as exc:  # ValueError: not JSON
        return None, str(exc)


def _delete_own(storage: Storage, job_id: str) -> int:
    """Delete the objects under the job's own prefix; none for an id that is not a job id (it has no prefix: a
    forged 'other/frames' must not become 'jobs/other/frames/')."""
    try:
        prefix = paths.job_prefix(job_id)
    except ValueError:
        return 0
    keys = [key for key in storage.list(prefix) if paths.is_own(job_id, key)]
    for key in keys:
        storage.delete(key)
    return len(keys)


def _seconds(value: object) -> float | None:
    try:
        return float(value) if value else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


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
        finished = _seconds(record.get("finished")) or _seconds(record.get("created")) or 0.0
        state = str(record.get("state", ""))
        if state == DELETING or (state in states and finished <= cutoff):
            try:  # a record that is not valid is listed (and deleted) all the same: it lasts no longer than others
                name = JobSpec.from_dict(json.loads(record["spec"])).name
            except (KeyError, ValueError, SceneError):
                name = NOT_VALID
            found.append(Deleted(job_id, name, state, finished))
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
