"""Who may do what: the roles, the identity a request or command acts as, and the one decision on every action.

Every surface (CLI, web pages, JSON API, downloads, thumbnails) asks `require(who, action, owner)` before it acts
on a job or on the farm; nothing else decides. A job's owner is the account that submitted it (the job record's
`user` field). The CLI with direct Redis access acts as the local operator: an admin, because whoever holds the
broker's password can do anything to the farm anyway."""
from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from enum import StrEnum

from httpov.errors import BadInputError, ForbiddenError
from httpov.text import shown

#: One name rule for web accounts, token owners and job owners (fair share groups by it).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
NAME_RULE = "1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"


class Role(StrEnum):
    """What an account may do (README's table of roles)."""

    ADMIN = "admin"  # every job, the nodes, accounts and tokens, pools, per-user limits, the audit log
    USER = "user"  # submit; control, retry, delete and download their own jobs; see others' jobs' progress
    VIEWER = "viewer"  # read only: every job's progress and the nodes; no submit, no control, no downloads


class Action(StrEnum):
    """What a request or command does."""

    VIEW = "view"  # a job's progress, state, batches, failures (status, watch, the job page, its JSON)
    DOWNLOAD = "download"  # a job's pictures and files: frames, thumbnails, zips, logs, video, contact sheet
    SUBMIT = "submit"  # a new job (owned by whoever submits it)
    CONTROL = "control"  # cancel, pause, resume, retry (frames), priority
    DELETE = "delete"  # a job's record and stored results
    NODES = "nodes"  # see the render nodes
    ADMIN = "admin"  # accounts, everyone's tokens, pools, per-user limits, the audit log, draining nodes


#: role -> (actions on any job or the farm, actions on the identity's own jobs only)
_TABLE: dict[Role, tuple[frozenset[Action], frozenset[Action]]] = {
    Role.ADMIN: (frozenset(Action), frozenset()),
    Role.USER: (frozenset({Action.VIEW, Action.NODES, Action.SUBMIT}),
                frozenset({Action.DOWNLOAD, Action.CONTROL, Action.DELETE})),
    Role.VIEWER: (frozenset({Action.VIEW, Action.NODES}), frozenset()),
}


@dataclass(frozen=True)
class Identity:
    """Who asks: an account's name and role; `operator` for the CLI with direct Redis access (the record of a job
    such an operator submits for another user says so); `address` where the request came from, for the audit log."""

    name: str
    role: Role
    operator: bool = False
    address: str = ""

    @property
    def admin(self) -> bool:
        return self.role == Role.ADMIN


def check_name(name: str, what: str = "user name") -> str:
    """`name` if it follows the one name rule, else BadInputError naming the rule."""
    if not isinstance(name, str) or not NAME.match(name):
        raise BadInputError(f"{shown(repr(name)[:70])} is not a {what}: {NAME_RULE}")
    return name


def local_operator() -> Identity:
    """The identity of the CLI on a machine with the broker's password: an admin, named by the login name."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        name = "operator"
    return Identity(name if NAME.match(name) else "operator", Role.ADMIN, operator=True, address="local")


def allowed(who: Identity, action: Action, owner: str | None = None) -> bool:
    """May `who` do `action` (to a job owned by `owner`, when it is about a job)?"""
    anywhere, own = _TABLE[who.role]
    return action in anywhere or (action in own and owner is not None and owner == who.name)


def require(who: Identity, action: Action, owner: str | None = None, job_id: str | None = None) -> None:
    """Raise ForbiddenError unless `who` may do `action`; the message names who, what and whose job."""
    if allowed(who, action, owner):
        return
    target = f" job {job_id}" if job_id else ""
    whose = f" (owned by {shown(owner)})" if owner is not None and job_id else ""
    raise ForbiddenError(f"{shown(who.name)} ({who.role}) may not {action}{target}{whose}",
                         hint="an admin can do it, or change your role (`httpov web-user add NAME --role ...`)")
