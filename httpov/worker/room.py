"""A render node's room: free space in its cache folder against HTTPOV_MIN_FREE_MB, and which failures are the
node's own (its disk full, out of memory) rather than its job's."""
from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from httpov.errors import NodeFaultError, StorageError

MIB = 1024**2
#: OS errors of a node's own writes and allocations: no space, over its quota, out of memory.
_DISK = (errno.ENOSPC, errno.EDQUOT)


def free_mib(folder: Path) -> int:
    """MiB free on the filesystem of `folder` (or of its nearest existing parent)."""
    for place in (folder, *folder.parents):
        if place.exists():
            return shutil.disk_usage(place).free // MIB
    return shutil.disk_usage("/").free // MIB


def disk_fault(folder: Path, min_free_mb: int) -> str | None:
    """'disk full (cache folder, N MiB free)' while the cache folder's filesystem has less than `min_free_mb` MiB
    free, else None (also when it cannot be measured: the render then says what is wrong)."""
    try:
        free = free_mib(folder)
    except OSError:
        return None
    return f"disk full (cache folder, {free} MiB free)" if free < min_free_mb else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def own_fault(exc: BaseException, folder: Path, min_free_mb: int) -> str | None:
    """Why the failure `exc` is this node's own and not its job's, or None: a NodeFaultError; the cache folder
    below `min_free_mb` MiB free now (povray's "Frontend halted render" or "cannot write" on a full disk, or any
    failure while it is full); out of memory (MemoryError, ENOMEM); ENOSPC or EDQUOT on the node's own writes
    (not on the farm's storage: a StorageError is the storage's)."""
    for cause in _chain(exc):
        if isinstance(cause, NodeFaultError):
            return str(cause)
    fault = disk_fault(folder, min_free_mb)
    if fault:
        return fault
    storage = isinstance(exc, StorageError)
    for cause in _chain(exc):
        if isinstance(cause, MemoryError) or (isinstance(cause, OSError) and cause.errno == errno.ENOMEM):
            return "out of memory"
        if not storage and isinstance(cause, OSError) and cause.errno in _DISK:
            try:
                free = f"{free_mib(folder)} MiB free"
            except OSError:
                free = "free space unknown"
            what = "disk full" if cause.errno == errno.ENOSPC else "disk quota exceeded"
            return f"{what} (cache folder, {free})"
    return None
