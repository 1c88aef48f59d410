"""Stored scenes and results take the umask's mode, so the users of a shared folder can read each other's results."""
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from httpov.storage.local import LocalStorage
from tests.conftest import TINY_ANIMATION, write_scene


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for the test (workers started meanwhile inherit it); the old one comes back after."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_put_file_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 10)
    storage = LocalStorage(tmp_path / "store")
    storage.put_file("jobs/j/batches/b.zip", source)
    storage.get_file("jobs/j/batches/b.zip", tmp_path / "back.bin")
    assert oct(_mode(tmp_path / "store/jobs/j/batches/b.zip")) == oct(expected)
    assert oct(_mode(tmp_path / "back.bin")) == oct(expected)


def test_scene_and_batch_zips_of_a_job_are_group_readable_under_umask_002(tmp_path, settings, client, workers, umask):
    umask(0o002)  # a shared folder's usual umask: group members read and write each other's files
    sub = client.submit(write_scene(tmp_path / "m", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF2\n"), count=1)
    workers(concurrency=1)  # inherits the umask, as a render node started from a login shell would
    assert client.wait(sub.spec.id, timeout=120).state == "done"
    root = Path(settings.storage)
    stored = [root / sub.spec.scene_key, *sorted((root / "jobs" / sub.spec.id / "batches").glob("*.zip"))]
    assert len(stored) == 3
    assert {p.name: oct(_mode(p)) for p in stored} == {p.name: oct(0o664) for p in stored}
