"""Submit options (frames, image size, batch size, slices, priority, name, user, pool, caps, time limit, radiosity
cache, photons, strict ini): one typed object, checked in one place for the CLI, the web form, the JSON API and `httpov
render`."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from httpov.access import NAME, NAME_RULE
from httpov.errors import BadInputError, OptionError, Problem
from httpov.errors import literal as _literal
from httpov.paths import JOB_ID
from httpov.photons import PHOTON_MODES
from httpov.plan import AUTO, RADIOSITY_MODES, check_name
from httpov.settings import Settings, check_notify, check_pool
from httpov.text import shown

#: A job's owner (submit --user): the one name rule of accounts and owners, as it shows in `httpov status` and keys
#: the fair share.
USER_NAME = NAME
PRIORITIES = (0, 9)  # lowest, highest

__all__ = ["OptionError", "Problem", "SubmitOptions", "parse_priority"]  # the first two live in httpov.errors


class _Refused(Exception):
    """A rule's refusal of one field's value: a Problem's text and hint."""

    def __init__(self, text: str, hint: str | None = None) -> None:
        super().__init__(text)
        self.text, self.hint = text, hint


def _q(value: object) -> str:
    """A value as a message quotes it (repr, control characters written out), for a Problem's template."""
    return _literal(shown(repr(value)[:60]))


def _whole(value: object) -> int:
    """An int, or text of one (a form field); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Refused(f"{{0}} must be a whole number, got {_q(value)}")


def _at_least_1(value: object, settings: Settings) -> int:
    number = _whole(value)
    if number < 1:
        raise _Refused(f"{{0}} must be at least 1, got {number}")
    return number


def _slices(value: object, settings: Settings) -> int | str:
    """Row slices per frame, or 'auto' (sized by the farm: plan.auto_slices)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        _whole(value)
    except _Refused:
        raise _Refused(f"{{0}} must be a whole number or {AUTO}, got {_q(value)}") from None
    return _at_least_1(value, settings)


def _priority(value: object, settings: Settings | None = None) -> int:
    number = _whole(value)
    low, high = PRIORITIES
    if not low <= number <= high:
        raise _Refused(f"{{0}} must be between {low} and {high}, got {number}")
    return number


def _time_limit(value: object, settings: Settings) -> int:
    number = _whole(value)
    if not 0 < number <= settings.task_time_limit:
        raise _Refused(f"{{0}} must be between 1 and {settings.task_time_limit} s (HTTPOV_TASK_TIME_LIMIT), "
                       f"got {number}")
    return number


def _one_of(modes: tuple[str, ...]) -> Callable[[object, Settings], str]:
    """The rule of an option that is one of `modes` (--radiosity-cache, --photons)."""
    def rule(value: object, settings: Settings) -> str:
        mode = value.strip() if isinstance(value, str) else value
        if mode not in modes:
            raise _Refused(f"{{0}} must be one of {', '.join(modes)}, got {_q(value)}")
        return str(mode)
    return rule


def _flag(value: object, settings: Settings) -> bool:
    if not isinstance(value, bool):
        raise _Refused(f"{{0}} must be true or false, got {_q(value)}")
    return value


def _job_ids(value: object, settings: Settings) -> tuple[str, ...]:
    """Job ids, as a list or comma-separated text ('a1b2,c3d4')."""
    words = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
    if words is None:
        raise _Refused(f"{{0}}: job ids are text, got {_q(value)}")
    ids = tuple(dict.fromkeys(str(w).strip() for w in words if str(w).strip()))
    wrong = [w for w in ids if not JOB_ID.match(w)]
    if wrong or not ids:
        raise _Refused(f"{{0}}: {_q(wrong[0]) if wrong else 'nothing'} is not a job id",
                       "give job ids as `httpov status` lists them, comma-separated")
    return ids


def _job_id(value: object, settings: Settings) -> str:
    ids = _job_ids(value, settings)
    if len(ids) != 1:
        raise _Refused("{0} names one job, got " + _literal(", ".join(ids)))
    return ids[0]


def _name(value: object, settings: Settings) -> str:
    try:
        check_name(value)  # the rule a render node applies to the job record too
    except BadInputError as exc:
        raise _Refused(_literal(str(exc)), exc.hint) from None
    assert isinstance(value, str)
    return value


def _user(value: object, settings: Settings) -> str:
    if not isinstance(value, str) or not USER_NAME.match(value):
        raise _Refused(f"{{0}} must be {_literal(NAME_RULE)}, got {_q(value)}")
    return value


def _notify(value: object, settings: Settings) -> tuple[str, ...]:
    urls = value.split() if isinstance(value, str) else value  # a form's text: URLs separated by spaces or lines
    if not isinstance(urls, (list, tuple)) or not all(isinstance(url, str) for url in urls):
        raise _Refused(f"{{0}} must be a list of URLs, got {_q(value)}")
    try:
        return tuple(check_notify(list(urls), settings.notify_hosts))
    except BadInputError as exc:
        raise _Refused(_literal(str(exc).replace("--notify ", "{0} ")), exc.hint) from None


