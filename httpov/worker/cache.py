"""A render node's cache of extracted scenes, shared by all its worker processes and bounded in size."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from httpov.archive import ArchiveLimits, extract_archive, file_sha256
from httpov.errors import ArchiveError, NodeFaultError, StorageError
from httpov.storage.base import Storage

_SHA256 = re.compile(r"[0-9a-f]{64}")


class SceneCache:
    """Per-node cache of extracted scenes: each scene downloaded and extracted once per node, whatever the number
    of worker processes (a file lock, not a race); bounded by size, least recently used evicted.

    Layout under `root`: scenes/<sha>/ (extracted, read-only by convention), locks/<sha>.lock (flock: exclusive
    while a scene is fetched or evicted, shared while it is in use), tmp/ (downloads and extractions in progress),
    verified/<sha> (the node's own mark of an entry it fetched and checked: the device and inode of its folder).
    Nothing found in scenes/ is trusted on sight: an entry is used only if it is a folder of this node's user that
    its mark names; anything else (a folder planted by someone who could write there, or left half-made) is
    discarded and fetched again. `root` is made private (0700) and must belong to the node's user.
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
        self.verified = self.root / "verified"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _own_private(self.root)
        for folder in (self.scenes, self.locks, self.tmp, self.verified):
            found = os.lstat(folder) if os.path.lexists(folder) else None
            if found is not None and not (stat.S_ISDIR(found.st_mode) and _ours(found)):  # someone else's: away
                aside = Path(tempfile.mkdtemp(prefix=f"planted-{folder.name}.", dir=self.root))
                os.rename(folder, aside / "x")
                shutil.rmtree(aside, ignore_errors=True)
            folder.mkdir(mode=0o700, exist_ok=True)

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

    def copy_file(self, storage: Storage, key: str, sha256: str | None, target: Path) -> None:
        """Copy a stored file a pre-pass recorded (use_file: `key` with the hash `sha256`) to `target`, the copy
        povray reads, and check that copy's hash again; ArchiveError (nothing left at `target`) if no hash was
        recorded or either does not match, FileNotFoundError if it is not stored."""
        try:
            if sha256 is None:
                raise ArchiveError("no pre-pass recorded its SHA-256")
            with self.use_file(storage, key, sha256) as stored:
                shutil.copyfile(stored, target)
            if file_sha256(target) != sha256:  # the copy povray reads, after the node's cache
                raise ArchiveError("the copy does not match the SHA-256 its pre-pass recorded")
        except (ArchiveError, FileNotFoundError):
            target.unlink(missing_ok=True)
            raise

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
                if self._trusted(name):
                    break
                # Converting a flock is not atomic, so whoever holds LOCK_EX first fetches; the others then find
                # the folder. The loop re-checks after every conversion (an eviction can slip in between).
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._trusted(name):
                    self._discard(name)  # a planted or half-made entry: never used
                    fetch(final)
                    self._mark(name)
                    fetched = True
            os.utime(final)  # least recently used = oldest mtime
            if fetched:  # only a new entry can push the cache past its bound
                self.evict(keep=name)
            yield final
        finally:
            os.close(fd)  # releases the lock

    def _trusted(self, name: str) -> bool:
        """Whether scenes/`name` is the folder this node fetched and marked (its mark names its device and inode)."""
        try:
            found = os.lstat(self.scenes / name)
            mark = (self.verified / name).read_text()
        except FileNotFoundError:
            return False
        return stat.S_ISDIR(found.st_mode) and _ours(found) and mark == _identity(found)

    def _mark(self, name: str) -> None:
        """Record scenes/`name`, just fetched and checked, as this node's own (under the entry's exclusive lock)."""
        part = self.verified / f".{name}.part"
        part.write_text(_identity(os.lstat(self.scenes / name)))
        os.replace(part, self.verified / name)

    def _discard(self, name: str) -> None:
        """Remove scenes/`name` and its mark, whatever they are (under the entry's exclusive lock)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.verified / name)
        if os.path.lexists(self.scenes / name):
            trash = Path(tempfile.mkdtemp(prefix=f"{name}.discard-", dir=self.tmp))
            os.rename(self.scenes / name, trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)

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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.verified / name)
            shutil.rmtree(trash, ignore_errors=True)
            return True
        finally:
            os.close(fd)


def _ours(found: os.stat_result) -> bool:
    return found.st_uid == os.geteuid()


def _identity(found: os.stat_result) -> str:
    return f"{found.st_dev}:{found.st_ino}"


def _own_private(root: Path) -> None:
    """`root` must be a folder of the node's user (or a link to one); it is made 0700, so no one else can plant
    anything in it."""
    found = os.stat(root)
    if not stat.S_ISDIR(found.st_mode) or not _ours(found):
        raise NodeFaultError(f"the scene cache folder {root} is not a folder of this node's user (uid "
                             f"{os.geteuid()}): another user could plant scenes in it",
                             hint="set HTTPOV_CACHE_DIR to a folder of the render node's own user")
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.chmod(root, 0o700)


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
