"""Storage on a directory every node can reach (a local disk for one machine, NFS for a farm)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from httpov.errors import StorageError
from httpov.files import TMP_PREFIX, atomic_write
from httpov.storage.base import Storage, check_key


class LocalStorage(Storage):
    """Objects are files below `root`; writes go to a temporary name in the same folder, then rename."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        self._copy(Path(path), self._path(key), f"write {key} to")

    def get_file(self, key: str, path: Path) -> None:
        self._copy(self._path(key), Path(path), f"read {key} from")

    def _copy(self, source: Path, target: Path, doing: str) -> None:
        try:
            with atomic_write(target, fsync=True) as tmp, open(tmp, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot {doing} {self.root}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rpartition("/")[0]  # only the folder the prefix names can hold its keys
        start = self.root / check_key(folder) if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            for folder in path.parents:  # no empty folders left behind (jobs/<id>/batches/, ...)
                if folder == self.root or self.root not in folder.parents:
                    break
                folder.rmdir()
        except OSError as exc:
            if not path.exists():  # a folder not empty (or in use): the object itself is gone
                return
            raise StorageError(f"cannot delete {key} from {self.root}: {exc.strerror or exc}") from exc

    def size(self, prefix: str = "") -> int:
        return sum(self._path(key).stat().st_size for key in self.list(prefix))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(prefix=f"{TMP_PREFIX}check-", dir=self.root) as probe:
                probe.write(b"ok")  # a byte written, not just a name: a full filesystem still makes empty files
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            raise StorageError(f"storage directory {self.root} is not writable: {exc.strerror or exc}") from exc
