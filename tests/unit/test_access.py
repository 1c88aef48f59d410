"""The one decision on who may do what: every role x every action x own job / another's job / no job."""
from __future__ import annotations

import pytest

from httpov.access import Action, Identity, Role, allowed, check_name, require
from httpov.errors import BadInputError, ForbiddenError

ALICE = {role: Identity("alice", role) for role in Role}
OWN, OTHERS = "alice", "bob"

#: (role, action) -> (own job, another's job)
EXPECTED = {
    (Role.ADMIN, action): (True, True) for action in Action
} | {
    (Role.USER, Action.VIEW): (True, True), (Role.USER, Action.NODES): (True, True),
    (Role.USER, Action.SUBMIT): (True, True), (Role.USER, Action.DOWNLOAD): (True, False),
    (Role.USER, Action.CONTROL): (True, False), (Role.USER, Action.DELETE): (True, False),
    (Role.USER, Action.ADMIN): (False, False),
} | {
    (Role.VIEWER, action): (action in (Action.VIEW, Action.NODES),) * 2 for action in Action
}


@pytest.mark.parametrize(("role", "action"), sorted(EXPECTED))
def test_each_role_and_action_on_own_and_others_jobs(role: Role, action: Action) -> None:
    own, others = EXPECTED[role, action]
    assert allowed(ALICE[role], action, OWN) is own
    assert allowed(ALICE[role], action, OTHERS) is others
    if others:
        require(ALICE[role], action, OTHERS, "j1")
    else:
        with pytest.raises(ForbiddenError, match=f"alice \\({role}\\) may not {action} job j1 \\(owned by bob\\)"):
            require(ALICE[role], action, OTHERS, "j1")


def test_an_action_on_own_jobs_only_needs_an_owner() -> None:
    assert not allowed(ALICE[Role.USER], Action.CONTROL)  # no job named: not "own"
    assert allowed(ALICE[Role.ADMIN], Action.CONTROL)


@pytest.mark.parametrize("name", ["alice", "a.b@c-d", "x" * 64, "7zip"])
def test_names_that_follow_the_rule(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "_ops", "-x", "a b", "a/b", "x" * 65, "\x1b[31m", "é"])
def test_names_refused_with_the_rule_named(name: str) -> None:
    with pytest.raises(BadInputError, match="letters, digits"):
        check_name(name)
