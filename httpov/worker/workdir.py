"""A render slot's work folder under the node's cache folder: povray's home, kept for all the slot's batches (its
confs are written once), and the folder of the batch in hand (the scene's files linked from the node's cache,
povray's output and log, the zip), removed when the batch ends. A slot folder left by a render process that is gone
(a node killed mid-batch) is removed when the next one is made."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: A slot folder's name: this prefix, the render process's pid, a dash, random letters (tempfile.mkdtemp).
PREFIX = "slot-"
_SLOT = re.compile(rf"{PREFIX}(\d+)-")
#: The write bits a scene's cached files lose before they are linked into a batch's work folder.
READ_ONLY_MASK = 0o222


class WorkFolder:
    """One render slot's: made at its first batch, in `root` (the node's <cache>/work)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folder: Path | None = None
        self._pid = 0  # the process that made _folder (a prefork render process makes its own)

    @property
    def home(self) -> Path:
        """povray's home for the slot's runs (httpov.worker.povray.render's `home`)."""
        return self._own() / "home"

    @contextlib.contextmanager
    def batch(self) -> Iterator[Path]:
        """The batch's work folder, new and empty; removed with all it holds when the batch ends."""
        folder = self._own() / "batch"
        try:
            folder.mkdir()
        except FileExistsError:  # what a removal that failed left behind
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _own(self) -> Path:
        if self._folder is None or self._pid != os.getpid() or not self._folder.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            sweep(self.root)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.root))
            self._pid = os.getpid()
        return self._folder


def link_scene(source: Path, target: Path) -> None:
    """`target`, a new folder of the scene in the node's cache at `source`: its files hard links to the cached ones,
    made read-only (no file is copied: the cache's are the same for every batch of the scene), in folders of the
    batch's own (the scene writes new files beside its own: povray's #write). A file of the scene the scene itself
    tries to write over is refused by povray, in its sandbox too (its capabilities dropped, root included). A cache
    on another filesystem than the work folder has its files copied."""
    os.mkdir(target)
    with os.scandir(source) as entries:
        for entry in entries:
            into = os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                link_scene(Path(entry.path), Path(into))
                continue
            mode = entry.stat(follow_symlinks=False).st_mode  # (the extraction made no symlinks or devices)
            if mode & READ_ONLY_MASK:
                os.chmod(entry.path, mode & ~READ_ONLY_MASK & 0o7777)
            try:
                os.link(entry.path, into)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(entry.path, into)
                os.chmod(into, 0o444)


def sweep(root: Path) -> None:
    """Remove the slot folders in `root` whose render process is gone."""
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            found = _SLOT.match(entry.name)
            if found and not _alive(int(found.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
