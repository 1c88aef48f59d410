"""Every failure a user of httpov can meet, one class each, with the CLI exit code it maps to."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


class HttpovError(Exception):
    """Root of httpov's errors: a one-line message a user can act on."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class BadInputError(HttpovError):
    """A command-line value is out of range or malformed (frames, count, slices, priority...)."""

    exit_code = 2


class HomeUnsetError(BadInputError):
    """HOME is unset (or not an absolute path) and a default folder of httpov's (config, data, cache) lives under it."""

    hint = ("set HOME, or XDG_CONFIG_HOME / XDG_DATA_HOME / XDG_CACHE_HOME, or name the file or folder itself "
            "(HTTPOV_CONFIG, HTTPOV_STORAGE, HTTPOV_WEB_ACCOUNTS, HTTPOV_CACHE_DIR)")


class FieldError(BadInputError):
    """Fields of a web form or API request are missing or malformed; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(_named(name, text) for name, text in errors.items()))
        self.errors = errors


def _named(field: str, text: str) -> str:
    """A field's error `text` with the field named first, once: 'width must be at least 1' and 'after: there is no
    job a1b2 of bob's' as they are (an OptionError's problems name their field first), 'choose a scene zip' as
    'scene: choose a scene zip'."""
    return text if names_field(field, text) else f"{field}: {text}"


def names_field(field: str, text: str) -> bool:
    """Whether an error's `text` starts by naming `field` ('width must be...', 'after: there is no job...')."""
    return re.match(rf"{re.escape(field)}\b", text) is not None


def literal(text: str) -> str:
    """`text` as it reads inside a Problem's format template: its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an option. `text` is a str.format template whose {0}, {1}... are the names of
    `fields` (the first is the field it is said beside); each surface names fields its own way: `--max-nodes` on
    the command line, `max_nodes` in the web form and the API. Values in `text` have their braces doubled."""

    fields: tuple[str, ...]
    text: str
    hint: str | None = None

    @property
    def field(self) -> str:
        return self.fields[0]

    def said(self, name: Callable[[str], str] = str) -> str:
        return self.text.format(*map(name, self.fields))


class OptionError(FieldError):
    """Options (of submit, retry...) out of range or malformed: every problem found, each naming its field. Its
    message names the fields as the web form and the API do; the CLI says them as flags (`said(flag)`)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        BadInputError.__init__(self, self.said(), next((p.hint for p in problems if p.hint), None))
        self.errors = {p.field: p.said() for p in problems}

    @classmethod
    def of(cls, field: str, text: str, hint: str | None = None) -> OptionError:
        """One problem of one field: `text` a template whose {0} is the field's name (values' braces doubled)."""
        return cls([Problem((field,), text, hint)])

    def said(self, name: Callable[[str], str] = str) -> str:
        """Every problem in one line, each field named by `name`."""
        return "; ".join(p.said(name) for p in self.problems)


def flag(field: str) -> str:
    """A field as the command line names it: 'slice_rows' -> '--slice-rows'."""
    return "--" + field.replace("_", "-")


class SceneError(HttpovError):
    """The scene given to submit is missing, unreadable, or names no ini/.pov."""

    exit_code = 3


class UnknownIniKeyError(SceneError):
    """The scene's ini has a key that is no POV-Ray ini option (a typo), and submit was asked to be strict."""

    exit_code = 3


class ArchiveError(SceneError):
    """A scene archive is corrupt, hostile (absolute paths, '..', links) or past a size limit."""

    exit_code = 3


class JobNotFoundError(HttpovError):
    """No job has the id the user named."""

    exit_code = 4


class PageNotFoundError(HttpovError):
    """A page number past the last page of a job's frames (the web's ?page=N)."""

    exit_code = 4


class TokenNotFoundError(HttpovError):
    """No API token has the id the user named (revoked already, or a typo)."""

    exit_code = 4


class NodeNotFoundError(HttpovError):
    """No render node seen in the last hour has the name the user named."""

    exit_code = 4


class JobStateError(HttpovError):
    """The job is in a state that does not allow the operation (e.g. resume a finished job)."""

    exit_code = 4


class BrokerUnavailableError(HttpovError):
    """Redis (the broker and job store) does not answer."""

    exit_code = 5
    hint = "Is redis-server running? Check HTTPOV_BROKER_URL."


class StorageError(HttpovError):
    """Shared storage (a directory or an S3 bucket) cannot be reached, read or written."""

    exit_code = 6
    hint = "Check HTTPOV_STORAGE and that every node can reach it."


class NodeFaultError(HttpovError):
    """A render node's own fault (its disk full, out of memory), not the job's: the batch goes to another node."""

    exit_code = 6
    hint = "Free space in the node's HTTPOV_CACHE_DIR (or lower HTTPOV_MIN_FREE_MB), or give it more memory."


class RenderError(HttpovError):
    """povray failed on a batch; `lines` holds the relevant lines of its log."""

    exit_code = 7

    def __init__(self, message: str, lines: list[str] | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.lines = lines or []
        self.transient = transient


class RenderHungError(RenderError):
    """povray made no progress (no CPU, no output) for HTTPOV_NO_PROGRESS_SECONDS, or ran past the batch's time
    limit derived from the job's measured frame times: killed, the batch is tried once more on another node."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message, lines, transient=True)


class ServerUnavailableError(HttpovError):
    """The farm's web server named by --server (HTTPOV_SERVER) cannot be reached."""

    exit_code = 5
    hint = "Is `httpov web` running there? Check --server / HTTPOV_SERVER."


class ServerBusyError(HttpovError):
    """The web server is already doing as much of this work as it may at once (HTTPOV_WEB_BUILDS): try again later."""

    exit_code = 5


class TokenRefusedError(HttpovError):
    """The farm's web server refused the token (HTTPOV_TOKEN): missing, mistyped or revoked."""

    exit_code = 11
    hint = "set HTTPOV_TOKEN to a token of your account (ask the farm's operator for one)"


class ResultError(HttpovError):
    """A rendered result in storage is damaged, or larger than its job's frames can be (a decompression bomb)."""

    exit_code = 9
    hint = "results come from render nodes: `httpov retry JOB` renders the batch again"


class SchemaVersionError(HttpovError):
    """Redis holds a newer layout of httpov's state than this httpov knows (or one it cannot upgrade now)."""


class JobFailedError(HttpovError):
    """A job the user waited for ended failed or cancelled."""

    exit_code = 8


class ForbiddenError(HttpovError):
    """The identity asking may not do this (its role, or the job is someone else's): nothing was changed."""

    exit_code = 10
