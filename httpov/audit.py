"""The audit log: who submitted, controlled, deleted or pruned which job and who changed which token or account, when,
from where, and whether it was done or refused. One Redis stream that every `httpov web` process and the CLI share,
trimmed to HTTPOV_KEEP_DAYS as records are added, with a cap on its length as a safety net.

Job actions are recorded by httpov.client's methods (the one layer the CLI, the pages and the API all pass through):
each is decorated with `audited`. Token and account changes are recorded where they are made, with `recording`."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

import redis

from httpov.access import Identity, local_operator
from httpov.errors import BrokerUnavailableError, HttpovError
from httpov.store.keys import Keys

log = logging.getLogger("httpov.audit")
F = TypeVar("F", bound=Callable[..., Any])

#: The stream's length cap, approximate (Redis trims whole nodes): the bound when HTTPOV_KEEP_DAYS is not set, and a
#: safety net when it is (a flood of actions cannot grow the log without end).
MAX_RECORDS = 100_000
#: Records `httpov audit` and the page show without --limit; the most one request may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000
#: A record's detail and reason are a line, not a document.
MAX_TEXT = 300
#: The outcomes: done; refused (an HttpovError: not allowed, a wrong state, bad input, with its message); failed
#: (anything else, e.g. an interrupted submit).
DONE, REFUSED, FAILED = "done", "refused", "failed"
_READ_CHUNK = 500


@dataclass(frozen=True)
class Record:
    """One action as the log keeps it. Every text in it is data (names, labels, messages): shown with
    httpov.text.shown in a terminal, escaped on a page, unchanged in JSON."""

    id: str  # the stream entry's id (<milliseconds>-<n>)
    at: float  # when, seconds since the epoch
    name: str  # who: the account (or the local operator's login name)
    role: str
    operator: bool  # the CLI with direct Redis access
    address: str  # from where: the web request's remote address, or 'local'
    action: str  # submit, cancel, pause, resume, retry, priority, delete, prune, token.add, account.role...
    job: str  # the job acted on ('' for tokens and accounts)
    detail: str  # what was asked and what came of it (the new priority, the frames, the account)
    outcome: str  # done, refused, failed
    reason: str  # why it was refused or failed

    @property
    def who(self) -> str:
        """'alice (user)', 'jo (admin, operator)'."""
        return f"{self.name} ({self.role}{', operator' if self.operator else ''})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _record(entry_id: str, fields: Mapping[str, str]) -> Record:
    return Record(entry_id, int(entry_id.split("-")[0]) / 1000.0, fields.get("name", ""), fields.get("role", ""),
                  fields.get("operator") == "1", fields.get("address", ""), fields.get("action", ""),
                  fields.get("job", ""), fields.get("detail", ""), fields.get("outcome", ""), fields.get("reason", ""))


def _line(text: object) -> str:
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


class AuditLog:
    """`<prefix>:audit`, a stream of records (oldest first); `keep_days` (HTTPOV_KEEP_DAYS): records older than it are
    trimmed whenever one is added or read; None keeps them up to `max_records`."""

    def __init__(self, redis: Any, prefix: str, keep_days: float | None = None,
                 max_records: int = MAX_RECORDS) -> None:
        self.redis, self.key = redis, Keys(prefix).audit()
        self.keep_days, self.max_records = keep_days, max_records

    def record(self, who: Identity, action: str, job: str = "", detail: str = "", outcome: str = DONE,
               reason: str = "", at: float | None = None) -> None:
        """Add one record (`at`: its time, for a test of the bound; later than the newest record). A Redis that does
        not answer is logged as a warning, not raised: the action itself was done (or refused) already."""
        fields = {"name": who.name, "role": str(who.role), "operator": "1" if who.operator else "0",
                  "address": who.address, "action": action, "job": job, "detail": _line(detail),
                  "outcome": outcome, "reason": _line(reason)}
        try:
            with self.redis.pipeline() as pipe:  # MULTI: the record and the trims, at once
                pipe.xadd(self.key, fields, id="*" if at is None else f"{int(at * 1000)}-*",
                          maxlen=self.max_records, approximate=True)
                self._trim(pipe)
                pipe.execute()
        except Exception as exc:  # redis.RedisError, or a Redis of another kind: never lose the action's own answer
            log.warning("httpov: not recorded in the audit log (%s %s by %s): %s", action, job, who.name, exc)

    def _trim(self, redis: Any) -> None:
        if self.keep_days:
            oldest = int((time.time() - self.keep_days * 86400.0) * 1000)
            redis.xtrim(self.key, minid=str(oldest), approximate=False)

    def records(self, user: str | None = None, job: str | None = None, since: float | None = None,
                limit: int = DEFAULT_LIMIT) -> list[Record]:
        """The newest `limit` records of `user`'s actions (who did it) on `job`, of the last `since` seconds, oldest
        first (newest last)."""
        try:
            return self._read(user, job, since, limit)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailableError(f"cannot reach Redis for the audit log: {exc}") from exc

    def _read(self, user: str | None, job: str | None, since: float | None, limit: int) -> list[Record]:
        self._trim(self.redis)
        low = "-" if since is None else str(int((time.time() - since) * 1000))
        high = "+"
        found: list[Record] = []
        while len(found) < limit:
            chunk = self.redis.xrevrange(self.key, max=high, min=low, count=_READ_CHUNK)
            for entry_id, fields in chunk:
                if (user is None or fields.get("name") == user) and (job is None or fields.get("job") == job):
                    found.append(_record(entry_id, fields))
                    if len(found) == limit:
                        break
            if len(chunk) < _READ_CHUNK:
                break
            high = "(" + chunk[-1][0]  # exclusive: on from the oldest entry of this chunk
        return found[::-1]


@dataclass
class Entry:
    """What one action will record, filled in while it runs: its job (a submit's is known once it is queued), what
    came of it (`done`, added to the detail), one record per job of `jobs` (a prune), or nothing (`skip`)."""

    job: str = ""
    detail: str = ""
    done: str = ""
    jobs: list[str] | None = None
    skip: bool = False

    def text(self, outcome: str) -> str:
        if outcome == DONE and self.done:
            return f"{self.detail}: {self.done}" if self.detail else self.done
        return self.detail


@contextmanager
def recording(audit: AuditLog | None, who: Identity, action: str, job: str = "",
              detail: str = "") -> Iterator[Entry]:
    """Record the action done inside the block: done, refused (an HttpovError, with its message: nothing was
    changed) or failed (anything else); the exception goes on."""
    entry = Entry(job, detail)
    try:
        yield entry
    except HttpovError as exc:
        if audit is not None:
            audit.record(who, action, entry.job, entry.text(REFUSED), REFUSED, str(exc))
        raise
    except BaseException as exc:  # an interrupted submit too
        if audit is not None:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            audit.record(who, action, entry.job, entry.text(FAILED), FAILED, reason)
        raise
    if audit is None or entry.skip:
        return
    for job_id in entry.jobs if entry.jobs else [entry.job]:
        audit.record(who, action, job_id, entry.text(DONE))


Detail = Callable[[Mapping[str, Any]], str]
Done = Callable[[Mapping[str, Any], Any, Entry], None]


def audited(action: str, detail: Detail | None = None, done: Done | None = None) -> Callable[[F], F]:
    """Record each call of a Client method that acts, as its keyword `who` (None: the local operator) on its
    `job_id`: `detail` says from the call's arguments what was asked, `done` (arguments, result, entry) what came of
    it. The method's object has the log as `audit` (None: not recorded)."""
    def wrap(method: F) -> F:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            given = signature.bind(self, *args, **kwargs).arguments
            with recording(self.audit, given.get("who") or local_operator(), action, str(given.get("job_id") or ""),
                           detail(given) if detail else "") as entry:
                result = method(self, *args, **kwargs)
                if done is not None:
                    done(given, result, entry)
            return result
        return cast(F, call)
    return wrap


def age(seconds: float) -> str:
    """An age as `--older-than` and `--since` take it: '30d', '12h', '90m', '45s'."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"

