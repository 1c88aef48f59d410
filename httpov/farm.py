"""The Python API for pipelines: `from httpov import Farm`. One interface over the two ways the CLI reaches a farm:
Redis and storage directly (this machine's settings, an operator's) or a farm's web API with an account's token
(`Farm(server=URL, token=...)`, as `httpov --server`). Submit answers a typed Job; wait, fetch, cancel and events
are those of httpov.client.Client (or httpov.remote.RemoteClient), so the CLI and a script do the same thing."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from httpov.access import Identity
from httpov.errors import BadInputError
from httpov.events import DEFAULT_LIMIT, MAX_LIMIT, Event
from httpov.options import SubmitOptions
from httpov.settings import Settings
from httpov.view import JobView

#: The events after which a job does nothing more unless someone acts on it again (retry, resume).
ENDING = frozenset({"done", "failed", "cancelled", "deleted"})


def connect(settings: Settings, transfer: Any = None) -> Any:
    """The client of the farm `settings` name: httpov.remote.RemoteClient through the web API when a server is set
    (HTTPOV_SERVER, `server` in the config file, --server), else httpov.client.Client on Redis and storage. The one
    place the CLI and Farm choose; `transfer` tells a remote client's uploads and downloads (the CLI's bars)."""
    if settings.server:
        from httpov.remote import RemoteClient

        return RemoteClient(settings, transfer)
    from httpov.client import Client

    return Client(settings)  # its Celery app is built only by the calls that queue batches


def event_stream(client: Any, job_id: str | None = None, after: str | None = None, limit: int = DEFAULT_LIMIT,
                 follow: bool = False, until: float | None = None, **who: Any) -> Iterator[Event | None]:
    """`httpov events [--follow]`: the newest `limit` events (of `job_id`; those after event id `after`), then with
    `follow` each new one as it comes, None after each quiet spell, until the time `until` (None: for ever)."""
    found = client.events(job_id, after, limit, **who)
    yield from found
    if follow:
        # from the last one read; none read: from the stream's start, so that nothing written meanwhile is missed
        yield from client.follow_events(job_id, found[-1].id if found else after or "0-0", until=until, **who)


def _job_id(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else str(job)


@dataclass(frozen=True)
class Job:
    """A job on a farm, as submit queued it: its id and what it renders. Its methods act on the farm as the Farm's
    account does, so another account's Job object is refused as that account would be."""

    id: str
    name: str
    first: int  # the first and last frame it renders
    last: int
    width: int
    height: int
    batches: int
    notes: tuple[str, ...] = ()  # what submit chose or noticed (the CLI's `note:` lines)
    warnings: tuple[str, ...] = ()  # an ini key that is no POV-Ray option, a pool with no live node
    farm: Farm | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.id

    @property
    def frames(self) -> int:
        return self.last - self.first + 1

    def _farm(self) -> Farm:
        if self.farm is None:
            raise BadInputError(f"job {self.id} is not bound to a farm: use Farm.job({self.id!r})")
        return self.farm

    def view(self) -> JobView:
        """The job as it is now (`httpov status JOB --json`)."""
        return self._farm().view(self)

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> JobView:
        """Block until the job ends: its JobView when every frame rendered, else JobFailedError (failed, cancelled,
        or still running after `timeout` seconds)."""
        return self._farm().wait(self, timeout, poll)

    def fetch(self, output: Path | str) -> list[Path]:
        """Its rendered frames (PNG, checked against the job's size) into `output`, logs into `output/logs`."""
        return self._farm().fetch(self, output)

    def cancel(self) -> None:
        self._farm().cancel(self)

    def events(self, follow: bool = False, timeout: float | None = None) -> Iterator[Event]:
        """Its events, oldest first; with `follow` as they come until it ends (Farm.events)."""
        return self._farm().events(self, follow=follow, timeout=timeout)


