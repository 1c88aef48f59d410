"""Keeping a running batch's lease alive from a thread, whatever the render process is busy with, and hearing at
once when its job is stopped."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from httpov.errors import BrokerUnavailableError, JobNotFoundError
from httpov.states import LIVE, JobState
from httpov.store import JobStore
from httpov.worker.renewal import LeaseNote, tick

log = logging.getLogger(__name__)

#: The longest the keeper's thread waits for a stop message between two checks of its own stop (its exit).
LISTEN_SLICE = 1.0
#: The longest a batch's end waits for its keeper's thread to end.
EXIT_WAIT = 0.5


class LeaseKeeper:
    """Refreshes one execution's lease every `lease / 4` seconds (one Redis call) while the scene downloads, povray
    runs and the zip uploads, so a short lease never runs out under a live render; `state` is the job's state at
    the last refresh, or 'lost' once another execution took the batch. Between refreshes it listens on the stops
    channel (JobStore.listen_for_stop): when the job is cancelled (or failed) its `fileno()` becomes readable, so
    whoever waits on povray asks at once whether to go on (httpov.worker.povray._wait). Use as a context manager.

    The job's state is read every `poll` seconds only while the keeper cannot hear the channel (Redis would not
    subscribe it, or the subscription dropped: messages may have been missed), and once just after subscribing (a
    stop announced before that was not heard; not on a subscription kept from an earlier batch of the node, made
    before this batch was taken). While subscribed, each refresh reads it anyway: polling then cost
    Redis two reads a second per rendering process, most of the farm's Redis load (docs/PERFORMANCE.md).

    Given a `note` (httpov.worker.renewal), the keeper touches it at every tick instead, and its node's renewer renews
    the lease with those of the node's other processes in one call; the node's answer that the job stopped or the
    batch was lost is read from it at the next tick. While the node's renewer does not run, the keeper refreshes
    the lease itself as above."""

    def __init__(self, store: JobStore, job_id: str, batch_id: str, token: str, lease: float,
                 poll: float | None = None, note: LeaseNote | None = None, until: float | None = None) -> None:
        self.state: str = JobState.RUNNING
        #: the share of the batch rendered so far (0-1), set by the render as povray reports its rows; each refresh
        #: writes it into the batch's running info (`status`, the ETA, the job's page)
        self.progress: float | None = None
        self._refresh = lambda: (store.refresh(job_id, batch_id, token, lease) if self.progress is None
                                 else store.refresh(job_id, batch_id, token, lease, progress=self.progress))
        self._listen = lambda: store.listen_for_stop(job_id)
        self._read_state = lambda: store.state(job_id)
        self._every = lease / 4
        self._note = note
        self._tick = tick(lease) if note is not None else None  # the longest wait between two touches of the note
        # the note is first written a tick after the take (the lease the take set runs a whole `lease`, the node's
        # renewer passes every lease / 4): a batch shorter than that writes and removes no note
        self._note_from = time.monotonic() + (self._tick or 0.0)
        self._poll = poll  # between refreshes, read the job's state this often (should a stop message be missed)
        self._until = until  # time.monotonic() past which the lease is let go (the node's hard time limit)
        self._name = f"{job_id}/{batch_id}"
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._halt = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # readable once the batch ended (exit)
        self._users, self._lock = 2, threading.Lock()  # the read end and the halt: closed by the later of the thread
        # and exit
        self._thread = threading.Thread(target=self._run, name=f"lease {batch_id}", daemon=True)

    @property
    def live(self) -> bool:
        """True while the render should go on: the job is live or paused (a paused job's running batches finish)."""
        return self.state in LIVE or self.state == JobState.PAUSED

    def fileno(self) -> int:
        """A file descriptor that becomes readable when the job's stop was announced (see `woken`)."""
        return self._wake_r

    def woken(self) -> bool:
        """Whether a stop was announced since the last call (and forget it): the caller then checks the job."""
        try:
            return bool(os.read(self._wake_r, 64))
        except (BlockingIOError, OSError):
            return False

    def _run(self) -> None:
        listener = None
        try:
            try:
                listener = self._listen()
            except (BrokerUnavailableError, AttributeError):  # Redis out of reach (or a store without pub/sub): poll
                pass
            if listener is not None and not getattr(listener, "kept", False):
                # a stop announced between the take and the subscription (a subscription kept from an earlier batch
                # predates the take: it holds any such stop, and no read is needed)
                self._look()
            due = time.monotonic() + self._every
            poll_due = time.monotonic() + (self._poll or self._every)
            while self.live and not self._stop.is_set() and not self._past_limit():
                noted = False
                if self._note is not None and time.monotonic() >= self._note_from:
                    # the node renews the lease while the note is touched
                    noted = self._note.touch(self.progress)
                    answer = self._note.answer()
                    if answer is not None:  # the node's renewal says the job stopped or the batch was lost
                        self.state = answer
                        break
                left = due - time.monotonic()
                if left <= 0:
                    due = time.monotonic() + self._every
                    if noted and self._note is not None and self._note.renewed():
                        continue
                    try:
                        self.state = self._refresh()
                    except BrokerUnavailableError:
                        # Redis restarting or out of reach: keep rendering. Should the lease run out meanwhile,
                        # another node may take the batch: its result is then fenced off (finish_batch).
                        continue
                elif listener is None and self._poll and poll_due - time.monotonic() <= 0:
                    # here, not in the render's wait: on a slow link a read there held up the notice of povray's end
                    poll_due = time.monotonic() + self._poll
                    self._look()
                elif listener is None:
                    self._stop.wait(self._capped(min(left, poll_due - time.monotonic()) if self._poll else left))
                else:
                    try:
                        if listener.wait(self._capped(min(left, LISTEN_SLICE)), interrupt=self._halt):
                            self._wake()
                    except BrokerUnavailableError:  # deaf from now on: the job's state is polled instead
                        listener.close()
                        listener = None
                        poll_due = time.monotonic()
            if not self.live:  # cancelled, failed or taken over, as the refresh said: wake the render now too
                self._wake()
        finally:
            if self._note is not None:
                self._note.remove()
            if listener is not None:
                listener.close()
            os.close(self._wake_w)
            self._let_go()

    def _past_limit(self) -> bool:
        """Past `until`: the batch is let go (its lease no longer renewed: it runs out, and another node renders the
        batch; this execution's result, should it come, is fenced off). The render is not woken: if it still runs,
        its own limit stops it (povray's node_limit)."""
        if self._until is None or time.monotonic() < self._until:
            return False
        log.warning("httpov: batch %s ran past the render node's time limit (HTTPOV_TASK_TIME_LIMIT): its lease is "
                    "let go", self._name)
        return True

    def _capped(self, wait: float) -> float:
        """A wait, no longer than a tick of the note while there is one (up to its first touch, before)."""
        if self._tick is None:
            return wait
        first = self._note_from - time.monotonic()
        return min(wait, self._tick, first) if first > 0 else min(wait, self._tick)

    def _look(self) -> None:
        """Read the job's state (the poll): a job stopped, or gone, ends the keeper and wakes the render."""
        try:
            state = self._read_state()
        except JobNotFoundError:
            state = "missing"
        except BrokerUnavailableError:  # Redis restarting: keep rendering (see the refresh)
            return
        if state not in LIVE and state != JobState.PAUSED:
            self.state = state

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # (a full pipe already wakes the render)
            os.write(self._wake_w, b"!")

    def _let_go(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                os.close(self._wake_r)
                os.close(self._halt)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        try:
            os.eventfd_write(self._halt, 1)  # the thread's listen ends at once
            if self._note is not None:  # the node stops renewing the lease now
                self._note.remove()
            # the thread ends at once, its subscription kept for the slot's next batch (JobStore.listen_for_stop):
            # not left listening for up to LISTEN_SLICE while that batch subscribes anew. A thread held up longer (a
            # refresh riding out a Redis restart) is not waited for: a late refresh is a no-op.
            self._thread.join(EXIT_WAIT)
        finally:
            self._let_go()
