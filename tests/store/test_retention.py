"""Retention and delete against forged job records (issue #25 item 4), on a real Redis and a real local storage
folder: a record naming another job's id, keys, frames or scene, a traversal, or no valid spec at all loses its
own keys and objects and nothing else. The S3 case runs from tests/integration/test_storage_contract.py."""
from __future__ import annotations

import json
import time
from pathlib import Path

from httpov import paths
from httpov.plan import JobSpec, radiosity_digest
from httpov.references import use_shared
from httpov.retention import NOT_VALID, apply_retention, delete_job
from httpov.storage.base import Storage
from httpov.storage.local import LocalStorage
from httpov.store import JobStore

LONG_AGO = 1000.0  # created and finished then: past any keep-days
VICTIM = "victim0001"
SCENE = paths.scene_key("a" * 64)


def spec(job_id: str, scene_key: str = SCENE, radiosity: str = "prepass") -> JobSpec:
    return JobSpec(id=job_id, name=f"job {job_id}", scene_key=scene_key, root="", pov="scene.pov", options={},
                   initial=1, final=1, first=1, last=1, width=8, height=8, count=1, slices=[(1, 4), (5, 8)],
                   radiosity=radiosity, batches=["f000001-000001-pre", "f000001-000001-r00001-00004",
                                                 "f000001-000001-r00005-00008"])


def victim(store: JobStore, storage: Storage) -> list[str]:
    """A recent done job with its scene, radiosity cache, batches and frames stored; answers its storage keys."""
    job = spec(VICTIM)
    store.create(job)
    store.publish(VICTIM)
    store.use_scene(SCENE, VICTIM)
    use_shared(store, job)
    store.r.hset(store.keys.job(VICTIM), mapping={"state": "done", "finished": str(time.time())})
    keys = [SCENE, paths.radiosity_key(radiosity_digest(job, 1)), paths.batch_key(VICTIM, job.batches[1], "ab12cd34"),
            paths.frame_key(VICTIM, "scene1.png"), paths.failed_log_key(VICTIM, job.batches[2])]
    for key in keys:
        storage.put_bytes(key, b"victim's " + key.encode())
    return keys


def forge(store: JobStore, job_id: str, spec_json: str, done: dict[str, str] | None = None) -> None:
    """A job record written straight into Redis, as anyone who can write to it could: done long ago."""
    store.r.hset(store.keys.job(job_id), mapping={"spec": spec_json, "state": "done", "created": str(LONG_AGO),
                                                  "finished": str(LONG_AGO)})
    if done:
        store.r.hset(store.keys.done(job_id), mapping=done)
    store.r.zadd(store.keys.jobs(), {job_id: LONG_AGO})


def forged_json(job_id: str, **fields: object) -> str:
    data = spec(job_id).to_dict()
    data.update(fields)
    return json.dumps(data)


def own_objects(storage: Storage, job_id: str) -> list[str]:
    keys = [paths.batch_key(job_id, "f000001-000001-r00001-00004", "0a0b0c0d"), paths.frame_key(job_id, "f1.png")]
    for key in keys:
        storage.put_bytes(key, b"forged job's own")
    return keys


def forge_every_kind(store: JobStore, storage: Storage) -> list[str]:
    """Forged records naming the victim's id, scene, frames and prefix, and traversals; answers the keys stored
    under the forged jobs' own prefixes."""
    own = []
    # names the victim as its own id, and the victim's scene as its scene
    forge(store, "forged-id", forged_json(VICTIM))
    own += own_objects(storage, "forged-id")
    # a scene key that is the victim's frame
    forge(store, "forged-scene", forged_json("forged-scene", scene_key=paths.frame_key(VICTIM, "scene1.png")))
    own += own_objects(storage, "forged-scene")
    # a done record whose result names another job's objects
    forge(store, "forged-done", forged_json("forged-done"),
          done={"f000001-000001-r00001-00004": json.dumps({"result": "../../victim0001/frames/scene1"})})
    own += own_objects(storage, "forged-done")
    # ids that would build another job's folders, or climb out of jobs/
    for job_id in (f"{VICTIM}/frames", f"{VICTIM}/batches", f"{VICTIM}:done"):
        forge(store, job_id, forged_json(job_id))
    return own