class Farm:
    """A render farm to submit to, wait on, fetch from and hear events of.

    `Farm()` / `Farm.from_env()`: this machine's settings (HTTPOV_* over the config file, as the CLI reads them):
    through `httpov web` when they name a server, else Redis and storage directly. `Farm(server=URL, token=TOKEN)`:
    a farm's web API as the token's account (no broker password). `settings=` gives the settings whole; `who=` (an
    httpov.access.Identity, direct access only) acts as that account instead of the local operator."""

    def __init__(self, server: str | None = None, token: str | None = None, *, settings: Settings | None = None,
                 who: Identity | None = None) -> None:
        settings = settings if settings is not None else Settings.from_env()
        if server is not None:
            settings = settings.with_(server=server, token=token if token is not None else settings.token)
        elif token is not None:
            settings = settings.with_(token=token)
        if settings.server and who is not None:
            raise BadInputError("Farm(who=...) acts as an account with direct Redis access: through a server the "
                                "token says who you are", hint="give server and token, or who, not both")
        self.settings = settings
        self.client = connect(settings)
        self._who: dict[str, Any] = {} if settings.server else {"who": who}

    @classmethod
    def from_env(cls) -> Farm:
        """The farm this machine's settings name, as `httpov` without --server reaches it."""
        return cls()

    @property
    def remote(self) -> bool:
        """Whether this farm is reached through its web API (a server URL) rather than Redis."""
        return bool(self.settings.server)

    def __repr__(self) -> str:
        return f"Farm(server={self.settings.server!r})" if self.remote else "Farm(direct)"

    def submit(self, scene: Path | str, *, frames: int | None = None, after: Job | str | Iterable[Job | str] = (),
               after_frames: Job | str | None = None, after_anyway: bool = False, **options: Any) -> Job:
        """Queue `scene` (a .zip, a folder, or a .ini/.pov file) as `httpov submit` does; answers its Job.

        `frames`: frames in the animation; `after`: a job or jobs (or 'ID,ID') it waits for (state waiting) until
        they are done, failing if one fails unless `after_anyway`; `after_frames`: a job whose frame N must be done
        before its frame N. Every other option of `httpov submit` by its field name (width, height, count, slices,
        name, priority, time_limit, pool, notify, ...: httpov.options.SubmitOptions), checked as the CLI checks them
        (OptionError)."""
        waits = [after] if isinstance(after, Job) else after.split(",") if isinstance(after, str) else list(after)
        given: dict[str, Any] = {**options, "frames": frames, "after": [_job_id(j) for j in waits] or None,
                                 "after_frames": _job_id(after_frames) if after_frames is not None else None,
                                 "after_anyway": after_anyway}
        parsed = SubmitOptions.parse({k: v for k, v in given.items() if v is not None}, self.settings)
        sub = self.client.submit(Path(scene), parsed, **self._who)
        s = sub.spec
        return Job(s.id, s.name, s.first, s.last, s.width, s.height, len(s.batches), tuple(sub.notes),
                   tuple(sub.warnings), self)

    def job(self, job_id: str) -> Job:
        """A job already on the farm, by id (JobNotFoundError if there is none, ForbiddenError if hidden)."""
        v = self.view(job_id)
        return Job(v.id, v.name, v.first_frame, v.last_frame, v.width, v.height, v.batches_total, farm=self)

    def view(self, job: Job | str) -> JobView:
        return self.client.view(_job_id(job), **self._who)

    def jobs(self, states: list[str] | None = None, name: str | None = None, user: str | None = None,
             limit: int | None = None) -> list[JobView]:
        """The newest `limit` jobs (None: all) in `states`, named like `name`, of `user`, oldest first."""
        return self.client.views(states, name, user, limit, **self._who)

    def wait(self, job: Job | str, timeout: float | None = None, poll: float = 0.5) -> JobView:
        return self.client.wait(_job_id(job), poll=poll, timeout=timeout, **self._who)

    def fetch(self, job: Job | str, output: Path | str) -> list[Path]:
        return self.client.fetch(_job_id(job), Path(output), **self._who)

    def cancel(self, job: Job | str) -> None:
        self.client.cancel(_job_id(job), **self._who)

    def events(self, *jobs: Job | str, after: str | None = None, limit: int | None = None, follow: bool = False,
               timeout: float | None = None) -> Iterator[Event]:
        """Job events this account may see, oldest first: of `jobs` (none: every job's), the newest `limit` (of each
        job named, by default all its events up to 10,000; of every job, 50), or those after event id `after`. With
        `follow`, then each new one as it comes, until every job named has
        ended (done, failed, cancelled, deleted) or `timeout` seconds have passed (None: no limit; with no job
        named, only the timeout ends it)."""
        ids = [_job_id(j) for j in jobs]
        limit = limit or (MAX_LIMIT if ids else DEFAULT_LIMIT)
        until = None if timeout is None else time.time() + timeout
        source: Iterable[Event | None]
        if len(ids) > 1:  # what happened so far, job by job (one read each), then every event as it comes
            past = sorted((e for i in ids for e in self.client.events(i, after, limit, **self._who)),
                          key=lambda e: tuple(int(n) for n in e.id.split("-")))
            later = self.client.follow_events(None, past[-1].id if past else after or "0-0", until=until,
                                              **self._who) if follow else iter(())
            source = _chain(past, later)
        else:
            source = event_stream(self.client, ids[0] if ids else None, after, limit, follow, until, **self._who)
        open_jobs = set(ids)
        for event in source:
            if event is None or (ids and event.job not in ids):
                continue  # a quiet spell (the follow ends itself at `until`), or another job's event
            yield event
            if follow and ids and event.kind in ENDING:
                open_jobs.discard(event.job)
                if not open_jobs:
                    return


def _chain(first: Iterable[Event], then: Iterator[Event | None]) -> Iterator[Event | None]:
    yield from first
    yield from then
