"""Unit tests: which failures are a render node's own (httpov.worker.room), measured on this machine's disk."""
from __future__ import annotations

import errno
from pathlib import Path

from httpov.errors import NodeFaultError, RenderError, StorageError
from httpov.worker import room


def _storage_full() -> StorageError:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise StorageError("cannot write x to /srv/storage: No space left on device") from exc
    except StorageError as exc:
        return exc


def test_a_folder_below_the_threshold_is_a_full_disk(tmp_path: Path):
    free = room.free_mib(tmp_path)
    assert room.disk_fault(tmp_path, 1) is None
    assert room.disk_fault(tmp_path / "not" / "made", free + 10) == f"disk full (cache folder, {free} MiB free)"


def test_what_counts_as_the_nodes_own_fault(tmp_path: Path):
    def fault(exc: BaseException) -> str | None:
        return room.own_fault(exc, tmp_path, 1)

    assert fault(NodeFaultError("disk full (cache folder, 0 MiB free)")) == "disk full (cache folder, 0 MiB free)"
    assert fault(MemoryError()) == "out of memory"
    assert fault(OSError(errno.ENOMEM, "Cannot allocate memory")) == "out of memory"
    assert fault(OSError(errno.ENOSPC, "No space left on device")).startswith("disk full (cache folder, ")
    assert fault(OSError(errno.EDQUOT, "Disk quota exceeded")).startswith("disk quota exceeded (cache folder, ")
    assert fault(_storage_full()) is None  # the farm's storage is full, not this node
    assert fault(RenderError("povray failed: Parse Error: x")) is None  # the scene's, with room to spare
    full = room.own_fault(RenderError("povray failed: Fatal error in renderer: Frontend halted render."), tmp_path,
                          room.free_mib(tmp_path) + 1)
    assert full is not None and full.startswith("disk full (cache folder, ")  # any failure on a full disk
