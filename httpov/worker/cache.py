"""A render node's cache of extracted scenes, shared by all its worker processes and bounded in size."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from httpov.archive import ArchiveLimits, extract_archive, file_sha256
from httpov.errors import ArchiveError, StorageError
from httpov.storage.base import Storage

_SHA256 = re.compile(r"[0-9a-f]{64}")


class SceneCache:
    """Per-node cache of extracted scenes: each scene downloaded and extracted once per node, whatever the number
    of worker processes (a file lock, not a race); bounded by size, least recently used evicted.

    Layout under `root`: scenes/<sha>/ (extracted, read-only by convention), locks/<sha>.lock (flock: exclusive
    while a scene is fetched or evicted, shared while it is in use), tmp/ (downloads and extractions in progress).
    Other stored files every batch of a job reads (a radiosity pre-pass's cache) are kept the same way, each in a
    folder scenes/<sha256 of its key>/ holding the one file, evicted with the scenes.
    Lock files are never removed: unlinking a lock file others may have open would break the locking.
    A scene in use is never evicted, so the cache can exceed `max_bytes` while the scenes in use alone do.
    """

    def __init__(self, root: Path, max_bytes: int, limits: ArchiveLimits = ArchiveLimits()) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.limits = limits  # a scene past them is refused before it is extracted
        self.scenes = self.root / "scenes"
        self.locks = self.root / "locks"
        self.tmp = self.root / "tmp"
        for folder in (self.scenes, self.locks, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def use(self, storage: Storage, key: str) -> Iterator[Path]:
        """Yield the extracted scene's folder, holding a shared lock on it so no process evicts it meanwhile."""
        name = _scene_name(key)
        def extract(zip_path: Path, into: Path) -> None:
            if file_sha256(zip_path) != name:
                raise ArchiveError(f"{key} does not match its SHA-256: the stored scene is damaged")
            extract_archive(zip_path, into, self.limits)
        with self._held(name, lambda final: self._fetch(storage, key, name, final, extract)) as final:
            yield final

    @contextlib.contextmanager
    def use_file(self, storage: Storage, key: str, sha256: str) -> Iterator[Path]:
        """Yield a stored file (any key: 'radiosity/<digest>.rca') whose content has the hash `sha256`, downloaded
        once per node whatever the number of render processes, held against eviction while in use;
        FileNotFoundError if it is not stored, ArchiveError if what is stored has another hash (it is not kept).
        The entry is named by key and hash: a file stored anew under the key is another entry."""
        name = hashlib.sha256(f"{key}\n{sha256}".encode()).hexdigest()

        def keep(download: Path, into: Path) -> None:
            if file_sha256(download) != sha256:
                raise ArchiveError(f"{key} does not match the SHA-256 its pre-pass recorded")
            into.mkdir()
            os.rename(download, into / "data")
        with self._held(name, lambda final: self._fetch(storage, key, name, final, keep)) as final:
            yield final / "data"

    @contextlib.contextmanager
    def _held(self, name: str, fetch: Callable[[Path], None]) -> Iterator[Path]:
        """Yield the cache entry `name`, fetched into place by `fetch(final)` by the first process that needs it,
        under a shared lock that keeps it from eviction while in use."""
        final = self.scenes / name
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fetched = False
        try:
            while True:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if final.is_dir():
                    break
                # Converting a flock is not atomic, so whoever holds LOCK_EX first fetches; the others then find
                # the folder. The loop re-checks after every conversion (an eviction can slip in between).
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not final.is_dir():
                    fetch(final)
                    fetched = True
            os.utime(final)  # least recently used = oldest mtime
            if fetched:  # only a new entry can push the cache past its bound
                self.evict(keep=name)
            yield final
        finally:
            os.close(fd)  # releases the lock

    def _fetch(self, storage: Storage, key: str, name: str, final: Path,
               extract: Callable[[Path, Path], None]) -> None:
        """Download `key` and put it into `final` with `extract(download, final)` (a scene zip extracted, a file
        checked and kept as final/data); the caller holds the entry's exclusive lock."""
        for stale in self.tmp.glob(f"{name}.*"):  # left by a process killed while fetching or evicting it
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.tmp))
        download = work / "download"
        try:
            storage.get_file(key, download)  # FileNotFoundError if it was never stored
            extract(download, work / "entry")
            os.rename(work / "entry", final)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not download.exists() and not (work / "entry").exists():
                raise
            raise StorageError(f"cannot cache {key} in {self.root}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def evict(self, keep: str | None = None) -> None:
        """Remove least recently used scenes until the cache fits in max_bytes, skipping `keep` and scenes in use."""
        entries = []
        for path in self.scenes.iterdir() if self.scenes.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                entries.append((path.stat().st_mtime, path.name, _tree_size(path)))
        total = sum(size for _, _, size in entries)
        for _, name, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if name != keep and self._remove_unused(name):
                total -= size

    def _remove_unused(self, name: str) -> bool:
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use, or being fetched
            if not (self.scenes / name).is_dir():
                return False
            trash = Path(tempfile.mkdtemp(prefix=f"{name}.evict-", dir=self.tmp))
            os.rename(self.scenes / name, trash / "scene")  # gone from scenes/ at once, deleted at leisure
            shutil.rmtree(trash, ignore_errors=True)
            return True
        finally:
            os.close(fd)


def _scene_name(key: str) -> str:
    base = key.rsplit("/", 1)[-1].removesuffix(".zip")
    if not _SHA256.fullmatch(base):
        raise ValueError(f"not a scene key: {key!r} (expected scenes/<sha256>.zip)")
    return base


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