def victim_intact(store: JobStore, storage: Storage, keys: list[str]) -> None:
    for key in keys:
        assert storage.exists(key), f"{key} was deleted"
        assert storage.get_bytes(key) == b"victim's " + key.encode()
    assert store.spec(VICTIM).id == VICTIM and store.state(VICTIM) == "done"
    assert store.r.zscore(store.keys.jobs(), VICTIM) is not None
    assert store.r.sismember(store.keys.scene_refs(SCENE), VICTIM)


def check_forged_sweep(store: JobStore, storage: Storage) -> None:
    """The sweep over forged records, for any storage backend."""
    keys = victim(store, storage)
    own = forge_every_kind(store, storage)
    deleted = apply_retention(store, storage, keep_days=1)
    victim_intact(store, storage, keys)
    assert VICTIM not in deleted
    assert {"forged-id", "forged-done", "forged-scene", f"{VICTIM}/frames"} <= set(deleted)
    for key in own:
        assert not storage.exists(key), f"the forged job's own {key} is still stored"
    left = set(store.r.zrange(store.keys.jobs(), 0, -1))
    assert left == {VICTIM}, left
    assert not store.r.exists(store.keys.job("forged-id"), store.keys.job(f"{VICTIM}/frames"))


def test_the_sweep_deletes_only_the_forged_jobs_own_keys(store: JobStore, tmp_path: Path):
    check_forged_sweep(store, LocalStorage(tmp_path / "storage"))


def test_a_delete_of_a_forged_record_keeps_the_other_jobs_scene(store: JobStore, tmp_path: Path):
    """`httpov delete` of a record that names the victim: its shared scene loses no reference."""
    storage = LocalStorage(tmp_path / "storage")
    keys = victim(store, storage)
    forge(store, "forged-id", forged_json(VICTIM))
    gone = delete_job(store, storage, "forged-id")
    victim_intact(store, storage, keys)
    assert gone.name == NOT_VALID and not gone.scene_deleted
    assert not store.r.exists(store.keys.job("forged-id"))


def test_traversals_and_records_that_are_not_a_spec_are_swept_and_the_sweep_goes_on(store: JobStore,
                                                                                    tmp_path: Path):
    storage = LocalStorage(tmp_path / "storage")
    keys = victim(store, storage)
    forge(store, "forged-junk", "not json")
    forge(store, "forged-list", "[1, 2]")
    for job_id in ("..", f"../jobs/{VICTIM}", ""):
        forge(store, job_id, forged_json(job_id))
    forge(store, "forged-up", forged_json("forged-up", scene_key=f"scenes/../jobs/{VICTIM}/frames/scene1.png"))
    forge(store, "forged-prefix", forged_json("forged-prefix", scene_key=paths.job_prefix(VICTIM)))
    own = own_objects(storage, "forged-junk")
    store.r.hset(store.keys.job(VICTIM), "finished", str(LONG_AGO + 1))
    store.r.hset(store.keys.job("forged-junk"), "finished", "yesterday")  # not a time either: counted as long ago
    deleted = apply_retention(store, storage, keep_days=1)
    assert set(deleted) == {"forged-junk", "forged-list", "..", f"../jobs/{VICTIM}", "", "forged-up",
                            "forged-prefix", VICTIM}, \
        "one bad record does not stop the sweep"
    assert [key for key in own + keys if storage.exists(key)] == []


def test_a_valid_job_still_takes_its_shared_objects_with_it(store: JobStore, tmp_path: Path):
    """The checks refuse nothing httpov wrote: the last job of a scene deletes its scene and radiosity cache."""
    storage = LocalStorage(tmp_path / "storage")
    keys = victim(store, storage)
    store.r.hset(store.keys.job(VICTIM), "finished", str(LONG_AGO))
    assert apply_retention(store, storage, keep_days=1) == [VICTIM]
    assert not any(storage.exists(key) for key in keys)
    assert storage.list("") == []
