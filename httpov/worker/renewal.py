"""A render node's leases renewed together: one Redis call a period for all of its render slots.

Each render slot (a thread of the node's process, or a prefork render process) notes the batch it runs in a file of
the node's lease folder, touched at every tick of its lease keeper, and one thread of the node renews every fresh
note at once (JobStore.refresh_many) instead of one call per slot.

A prefork render process that is frozen, or a keeper's thread that hangs, stops touching its note: the node stops
renewing it and its batch is requeued when the lease runs out, as when the slot renewed its own lease. A note's
answer that is not live (the job cancelled, failed or gone, or the batch taken over: 'lost') is written beside it for
the keeper to read at its next tick; the stops channel still reaches the render at once. While the node's renewer
does not run (a render node outside a worker, or the thread gone), its stamp goes stale and each keeper renews its
own lease again."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

from httpov.errors import BrokerUnavailableError
from httpov.states import LIVE, JobState
from httpov.store import JobStore

log = logging.getLogger(__name__)

#: The renewer's stamp in the lease folder, touched at every pass: the keepers leave renewal to the node while fresh.
STAMP = "renewer"
#: A note not touched for this many leases is a dead process's: the renewer deletes it.
FORGET_LEASES = 4.0


@functools.lru_cache(maxsize=64)  # asked at every batch
def lease_folder(cache_dir: Path, node: str) -> Path:
    """The lease folder of render node `node` (its Celery hostname) under the node's cache folder."""
    return Path(cache_dir) / "leases" / re.sub(r"[^A-Za-z0-9@._-]", "_", node)


def _make(folder: Path) -> None:
    """The lease folder and the two above it (the cache folder, leases/), private to the node's user as the scene
    cache's own folders are: a note another user could write would have its lease renewed."""
    folder.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        path.mkdir(mode=0o700, exist_ok=True)


def tick(lease: float) -> float:
    """How often a keeper touches its note: several times within the node's renewal period (lease / 4)."""
    return min(1.0, lease / 8)


class LeaseNote:
    """A render process's note of the batch it runs (its lease's job, batch, token and progress) in the node's lease
    folder, and the node's answer to it."""

    def __init__(self, folder: Path, job_id: str, batch_id: str, token: str, lease: float) -> None:
        self.folder, self.lease = folder, lease
        name = f"{os.getpid()}-{hashlib.sha1(token.encode()).hexdigest()[:12]}"
        self.path, self.answer_path = folder / f"{name}.lease", folder / f"{name}.state"
        self._record = {"job": job_id, "batch": batch_id, "token": token}
        self._written: float | None | str = ""  # the progress the note holds ('': none written yet)
        self._tried = False  # whether it was ever written (else there is nothing to remove)
        self.closed = False

    def touch(self, progress: float | None) -> bool:
        """Say the batch still renders (and how far): the note rewritten if its progress changed, else touched.
        False if it could not be (no room on the disk): the keeper then renews its own lease."""
        if self.closed:  # the batch ended: a late tick must not write the note again
            return False
        try:
            if progress == self._written:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.path)
                    return True
            self._tried = True
            part = self.path.with_suffix(".part")
            text = json.dumps({**self._record, "progress": progress})
            try:
                part.write_text(text)
            except FileNotFoundError:  # the node's first note, or its folder removed meanwhile
                _make(self.folder)
                part.write_text(text)
            os.replace(part, self.path)  # the renewer never reads half a note
        except OSError:
            self._written = ""
            return False
        self._written = progress
        return True

    def answer(self) -> str | None:
        """The node's last answer that is not live ('lost', the job's state), or None."""
        try:
            return self.answer_path.read_text().strip() or None
        except OSError:
            return None

    def renewed(self) -> bool:
        """Whether the node's renewer runs (its stamp is fresh): then it renews this note's lease."""
        try:
            return time.time() - (self.folder / STAMP).stat().st_mtime < self.lease / 2
        except OSError:
            return False

    def remove(self) -> None:
        """The batch ended: its note goes (the node stops renewing it)."""
        self.closed = True
        if not self._tried:
            return
        for path in (self.path, self.answer_path, self.path.with_suffix(".part")):
            with contextlib.suppress(OSError):
                path.unlink()


class Renewer:
    """The node's side: every lease / 4, the leases of every fresh note in its folder renewed in one Redis call."""

    def __init__(self, store: JobStore, folder: Path, lease: float) -> None:
        self.store, self.folder, self.lease = store, folder, lease
        self.every = lease / 4

    def renew(self) -> int:
        """One pass: the stamp touched, fresh notes renewed and answered, dead processes' notes deleted. Answers
        how many leases were renewed."""
        _make(self.folder)
        (self.folder / STAMP).touch()
        now = time.time()
        notes: list[tuple[Path, dict]] = []
        for path in self.folder.glob("*.lease"):
            try:
                age = now - path.stat().st_mtime
                if age > FORGET_LEASES * self.lease:
                    for stale in (path, path.with_suffix(".state")):
                        with contextlib.suppress(OSError):
                            stale.unlink()
                    continue
                if age > self.every:  # not touched lately: the process is frozen, hung or gone
                    continue
                notes.append((path, json.loads(path.read_text())))
            except (OSError, ValueError):  # removed meanwhile, or unreadable: not renewed
                continue
        if not notes:
            return 0
        states = self.store.refresh_many([(n["job"], n["batch"], n["token"], n.get("progress")) for _, n in notes],
                                         self.lease)
        for (path, _), state in zip(notes, states):
            if state not in LIVE and state != JobState.PAUSED:
                with contextlib.suppress(OSError):
                    path.with_suffix(".state").write_text(state)
        return len(notes)

    def run(self, stopping: threading.Event) -> None:
        """Renew every lease / 4 until `stopping` is set (the node's warm shutdown waits for its batches first)."""
        while True:
            began = time.monotonic()
            try:
                self.renew()
            except BrokerUnavailableError as exc:  # Redis away: the leases may run out; fenced results (finish_batch)
                log.warning("httpov: lease renewal failed: %s", exc)
            except Exception:  # never end the thread: the keepers would renew their own, but say why
                log.exception("httpov: lease renewal failed")
            if stopping.wait(max(0.0, self.every - (time.monotonic() - began))):
                return

    def start(self, stopping: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stopping,), name="httpov leases", daemon=True)
        thread.start()
        return thread
