"""Keeping a running batch's lease alive from a thread, whatever the render process is busy with."""
from __future__ import annotations

import threading

from httpov.errors import BrokerUnavailableError
from httpov.states import LIVE, JobState
from httpov.store import JobStore


class LeaseKeeper:
    """Refreshes one execution's lease every `lease / 4` seconds (one Redis call) while the scene downloads, povray
    runs and the zip uploads, so a short lease never runs out under a live render; `state` is the job's state at
    the last refresh, or 'lost' once another execution took the batch. Use as a context manager."""

    def __init__(self, store: JobStore, job_id: str, batch_id: str, token: str, lease: float) -> None:
        self.state: str = JobState.RUNNING
        self._refresh = lambda: store.refresh(job_id, batch_id, token, lease)
        self._every = lease / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {batch_id}", daemon=True)

    @property
    def live(self) -> bool:
        """True while the render should go on: the job is live or paused (a paused job's running batches finish)."""
        return self.state in LIVE or self.state == JobState.PAUSED

    def _run(self) -> None:
        while self.live and not self._stop.wait(self._every):
            try:
                self.state = self._refresh()
            except BrokerUnavailableError:
                # Redis restarting or out of reach: keep rendering. Should the lease run out meanwhile, another
                # node may render the batch too, which is harmless: outputs and completion are idempotent.
                continue

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._every)
