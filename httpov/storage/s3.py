"""Storage in an S3 bucket (AWS or any S3-compatible store), configured through boto3's standard settings."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from httpov.errors import StorageError
from httpov.files import atomic_write
from httpov.storage.base import Storage, check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


class S3Storage(Storage):
    """Objects live under `s3://bucket/prefix/`. Credentials, region and endpoint come from boto3's usual chain
    (AWS_ENDPOINT_URL[_S3], AWS_PROFILE, instance roles...). Transient failures (connection resets, 5xx,
    throttling) are retried by botocore in "standard" mode with exponential back-off: 3 attempts unless
    AWS_MAX_ATTEMPTS says otherwise; a render node then retries the whole batch later (node.RenderNode._failed).
    Large files go up and down in 8 MB multipart chunks; a single PutObject or a completed multipart upload
    replaces an object atomically."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageError("S3 storage needs boto3, which is not installed",
                               hint="pip install 'httpov[s3]'") from None
        if not bucket:
            raise StorageError("an S3 storage URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        # An endpoint that drops packets fails in about 3 x 10 s instead of botocore's 3 x 60 s. A node's render slots
        # share one client (threads of one process): its pool keeps more than botocore's 10 connections.
        config = Config(retries={"mode": "standard"}, connect_timeout=10, max_pool_connections=64)
        self._new_client = lambda: boto3.session.Session().client("s3", config=config)
        self._client, self._pid = self._new_client(), os.getpid()
        self.endpoint = self._client.meta.endpoint_url

    @property
    def client(self) -> Any:
        """This process's boto3 client (a fresh one after a fork: clients must not cross processes)."""
        if self._pid != os.getpid():
            self._client, self._pid = self._new_client(), os.getpid()
        return self._client

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """`s3://bucket/some/prefix` -> keys stored under `some/prefix/`."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(bucket, prefix)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _translate(self, exc: Exception, key: str | None = None) -> Exception:
        """botocore's exceptions -> FileNotFoundError or a StorageError naming the bucket and endpoint."""
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        cause: Any = exc
        if not isinstance(cause, ClientError) and isinstance(cause.__context__, ClientError):
            cause = cause.__context__  # boto3's S3UploadFailedError wraps the ClientError
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(cause, ClientError):
            code = _code(cause)
            if code in _MISSING and key is not None:
                return FileNotFoundError(f"{self.url}{key}: no such object")
            if code == "NoSuchBucket" or (code in _MISSING and key is None):
                return StorageError(f"{where} does not exist", hint="Create it, or fix the bucket in HTTPOV_STORAGE.")
            if code in _DENIED:
                return StorageError(f"access to {where} was denied ({code})",
                                    hint="Check the AWS credentials and the bucket's policy.")
            return StorageError(f"S3 request to {where} failed: {cause}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"no AWS credentials found to reach {where}",
                                hint="Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE.")
        return StorageError(f"cannot reach {where}: {exc}",
                            hint="Check AWS_ENDPOINT_URL and that every node can reach it.")

    def _call(self, what: Any, *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return what(*args, **kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise self._translate(exc, key) from exc

    def put_file(self, key: str, path: Path) -> None:
        self._call(self.client.upload_file, str(path), self.bucket, self._key(key), key=key)

    def get_file(self, key: str, path: Path) -> None:
        from s3transfer.exceptions import S3DownloadFailedError

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            for attempt in (1, 2, 3):  # a ranged download stops (HTTP 412) if the object is replaced meanwhile
                try:
                    self._call(self.client.download_file, self.bucket, self._key(key), str(tmp), key=key)
                    break
                except S3DownloadFailedError as exc:
                    if attempt == 3:
                        raise StorageError(f"{self.url}{key} kept changing while it was downloaded") from exc

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(key), key=key)
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        found = self._call(lambda: [o["Key"] for page in pages for o in page.get("Contents", [])])
        return sorted(k[len(self.prefix):] for k in found)

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        """DeleteObjects, a thousand keys a request."""
        if not prefix.endswith("/"):
            raise ValueError(f"delete_prefix takes a folder ending in '/', not {prefix!r}")
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            answer = self._call(self.client.delete_objects, Bucket=self.bucket,
                                Delete={"Objects": chunk, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(f"cannot delete {first.get('Key')} from bucket {self.bucket!r}: "
                                   f"{first.get('Code')} {first.get('Message')}")
        return len(keys)

    def size(self, prefix: str = "") -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        return int(self._call(lambda: sum(o["Size"] for page in pages for o in page.get("Contents", []))))

    def check(self) -> None:
        self._call(self.client.head_bucket, Bucket=self.bucket)
        probe = f"{self.prefix}.httpov-check-{uuid.uuid4().hex}"
        self._call(self.client.put_object, Bucket=self.bucket, Key=probe, Body=b"ok")
        self._call(self.client.delete_object, Bucket=self.bucket, Key=probe)


def _code(exc: BaseException | None) -> str:
    """The S3 error code of a botocore ClientError ("" for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
