"""Per-user limits set by admins: most render processes at once, most live jobs, highest priority, fair-share weight.

Each user (a job's owner) may have an entry of their own; a `*` entry holds the farm's defaults for everyone
without one, and a field set in neither takes the Settings default (HTTPOV_USER_MAX_PROCESSES, _MAX_JOBS,
_MAX_PRIORITY; a weight of 1). Entries are stored in Redis (JobStore.user_limits), one JSON object per user, with
only the fields the admin set. 0 means no limit for processes and jobs. The limits bind a job's owner, whoever
submits it; only the priority cap spares admins (a priority above it is theirs to give).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from httpov.access import Identity, check_name
from httpov.errors import BadInputError, ForbiddenError
from httpov.settings import Settings
from httpov.text import shown

#: The entry that applies to every user without one of their own.
DEFAULT = "*"
_HINT = "an admin sets the limits: `httpov limits set {} ...` (README.md, Per-user limits)"


@dataclass(frozen=True)
class UserLimits:
    """One entry: None for a field it leaves to the `*` entry and then to the farm's settings."""

    max_processes: int | None = None  # render processes running the user's batches at once (0: no limit)
    max_jobs: int | None = None  # the user's live jobs (queued, running, paused) at once (0: no limit)
    max_priority: int | None = None  # the highest priority the user may give a job (0-9)
    weight: float | None = None  # the user's fair share relative to the others' (> 0)

    def __post_init__(self) -> None:
        for name, low, high in (("max_processes", 0, None), ("max_jobs", 0, None), ("max_priority", 0, 9)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < low or (high is not None and value > high)):
                span = f"{low} to {high}" if high is not None else f"a whole number, at least {low}"
                raise BadInputError(f"{name.replace('_', ' ')} must be {span}, got {shown(repr(value)[:40])}")
        w = self.weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w)
                              or not 0 < w <= 1000):
            raise BadInputError(f"weight must be a number above 0 and at most 1000, got {shown(repr(w)[:40])}")

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> UserLimits:
        """An entry as stored; anything unreadable counts as no entry (the defaults apply)."""
        try:
            data = json.loads(text) if text else {}
            return cls(**{f.name: data[f.name] for f in fields(cls) if isinstance(data, dict) and f.name in data})
        except (ValueError, TypeError, BadInputError):
            return cls()

    def over(self, under: UserLimits) -> UserLimits:
        """This entry, its unset fields taken from `under`."""
        return UserLimits(**{f.name: getattr(under, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
                             for f in fields(self)})

    def changed(self, **given: Any) -> UserLimits:
        """A copy with the fields given (not None) changed."""
        return UserLimits(**{**asdict(self), **{k: v for k, v in given.items() if v is not None}})


@dataclass(frozen=True)
class Limits:
    """What binds one user: their entry over the `*` entry over the farm's settings."""

    max_processes: int
    max_jobs: int
    max_priority: int
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def farm_defaults(settings: Settings) -> UserLimits:
    return UserLimits(max_processes=settings.user_max_processes or 0, max_jobs=settings.user_max_jobs or 0,
                      max_priority=settings.user_max_priority, weight=1.0)


def resolve(entries: dict[str, str], user: str, defaults: UserLimits) -> Limits:
    """The limits that bind `user`, from the stored entries (name -> JSON, as JobStore.user_limits answers) over
    the farm's `defaults` (farm_defaults)."""
    merged = UserLimits.from_json(entries.get(user)).over(UserLimits.from_json(entries.get(DEFAULT))).over(defaults)
    return Limits(int(merged.max_processes or 0), int(merged.max_jobs or 0),
                  9 if merged.max_priority is None else merged.max_priority, float(merged.weight or 1.0))


def user_budgets(budget: int, users: dict[str, Limits]) -> dict[str, int]:
    """Fair share's window slots for each user competing on one queue at one priority: `budget` for the heaviest
    weight, the others in proportion to theirs (so a user alone, whatever their weight, still fills the farm), and
    no more than a user's max processes (more could only wait: the render node defers a batch past the cap); at
    least 1 each."""
    if not users:
        return {}
    top = max(limits.weight for limits in users.values())
    out = {}
    for user, limits in users.items():
        part = math.ceil(budget * limits.weight / top - 1e-9)
        out[user] = max(1, min(part, limits.max_processes) if limits.max_processes else part)
    return out


def check_entry_name(name: str) -> str:
    """A user's name, or `*`, as an entry's name."""
    return name if name == DEFAULT else check_name(name)


def check_priority(limits: Limits, priority: int, owner: str, who: Identity, what: str = "a job") -> None:
    """ForbiddenError naming the limit if `priority` is above the owner's highest; admins are exempt."""
    if priority > limits.max_priority and not who.admin:
        raise ForbiddenError(f"priority {priority} for {what} of {shown(owner)} is above the user's highest "
                             f"priority, {limits.max_priority} (max priority)", hint=_HINT.format(shown(owner)))


def check_jobs(limits: Limits, live: int, owner: str) -> None:
    """ForbiddenError naming the limit if `owner` already has their most live jobs."""
    if limits.max_jobs and live >= limits.max_jobs:
        raise ForbiddenError(f"{shown(owner)} has {live} live job(s), the most the user may have at once "
                             f"(max jobs {limits.max_jobs}): wait for one to end, or cancel one",
                             hint=_HINT.format(shown(owner)))
