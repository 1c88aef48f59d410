"""Pick a storage backend from a URL: a directory path, file://..., or s3://bucket/prefix."""
from __future__ import annotations

from httpov.errors import BadInputError
from httpov.storage.base import Storage
from httpov.storage.local import LocalStorage

__all__ = ["Storage", "LocalStorage", "open_storage"]


def open_storage(url: str) -> Storage:
    """The backend named by `url` (HTTPOV_STORAGE)."""
    if url.startswith("s3://"):
        from httpov.storage.s3 import S3Storage

        return S3Storage.from_url(url)
    if url.startswith("file://"):
        return LocalStorage(url[len("file://"):])
    if "://" in url:
        raise BadInputError(f"HTTPOV_STORAGE={url!r}: unknown scheme (use a path, file:// or s3://)")
    return LocalStorage(url)
