"""What the live pages are pushed (httpov.web.stream): a job's view (GET /api/jobs/ID's JSON) or a page of the jobs
list (GET /api/jobs's), sent only when its JSON differs from what was sent, and read no more often than a polling
page would read it (every `gap` s: `httpov web --refresh`). A quiet page is checked every second by the store's
cheap stamp of its jobs (JobStore.stamps: one command of O(1) reads a job) and read again only when that changes
or `full_every` s have passed (what time or the farm alone changes: an ETA, a stall, a node's fault); a busy one
costs what polling does (a read every `gap` s), and a stamp. Every read asks httpov.access again.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from httpov.access import Identity
from httpov.view import JobView

#: Seconds after which a view is read again though its stamp did not change (what time alone changes: its ETA).
FULL_EVERY = 15.0


class Feed:
    """The news of one stream: `read()` answers the views (authorized); `one`: the first view alone is sent."""

    def __init__(self, store: Any, read: Callable[[], list[JobView]], one: bool, gap: float,
                 full_every: float = FULL_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.read, self.one, self.gap = store, read, one, gap
        self.full_every, self.clock = full_every, clock
        self.views = read()  # the first read: refused (403, 404) before any stream opens
        self.stamp = self._stamp()
        self.read_at = clock()
        self.sent: str | None = None

    def _stamp(self) -> str:
        ended = frozenset(view.id for view in self.views if view.ended)
        return str(self.store.stamps([view.id for view in self.views], ended))

    def news(self) -> str | None:
        """The JSON to send when it changed since it was last sent, else None."""
        if self.sent is not None:
            now = self.clock()
            if now - self.read_at < self.gap:
                return None
            stamp = self._stamp()  # before the read: a change between the two is seen at the next check
            if stamp == self.stamp and now - self.read_at < self.full_every:
                return None
            self.stamp = stamp
            self.read_at = now
            self.views = self.read()
        body = [view.to_json() for view in self.views]
        text = json.dumps(body[0] if self.one else body)
        if text == self.sent:
            return None
        self.sent = text
        return text


def job_feed(source: Any, job: str, who: Identity, gap: float) -> Feed:
    """One job's view, for whoever may VIEW it (StatusSource.job asks)."""
    return Feed(source.store, lambda: [source.job(job, who=who)], True, gap)


def jobs_feed(client: Any, who: Identity, states: list[str] | None, user: str | None, limit: int | None,
              skip: int, gap: float) -> Feed:
    """A page of the jobs list, as GET /api/jobs with the same filters answers it (Client.views asks)."""
    return Feed(client.store, lambda: client.views(states, None, user, limit, who=who, skip=skip), False, gap)
