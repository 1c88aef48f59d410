"""Job events: what happened to which job, recorded once, in order, in one Redis stream, and read back for
`httpov events`, the web API's event stream and the webhooks (httpov.webhooks).

An event is written by the atomic step that makes it happen (the Lua scripts of httpov.store and JobStore.create's
MULTI): a job moved to 'done' by two racing nodes is one move, so one event. The stream entry's id is the event's
id and its order. Events are trimmed to HTTPOV_KEEP_DAYS as they are read, and capped in length as they are written
(httpov.store.jobs.MAX_EVENTS)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from httpov.access import Action, Identity, allowed
from httpov.errors import BadInputError, BrokerUnavailableError
from httpov.store.keys import Keys
from httpov.text import shown

#: Events `httpov events` shows without --limit; the most one read may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000
#: The kinds of events, in the words they are stored and sent with.
KINDS = ("submitted", "started", "batch-failed", "paused", "resumed", "retried", "done", "failed", "cancelled",
         "deleted")
_READ_CHUNK = 500


@dataclass(frozen=True)
class Event:
    """One event. `detail`: the batch of a batch-failed event and its error, a failed job's reason ('' else); text
    from povray or users, so data: shown with httpov.text.shown in a terminal, escaped on a page."""

    id: str  # the stream entry's id (<milliseconds>-<n>): the order, and where a follower resumes
    at: float  # seconds since the epoch
    kind: str
    job: str
    owner: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def event(entry_id: str, fields: Mapping[str, str]) -> Event:
    return Event(entry_id, int(entry_id.split("-")[0]) / 1000.0, fields.get("kind", ""), fields.get("job", ""),
                 fields.get("owner", ""), fields.get("detail", ""))


def notify_urls(fields: Mapping[str, str]) -> list[str]:
    """The job's own webhook URLs an event carries (its record's `notify`, copied by the step that wrote it)."""
    try:
        urls = json.loads(fields.get("notify") or "[]")
    except ValueError:
        return []
    return [url for url in urls if isinstance(url, str)] if isinstance(urls, list) else []


class EventLog:
    """`<prefix>:events`, the stream of job events (oldest first); `keep_days` (HTTPOV_KEEP_DAYS): events older are
    trimmed whenever events are read."""

    def __init__(self, redis: Any, prefix: str, keep_days: float | None = None) -> None:
        self.redis, self.key = redis, Keys(prefix).events()
        self.keep_days = keep_days

    def trim(self) -> None:
        if self.keep_days:
            oldest = int((time.time() - self.keep_days * 86400.0) * 1000)
            self.redis.xtrim(self.key, minid=str(oldest), approximate=False)

    def events(self, who: Identity, job: str | None = None, after: str | None = None,
               limit: int = DEFAULT_LIMIT) -> list[Event]:
        """The events `who` may see (of jobs they may view), of `job`, oldest first: the first `limit` after event
        id `after`, or without it the newest `limit`."""
        try:
            self.trim()
            if after is not None:
                return self._after(who, job, after, limit)
            return self._newest(who, job, limit)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailableError(f"cannot reach Redis for the job events: {exc}") from exc

    def _newest(self, who: Identity, job: str | None, limit: int) -> list[Event]:
        high, found = "+", cast(list[Event], [])
        while len(found) < limit:
            chunk = self.redis.xrevrange(self.key, max=high, min="-", count=_READ_CHUNK)
            found += [e for e in (event(i, f) for i, f in chunk) if _sees(who, e, job)][:limit - len(found)]
            if len(chunk) < _READ_CHUNK:
                break
            high = "(" + chunk[-1][0]
        return found[::-1]

    def _after(self, who: Identity, job: str | None, after: str, limit: int) -> list[Event]:
        low, found = "(" + check_id(after), cast(list[Event], [])
        while len(found) < limit:
            chunk = self.redis.xrange(self.key, min=low, max="+", count=_READ_CHUNK)
            found += [e for e in (event(i, f) for i, f in chunk) if _sees(who, e, job)][:limit - len(found)]
            if len(chunk) < _READ_CHUNK:
                break
            low = "(" + chunk[-1][0]
        return found

    def last_id(self) -> str:
        """The newest event's id ('0-0' for none): a follower that wants only what comes next starts after it."""
        newest = self.redis.xrevrange(self.key, count=1)
        return newest[0][0] if newest else "0-0"

    def follow(self, who: Identity, job: str | None = None, after: str | None = None, wait: float = 5.0,
               until: float | None = None) -> Iterator[Event | None]:
        """The events after `after` (None: from now on) as they come, waiting up to `wait` seconds at a time
        (yields None after a wait with nothing new, so a caller can stop or send a keep-alive), until the time
        `until` (None: for ever)."""
        try:
            last = check_id(after) if after is not None else self.last_id()
            while until is None or time.time() < until:
                block = wait if until is None else max(0.001, min(wait, until - time.time()))
                reply = self.redis.xread({self.key: last}, count=_READ_CHUNK, block=int(block * 1000))
                seen = False
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        found = event(entry_id, fields)
                        if _sees(who, found, job):
                            seen = True
                            yield found
                if not seen:
                    yield None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailableError(f"cannot reach Redis for the job events: {exc}") from exc


def check_id(text: str) -> str:
    """An event id as the stream has it (<milliseconds>-<n>, or <milliseconds>); BadInputError otherwise."""
    head, _, tail = text.partition("-")
    if not head.isdigit() or len(head) > 20 or (tail and (not tail.isdigit() or len(tail) > 20)):
        raise BadInputError(f"{shown(repr(text)[:60])} is not an event id (such as 1767000000000-0)")
    return text


def _sees(who: Identity, found: Event, job: str | None) -> bool:
    return (job is None or found.job == job) and allowed(who, Action.VIEW, found.owner)
