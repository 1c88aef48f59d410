"""A render slot's work folder under the node's cache folder: povray's home, kept for all the slot's batches (its
confs are written once), and the folder of the batch in hand (the scene's files linked from the node's cache,
povray's output and log, the zip), emptied when the batch ends: its scene and output folders are kept for the
slot's next batch, empty (a new folder costs the filesystem more than the files of a small batch). A slot folder left
by a render process that is gone (a node killed mid-batch) is removed when the next one is made."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: A slot folder's name: this prefix, the render process's pid, a dash, random letters (tempfile.mkdtemp). Its pid
#: says whose it is to a person; whether it is in use is its lock's to say.
PREFIX = "slot-"
_SLOT = re.compile(rf"{PREFIX}(\d+)-")
#: The most files of a scene a batch links from the node's cache (link_scene): past them it copies the scene.
LINKED_FILES = 256
#: The name a slot folder has until its lock is held.
MAKING = ".making-"
#: The lock file of a slot folder: held (flock) by the render process that uses the folder, for as long as it lives.
LOCK = ".lock"


class WorkFolder:
    """One render slot's: made at its first batch, in `root` (the node's <cache>/work)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folder: Path | None = None
        self._pid = 0  # the process that made _folder (a prefork render process makes its own)
        self._lock = -1  # the descriptor of its lock (held till the process ends)
        self._empty = False  # the batch folder holds its empty scene and output folders only (the last batch's end)
        self._job = ""  # the job of the last batch: another job's batch gets new folders
        self._out = ""  # the name of the batch folder's output folder

    @property
    def home(self) -> Path:
        """povray's home for the slot's runs (httpov.worker.povray.render's `home`)."""
        return self._own() / "home"

    @contextlib.contextmanager
    def batch(self, job: str = "") -> Iterator[Path]:
        """The batch's work folder, holding an empty `scene` folder and the output folder (`out`), and nothing else;
        emptied when the batch ends, and kept for the next batch of the same `job` (another job's, or the next batch
        after a folder that could not be emptied, gets new ones: nothing a scene did to its folders, their extended
        attributes or flags, reaches another job)."""
        folder = self._own() / "batch"
        if not self._empty or job != self._job:
            if folder.exists():  # the last job's, or what an emptying that failed left: gone, or set aside (gone
                # with the slot folder) if it cannot be removed
                with contextlib.suppress(Exception):  # (whatever it holds: a tree too deep to walk, too)
                    remove(folder)
                with contextlib.suppress(FileNotFoundError):
                    folder.rename(folder.with_name(f"stale-{os.urandom(6).hex()}"))
            # a name the scene cannot guess (povray.render), new with each job the slot renders (the job's own log
            # may name it)
            self._out = f"out-{secrets.token_hex(8)}"
            folder.mkdir()
            (folder / "scene").mkdir()
            (folder / self._out).mkdir()
        self._empty, self._job = False, job
        try:
            yield folder
        finally:
            keep = ("scene", self._out)
            self._empty = empty(folder, keep) and all(os.path.isdir(folder / name) for name in keep)

    @property
    def out(self) -> Path:
        """The output folder of the batch in hand (povray.render's `out`)."""
        return self._own() / "batch" / self._out

    def _own(self) -> Path:
        if self._folder is None or self._pid != os.getpid() or not self._folder.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            sweep(self.root)
            if self._lock >= 0:  # the folder it replaces (removed meanwhile), or one its parent process made
                os.close(self._lock)
                self._lock = -1
            made = Path(tempfile.mkdtemp(prefix=f"{MAKING}{os.getpid()}-", dir=self.root))
            self._lock = os.open(made / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # held while it lives
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            folder = made.with_name(PREFIX + made.name.removeprefix(MAKING))
            os.rename(made, folder)  # a slot folder is locked from the moment it has its name
            self._folder, self._pid, self._empty = folder, os.getpid(), False
        return self._folder


def link_scene(source: Path, target: Path) -> None:
    """`target`, an empty folder (or none) made the scene in the node's cache at `source`: its files hard links to the
    cached ones
    (no file is copied: the cache's are the same for every batch of the scene), in folders of the batch's own (the
    scene writes new files beside its own: povray's #write). The sandbox binds each linked file read-only over itself
    (httpov.worker.sandbox.Sandbox.start): nothing povray runs can change the cache's files, nor chmod them. A scene
    of more than LINKED_FILES files (a bind each, and bwrap takes at most 9000 arguments), or a cache on another
    filesystem than the work folder, has its files copied."""
    files, folders = _tree(source)
    if len(files) > LINKED_FILES:  # each linked file is a bind of the sandbox: a scene of many files is copied
        shutil.copytree(source, target, symlinks=False, dirs_exist_ok=True)
        return
    with contextlib.suppress(FileExistsError):
        os.mkdir(target)
    for folder in folders:
        os.mkdir(target / folder)
    for name in files:  # (the extraction made no symlinks or devices)
        try:
            os.link(source / name, target / name)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(source / name, target / name)  # the batch's own copy


def _tree(root: Path) -> tuple[list[str], list[str]]:
    """The files and the folders under `root`, as paths relative to it (a folder before what it holds)."""
    files: list[str] = []
    folders: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(prefix + entry.name)
                    walk(Path(entry.path), f"{prefix}{entry.name}/")
                else:
                    files.append(prefix + entry.name)
    walk(root, "")
    return files, folders


def sweep(root: Path) -> None:
    """Remove the slot folders in `root` whose render process is gone: no process holds their lock (whatever its
    pid namespace: nodes in containers may share a cache folder); and those a process was making, or one without a
    lock, once a minute old."""
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if (_SLOT.match(entry.name) or entry.name.startswith(MAKING)) and not _held(Path(entry.path)):
                remove(Path(entry.path))


def empty(folder: Path, keep: tuple[str, ...] = ()) -> bool:
    """Remove everything in `folder` but the folders named in `keep`, which are emptied (and made the slot's to write
    again, whatever a process in the sandbox made of their permissions); a symbolic link is removed, never followed.
    False if something could not be removed (WorkFolder.batch then removes or sets aside the whole folder)."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and entry.name in keep:
                    os.chmod(entry.path, 0o700)
                    if not empty(Path(entry.path)):
                        return False
                elif entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        return True
    except Exception:  # (a tree too deep to walk is a RecursionError)
        return False


def remove(folder: Path) -> None:
    """Remove `folder` and all it holds, folders whose permissions a process in the sandbox took away included."""
    def retry(function: object, path: str, _: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
    shutil.rmtree(folder, onerror=retry)


def _held(folder: Path) -> bool:
    if folder.name.startswith(MAKING) or not (folder / LOCK).exists():  # its process may be making it
        with contextlib.suppress(OSError):
            return time.time() - folder.stat().st_mtime < 60
        return False
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:  # another user's folder: left alone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
