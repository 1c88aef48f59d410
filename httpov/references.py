"""Stored objects that jobs share (a scene's zip, the radiosity caches of its pre-passes) and each job's reference to
them: taken at submit, dropped at delete, the object deleted with its last reference."""
from __future__ import annotations

import functools

from httpov import paths
from httpov.plan import JobSpec, radiosity_digest
from httpov.storage import Storage
from httpov.store import JobStore


def shared_keys(spec: JobSpec) -> list[str]:
    """The stored objects a job shares with other jobs: its scene zip, and the radiosity caches its pre-passes
    store (content-addressed by scene, options, size and frame)."""
    keys = [spec.scene_key] if spec.scene_key else []
    if spec.radiosity != "off":
        frames = [spec.first] if spec.radiosity == "shared" else range(spec.first, spec.last + 1)
        keys += sorted({paths.radiosity_key(radiosity_digest(spec, frame)) for frame in frames})
    return keys


def use_shared(store: JobStore, spec: JobSpec) -> None:
    """Take the job's references to its radiosity caches (its scene's is taken before its zip is stored)."""
    for key in shared_keys(spec)[1:]:
        store.use_scene(key, spec.id)


def _uses(key: str, spec: JobSpec) -> bool:
    return key in shared_keys(spec)


def drop_scene(store: JobStore, storage: Storage, spec: JobSpec) -> bool:
    """Let go of the job's scene and radiosity caches, deleting each that no other job uses; True if the scene zip
    was deleted.

    Reference counting, not mark and sweep: a Redis set of the job ids using each scene, changed atomically with
    a 'being deleted' mark, makes a delete cost one scene's references instead of a scan of every job and every
    stored scene, and a submit of the same scene at the same moment waits for the mark instead of trusting a zip
    about to vanish (httpov/store/scripts: use_scene.lua, drop_scene.lua). Only keys shaped as shared objects are
    ever deleted here (paths.is_shared); the caller has checked the spec (plan.check_record)."""
    deleted = []
    for key in shared_keys(spec):
        if not paths.is_shared(key):  # the caller checked the record (plan.check_record): a second guard
            continue
        if not store.drop_scene(key, spec.id, uses=functools.partial(_uses, key)):
            continue
        try:
            if paths.RADIOSITY_KEY.match(key):
                store.forget_cache(key)
            storage.delete(key)
        finally:
            store.scene_deleted(key)
        deleted.append(key)
    return spec.scene_key in deleted
