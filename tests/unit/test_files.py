"""atomic_write: all or nothing under the target's name, the umask's mode, nothing left behind on failure."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from httpov.files import TMP_PREFIX, atomic_write


def test_replaces_the_target_in_one_step_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "frame.png"  # the folder is made
    for fsync in (False, True):
        with atomic_write(target, fsync=fsync) as tmp:
            assert tmp.parent == target.parent and tmp.name.startswith(TMP_PREFIX)
            tmp.write_bytes(b"new" if fsync else b"old")
            assert not target.exists() or target.read_bytes() == b"old"  # readers see the old file meanwhile
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["frame.png"]


def test_a_failed_write_keeps_the_old_file_and_deletes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.zip"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["result.zip"]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_the_file_takes_the_umasks_mode(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        with atomic_write(tmp_path / "f") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert oct(stat.S_IMODE((tmp_path / "f").stat().st_mode)) == oct(mode)
