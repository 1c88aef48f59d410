"""A job's downloads on the web (all frames as a zip, a contact sheet, a video): built once per job state, by a
few threads of their own (never a request's) each running the build in a process of its own (httpov.web.build),
and kept in storage under the job's prefix until the job changes or is deleted."""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from httpov import paths
from httpov.access import Identity
from httpov.errors import HttpovError, JobNotFoundError, ServerBusyError
from httpov.states import JobState

log = logging.getLogger("httpov.web")

#: What a job's page offers, and its content type.
PAGE_KINDS = {"frames.zip": "application/zip", "contact-sheet.png": "image/png", "video.mp4": "video/mp4"}
#: ... and the API (`httpov --server URL fetch`): the frames and, under logs/, the batch logs.
KINDS = {**PAGE_KINDS, "results.zip": "application/zip"}
#: The longest a request waits for a build before it is answered 202 (only as many requests wait at once as builds
#: run: the others, and the pages, keep the web server's threads).
WAIT_SECONDS = 2.0
#: Builds that may wait for a free builder, per builder (HTTPOV_WEB_BUILDS); past them a request is answered 503.
QUEUED_PER_BUILDER = 8
#: Builds a download of a job under a storage key, as an identity allowed to download it.
Make = Callable[[str, str, str, Identity | None], None]
#: How long a failed build's error is answered without building again (a refused result stays refused).
FAILED_SECONDS = 60.0


@dataclass(frozen=True)
class Download:
    """A download that is ready: its storage key and content type, and its name for the browser."""

    key: str
    mimetype: str
    name: str


class Downloads:
    """Builds a job's downloads at most `builders` at a time and answers them from storage once built. Requests for
    a download being built share its build; a download is named by a digest of the job's done records
    (paths.download_key), so a job rendered further, or again, builds anew and the older build is deleted."""

    def __init__(self, client: Any, builders: int, wait: float = WAIT_SECONDS, make: Make | None = None) -> None:
        self.client = client
        self.builders = builders
        self.wait = wait
        self.make: Make = make or self._in_child  # (job, what, key, who): build it and store it under key
        self.pool = ThreadPoolExecutor(max_workers=builders, thread_name_prefix="httpov-web-build")
        self.lock = threading.Lock()
        self.building: dict[str, Future[Download]] = {}
        self.failed: dict[str, tuple[float, BaseException]] = {}
        self.waiting = threading.BoundedSemaphore(builders)
        self.builds = 0  # builds started, for tests and `bench_downloads.py`

    def version(self, job_id: str) -> str:
        """A digest of the job's done records (the batches whose results a download is made of, and which results)
        and failed ones (whose logs results.zip holds)."""
        batches = self.client.store.batches(job_id)
        records = sorted((batch, info.get("result", ""), info.get("finished")) for batch, info in
                         batches["done"].items())
        failures = sorted((batch, info.get("at")) for batch, info in batches["failed"].items())  # their logs
        return hashlib.sha256(json.dumps([records, failures]).encode()).hexdigest()[:24]

    def get(self, job_id: str, what: str, who: Identity | None) -> Download | None:
        """The download if it is built (building it now if it is not, and waiting up to `wait` seconds for it when a
        waiting slot is free), else None: it is being built. Whoever asks must have been let download the job."""
        key = paths.download_key(job_id, self.version(job_id), what)
        ready = Download(key, KINDS[what], f"{job_id}-{what}")
        if self.client.storage.exists(key):
            return ready
        with self.lock:
            now = time.monotonic()
            for old in [k for k, (at, _) in self.failed.items() if now - at > FAILED_SECONDS]:
                del self.failed[old]
            if key in self.failed:
                raise self.failed[key][1]
            future = self.building.get(key)
            if future is None and self.client.storage.exists(key):  # built since it was looked for above
                return ready
            if future is None:
                if len(self.building) >= self.builders * (1 + QUEUED_PER_BUILDER):
                    raise ServerBusyError(f"the server is building {len(self.building)} downloads already: try again "
                                       f"shortly (HTTPOV_WEB_BUILDS={self.builders} at once)")
                future = self.pool.submit(self._build, job_id, what, ready, who)
                self.building[key] = future
                self.builds += 1
                future.add_done_callback(lambda done: self._finished(key, done))
        if self.waiting.acquire(blocking=False):
            try:
                wait([future], timeout=self.wait)
            finally:
                self.waiting.release()
        if not future.done():
            return None
        error = future.exception()
        if error is not None:
            raise error
        return ready

    def close(self) -> None:
        """Cancel the builds still in line (the server is stopping); those running end on their own."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self, key: str, future: Future[Download]) -> None:
        with self.lock:
            self.building.pop(key, None)
            error = None if future.cancelled() else future.exception()
            if error is not None:
                self.failed[key] = (time.monotonic(), error)

    def _build(self, job_id: str, what: str, ready: Download, who: Identity | None) -> Download:
        """Build the download (`make`: in a process of its own), then delete its older builds; a job deleted
        meanwhile keeps nothing of it."""
        started = time.monotonic()
        storage = self.client.storage
        self.make(job_id, what, ready.key, who)
        for old in storage.list(paths.downloads_prefix(job_id)):
            if old != ready.key and old.endswith("-" + what):
                storage.delete(old)
        try:
            gone = self.client.store.state(job_id) == JobState.DELETING
        except JobNotFoundError:
            gone = True
        if gone:
            storage.delete(ready.key)
            raise JobNotFoundError(f"job {job_id} was deleted")
        log.info("built %s of job %s in %.1f s", what, job_id, time.monotonic() - started)
        return ready

    def _in_child(self, job_id: str, what: str, key: str, who: Identity | None) -> None:
        """httpov.web.build in a process of its own, at a lower CPU priority, with this server's settings; its
        httpov error is raised here as it was there."""
        from httpov.local_farm import worker_env
        from httpov.remote import server_error
        from httpov.web.build import identity_text

        done = subprocess.run([sys.executable, "-m", "httpov.web.build", job_id, what, key, identity_text(who)],
                              env=worker_env(self.client.settings), capture_output=True, text=True)
        if done.returncode == 0:
            return
        try:
            body = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise HttpovError(f"building {what} of job {job_id} failed: {last}") from None
        raise server_error("the web server", 500, body)

    def open(self, download: Download) -> IO[bytes] | None:
        """The stored download as an open file (its name already removed: closing it frees it), or None if it was
        deleted meanwhile (its job changed or was deleted)."""
        with tempfile.TemporaryDirectory(prefix="httpov-web-send-") as tmp:
            local = Path(tmp) / "download"
            try:
                self.client.storage.get_file(download.key, local)
            except FileNotFoundError:
                return None
            return open(local, "rb")  # noqa: SIM115 (closed by the response)
