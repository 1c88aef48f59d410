"""The storage contract: a handful of methods every backend (local directory, S3) implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


class Storage(ABC):
    """Flat keys ("scenes/<sha>.zip", "jobs/<id>/batches/<batch>.zip") mapped to files.

    Writes are atomic: a reader sees the whole old object, the whole new one, or none.
    A missing key raises FileNotFoundError; backend failures raise httpov.errors.StorageError.
    """

    url: str

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key`, streaming, replacing any old object atomically."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Write the object `key` to `path` (atomically: a temporary name, then rename)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if an object is stored under `key`."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key that starts with `prefix` (a folder: ends in '/'); answers how many were removed."""
        if not prefix.endswith("/"):
            raise ValueError(f"delete_prefix takes a folder ending in '/', not {prefix!r}")
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def size(self, prefix: str = "") -> int:
        """Bytes stored under `prefix` (a job's results, the whole store)."""
        raise NotImplementedError

    def check(self) -> None:  # noqa: B027 (a hook: a store with nothing to check passes)
        """Raise StorageError unless the store can be written and read (used before queueing)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store small `data` under `key` (a convenience over put_file)."""
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="httpov-put-") as tmp:
            tmp.write(data)
            tmp.flush()
            self.put_file(key, Path(tmp.name))

    def get_bytes(self, key: str) -> bytes:
        """The content of the small object `key`."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="httpov-get-") as tmp:
            target = Path(tmp) / "object"
            self.get_file(key, target)
            return target.read_bytes()


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root ('..', absolute, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key
