"""A render node's work on one batch: lease it, render it, store its zip, record it (Celery-free)."""
from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from httpov import povray, stitch
from httpov.cache import SceneCache
from httpov.errors import HttpovError, RenderError, StorageError
from httpov.jobs import LIVE, JobStore
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings
from httpov.storage import Storage


def batch_key(job_id: str, batch_id: str) -> str:
    return f"jobs/{job_id}/batches/{batch_id}.zip"


def frame_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/frames/{name}"


class Stopped(Exception):
    """The render was stopped on purpose: the job left its live states, or another task took the batch."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass
class Outcome:
    """What became of one delivery of a batch; `retry_in` set means: send it again after that many seconds."""

    status: str
    retry_in: float | None = None
    detail: str = ""


class RenderNode:
    """Everything one render process needs, built once per process and reused for every batch."""

    def __init__(self, settings: Settings, store: JobStore, storage: Storage, cache: SceneCache) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.cache = cache
        self._specs: dict[str, JobSpec] = {}

    def spec(self, job_id: str) -> JobSpec:
        if job_id not in self._specs:
            self._specs[job_id] = self.store.spec(job_id)
        return self._specs[job_id]

    def run(self, job_id: str, batch_id: str, token: str, node: str) -> Outcome:
        """Render one batch; every outcome but 'rendered' and 'retry' leaves the queue as it found it."""
        lease = self.settings.lease_seconds
        status = self.store.start_batch(job_id, batch_id, token, node, lease)
        if status == "paused":
            self.store.park(job_id, batch_id)
            return Outcome("parked")
        if status != "ok":
            return Outcome(status)  # duplicate, busy elsewhere, cancelled, failed, done, missing
        attempt = self.store.add_attempt(job_id, batch_id)
        spec = self.spec(job_id)
        batch = Batch.from_id(batch_id)
        try:
            seconds = self._render_and_store(spec, batch, token)
        except Stopped as stop:
            if stop.state != "lost":
                self.store.release(job_id, batch_id)
            if stop.state == "paused":
                self.store.park(job_id, batch_id)
            return Outcome("stopped", detail=f"job {stop.state}")
        except HttpovError as exc:
            return self._failed(spec, batch, token, node, attempt, exc)
        except Exception as exc:  # a bug or an OS error on this node: worth another try, elsewhere
            return self._failed(spec, batch, token, node, attempt, RenderError(f"{type(exc).__name__}: {exc}",
                                                                                transient=True))
        info = {"node": node, "seconds": round(seconds, 3), "frames": batch.last - batch.first + 1,
                "finished": time.time(), "attempt": attempt}
        frames = self._stitch_if_complete(spec, batch) if spec.slices else list(batch.frames)
        self.store.finish_batch(job_id, batch_id, info, frames)
        return Outcome("rendered", detail=f"{batch.label} in {seconds:.1f}s")

    def _render_and_store(self, spec: JobSpec, batch: Batch, token: str) -> float:
        last_refresh = [time.monotonic()]
        stopped: list[str] = []

        def keep_going() -> bool:
            if time.monotonic() - last_refresh[0] < self.settings.lease_seconds / 4:
                return True
            last_refresh[0] = time.monotonic()
            state = self.store.refresh(spec.id, batch.id, token, self.settings.lease_seconds)
            if state not in LIVE:
                stopped.append(state)
                return False
            return True

        work_root = self.settings.cache_dir / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{spec.id}-", dir=work_root)))
            with self.cache.use(self.storage, spec.scene_key) as scene:
                shutil.copytree(scene / spec.root if spec.root else scene, workdir / "scene", symlinks=False)
            try:
                output = povray.render(self.settings.povray, spec, batch, workdir, self.settings.render_threads,
                                       keep_going)
            except RenderError:
                if stopped:
                    raise Stopped(stopped[0]) from None
                raise
            archive = workdir / f"{batch.id}.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for frame, image in sorted(output.images.items()):
                    zf.write(image, povray.frame_file(spec.name, frame, spec.final), zipfile.ZIP_STORED)
                zf.writestr(f"{batch.id}.log", output.log, zipfile.ZIP_DEFLATED)
            self.storage.put_file(batch_key(spec.id, batch.id), archive)
            return output.seconds

    def _failed(self, spec: JobSpec, batch: Batch, token: str, node: str, attempt: int,
                exc: HttpovError) -> Outcome:
        lines = getattr(exc, "lines", [])
        transient = isinstance(exc, StorageError) or getattr(exc, "transient", False)
        if transient and attempt < self.settings.max_attempts:
            backoff = min(60.0, 2.0 ** attempt)
            self.store.fail_batch(spec.id, batch.id, str(exc), lines, final=False, node=node)
            self.store.hold_for_retry(spec.id, batch.id, token, backoff + self.settings.lease_seconds)
            return Outcome("retry", retry_in=backoff, detail=str(exc))
        message = str(exc) if not transient else f"{exc} (failed {attempt} times)"
        self.store.fail_batch(spec.id, batch.id, message, lines, final=True, node=node)
        return Outcome("failed", detail=message)

    def _stitch_if_complete(self, spec: JobSpec, batch: Batch) -> list[int]:
        """After a slice is stored: if it was the frame's last, stitch the frame and answer [frame]."""
        frame = batch.first
        if self.store.slice_done(spec.id, frame, batch.id) < len(spec.slices or []):
            return []
        name = povray.frame_file(spec.name, frame, spec.final)
        with tempfile.TemporaryDirectory(prefix="httpov-stitch-") as tmp:
            parts = []
            for rows in spec.slices or []:
                piece = Batch(frame, frame, rows)
                archive = Path(tmp) / f"{piece.id}.zip"
                self.storage.get_file(batch_key(spec.id, piece.id), archive)
                with zipfile.ZipFile(archive) as zf:
                    target = Path(tmp) / f"{piece.id}.png"
                    target.write_bytes(zf.read(name))
                parts.append((target, rows[0], rows[1]))
            whole = Path(tmp) / name
            stitch.stitch(parts, whole)
            self.storage.put_file(frame_key(spec.id, name), whole)
        return [frame]
