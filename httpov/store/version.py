"""The version of the Redis layout (Keys, records, scripts) a farm holds, and the steps that upgrade an older one.

The version is the string `<prefix>:schema`. The first release wrote none: a Redis holding httpov's keys and no
version holds version 1. Every node and client checks it when it opens the store (httpov.store.open_store): an
older version is upgraded by the first to meet it, under a lock, one step at a time, each step idempotent (a step
cut short is run again whole) and followed by the version it reached; a newer version than this httpov knows is
refused, before anything is written. A Redis with none of httpov's keys is left empty: the first job or heartbeat
records the version (JobStore.create, JobStore.heartbeat).

Bump VERSION only when the layout changes, with a step that moves the data; render nodes of the older release
keep working on the new layout for as long as a rolling restart takes only if the step keeps what they read.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis

from httpov.errors import SchemaVersionError
from httpov.store.keys import Keys

#: The layout this httpov reads and writes.
VERSION = 2
#: A Redis with httpov's keys and no version key holds the first release's layout.
UNVERSIONED = 1
#: How long an upgrader holds the lock at most (it is taken again by another if its holder dies), and how long the
#: others wait for it.
LOCK_SECONDS = 60.0


@dataclass(frozen=True)
class Step:
    """Takes a store from version `to - 1` to `to`; idempotent."""

    to: int
    what: str
    run: Callable[[redis.Redis, Keys], None]


def _layout_unchanged(r: redis.Redis, keys: Keys) -> None:
    """Version 2 spells every key and record as version 1 did: only the version is new."""


STEPS = [
    Step(2, "record the layout's version (the first release's layout is unchanged)", _layout_unchanged),
]


def stored_version(r: redis.Redis, keys: Keys) -> int | None:
    """The version this Redis holds: its version key, UNVERSIONED if it holds httpov's keys without one, None if
    it holds none of httpov's keys (a new farm)."""
    raw = r.get(keys.schema())
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            raise SchemaVersionError(f"{keys.schema()} holds {raw!r}, not a schema version") from None
    if r.exists(keys.jobs(), keys.active(), keys.nodes()):
        return UNVERSIONED
    for _ in r.scan_iter(match=keys.job("*"), count=1000):  # a first job still being submitted
        return UNVERSIONED
    return None


def check_newer(found: int | None) -> None:
    """SchemaVersionError if the Redis holds a newer layout than this httpov knows."""
    if found is not None and found > VERSION:
        raise SchemaVersionError(
            f"this Redis holds httpov's schema version {found}; this httpov knows versions up to {VERSION}",
            hint="upgrade httpov on this machine to the release the farm runs")


def ensure(r: redis.Redis, keys: Keys, steps: list[Step] | None = None, wait: float = LOCK_SECONDS) -> int | None:
    """Check the layout and upgrade an older one (see the module's docstring); answers the version now held (None
    for a Redis with none of httpov's keys). SchemaVersionError for a newer one, writing nothing."""
    steps = STEPS if steps is None else steps
    found = stored_version(r, keys)
    check_newer(found)
    if found is None or found == VERSION:
        return found
    lock = r.lock(keys.schema_lock(), timeout=LOCK_SECONDS, blocking_timeout=wait)
    if not lock.acquire():
        raise SchemaVersionError(f"another node has been upgrading the schema from version {found} to {VERSION} "
                                 f"for over {wait:.0f} s", hint="try again: its lock runs out by itself")
    try:
        found = stored_version(r, keys)  # someone may have upgraded it while we waited
        check_newer(found)
        current = UNVERSIONED if found is None else found
        for step in steps:
            if current < step.to <= VERSION:
                step.run(r, keys)
                r.set(keys.schema(), step.to)
                current = step.to
        return current
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:  # it ran out meanwhile: whoever holds it now redoes idempotent steps
            pass


def record(pipe: redis.client.Pipeline, keys: Keys) -> None:
    """Queue on a pipeline: the version of a Redis that had none of httpov's keys (a first write)."""
    pipe.set(keys.schema(), VERSION, nx=True)