def _pool(value: object, settings: Settings) -> str:
    if not isinstance(value, str):
        raise _Refused(f"{{0}}: a pool name is text, got {_q(value)}")
    try:
        check_pool(value, where="")  # the rule HTTPOV_POOLS follows on the render nodes
    except BadInputError as exc:
        raise _Refused("{0}" + _literal(str(exc))) from None  # '--pool: a pool name is ...', as HTTPOV_POOLS says
    return value


@dataclass(frozen=True)
class SubmitOptions:
    """How a job is to be rendered, as `httpov submit`'s options say it. Build one with `parse`, which checks every
    rule (the constructor checks none); None means the default (frames: the ini's range; count: adaptive, from the
    scene's measured frame time; name: the scene's; user: whoever submits it)."""

    name: str | None = None  # display text only (default: the scene's name)
    frames: int | None = None  # frames in the animation (sets Final_Frame)
    width: int | None = None  # image width in pixels, instead of the ini's (HTTPOV_MAX_WIDTH, HTTPOV_MAX_PIXELS)
    height: int | None = None  # image height in pixels, instead of the ini's (HTTPOV_MAX_HEIGHT, HTTPOV_MAX_PIXELS)
    count: int | None = None  # frames per batch
    slices: int | str | None = None  # row slices per frame, or 'auto' (sized by the live farm) ...
    slice_rows: int | None = None  # ... or rows per slice
    priority: int = 5  # 0 (lowest) to 9 (highest)
    time_limit: int | None = None  # seconds a batch may run, at most HTTPOV_TASK_TIME_LIMIT
    radiosity_cache: str = "auto"  # RADIOSITY_MODES: auto (a pre-pass per sliced frame), shared, off
    photons: str = "shared"  # PHOTON_MODES: shared (a sliced frame's photons shot once by its pre-pass), off
    any_povray: bool = False  # any node's povray version may render it (default: the first node's only)
    user: str | None = None  # whose job it is
    pool: str | None = None  # only render nodes of this pool (HTTPOV_POOLS) take its batches
    max_processes: int | None = None  # at most this many of its batches render at once
    max_nodes: int | None = None  # on at most this many render nodes at once
    after: tuple[str, ...] = ()  # job ids: it waits (state 'waiting') until they are done
    after_frames: str | None = None  # a job id: its frame N is sent once that job's frame N is done
    after_anyway: bool = False  # released even if a job it waits for fails or is cancelled (default: it fails too)
    strict: bool = False  # refuse a scene whose ini has a key that is no POV-Ray option (default: warn of it)
    notify: tuple[str, ...] = ()  # webhook URLs the farm POSTs the job's events to (httpov.webhooks)

    @classmethod
    def parse(cls, raw: Mapping[str, object], settings: Settings) -> SubmitOptions:
        """The options from `raw` (values typed, or text as a form sends them: numbers and the radiosity mode are
        stripped, blank is not given; None is not given), every rule checked against the farm's `settings`.
        Raises OptionError naming every field in the wrong; a key that is no option is a TypeError (a bug)."""
        unknown = sorted(set(raw) - set(_RULES))
        if unknown:
            raise TypeError(f"not a submit option: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for field in fields(cls):
            value = raw.get(field.name)
            if value is None or (field.name in _BLANK_IS_UNSET and isinstance(value, str) and not value.strip()):
                continue
            try:
                values[field.name] = _RULES[field.name](value, settings)
            except _Refused as exc:
                problems.append(Problem((field.name,), exc.text, exc.hint))
        if values.get("slices") is not None and values.get("slice_rows") is not None:
            problems.append(Problem(("slice_rows", "slices"), "give exactly one of {1} and {0}"))
        if problems:
            raise OptionError(problems)
        return cls(**values)


_RULES: dict[str, Callable[[object, Settings], object]] = {
    "name": _name, "frames": _at_least_1, "width": _at_least_1, "height": _at_least_1,
    "count": _at_least_1, "slices": _slices, "slice_rows": _at_least_1,
    "priority": _priority, "time_limit": _time_limit, "radiosity_cache": _one_of(RADIOSITY_MODES),
    "photons": _one_of(PHOTON_MODES), "any_povray": _flag,
    "user": _user, "pool": _pool, "max_processes": _at_least_1, "max_nodes": _at_least_1, "strict": _flag,
    "notify": _notify, "after": _job_ids, "after_frames": _job_id, "after_anyway": _flag,
}
#: Fields a form sends as text, where an empty field means "not given".
_BLANK_IS_UNSET = {"frames", "width", "height", "count", "slices", "slice_rows", "priority", "time_limit",
                   "radiosity_cache", "photons", "max_processes", "max_nodes", "notify", "after", "after_frames"}


def parse_priority(value: object) -> int:
    """A job's new priority, from a number or its text (the API's priority call), by submit's rule; OptionError
    (field `priority`) otherwise."""
    try:
        return _priority(value)
    except _Refused as exc:
        raise OptionError([Problem(("priority",), exc.text)]) from None
