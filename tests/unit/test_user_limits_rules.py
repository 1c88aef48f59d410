"""Unit tests: per-user limits (httpov.user_limits): an entry over `*` over the farm's settings, the refusals, and
fair share's per-user budget by weight and max processes."""
from __future__ import annotations

import pytest

from httpov.access import Identity, Role
from httpov.errors import BadInputError, ForbiddenError
from httpov.settings import Settings
from httpov.user_limits import Limits, UserLimits, check_jobs, check_priority, farm_defaults, resolve, user_budgets

FARM = farm_defaults(Settings())
ALICE = Identity("alice", Role.USER)
ADMIN = Identity("root", Role.ADMIN)


def limits(weight: float = 1.0, max_processes: int = 0) -> Limits:
    return Limits(max_processes=max_processes, max_jobs=0, max_priority=8, weight=weight)


def test_the_farm_defaults_leave_9_to_admins_and_nothing_else_limited():
    assert resolve({}, "alice", FARM) == Limits(max_processes=0, max_jobs=0, max_priority=8, weight=1.0)
    settings = Settings(user_max_processes=4, user_max_jobs=3, user_max_priority=6)
    assert resolve({}, "alice", farm_defaults(settings)) == Limits(4, 3, 6, 1.0)


def test_a_users_entry_wins_over_star_which_wins_over_the_settings_field_by_field():
    entries = {"*": UserLimits(max_jobs=5, weight=2).to_json(), "alice": UserLimits(max_jobs=1).to_json()}
    assert resolve(entries, "alice", FARM) == Limits(max_processes=0, max_jobs=1, max_priority=8, weight=2.0)
    assert resolve(entries, "bob", FARM) == Limits(max_processes=0, max_jobs=5, max_priority=8, weight=2.0)
    assert resolve({"alice": "{not json", "*": "[1]"}, "alice", FARM) == resolve({}, "alice", FARM), \
        "an unreadable entry counts as none"


def test_an_entry_keeps_only_what_was_set_and_refuses_nonsense():
    entry = UserLimits(max_processes=2).changed(weight=0.5, max_jobs=None)
    assert entry == UserLimits(max_processes=2, weight=0.5)
    assert UserLimits.from_json(entry.to_json()) == entry
    assert entry.to_json() == '{"max_processes": 2, "weight": 0.5}'
    for bad in ({"max_priority": 10}, {"max_processes": -1}, {"max_jobs": 1.5}, {"weight": 0}, {"weight": True},
                {"weight": float("nan")}, {"max_priority": "9"}):
        with pytest.raises(BadInputError):
            UserLimits(**bad)  # type: ignore[arg-type]


def test_priority_above_the_owners_highest_is_refused_naming_the_limit_but_not_for_admins():
    bound = resolve({"alice": UserLimits(max_priority=6).to_json()}, "alice", FARM)
    check_priority(bound, 6, "alice", ALICE)
    with pytest.raises(ForbiddenError, match=r"priority 7 .* alice .* 6 \(max priority\)") as refused:
        check_priority(bound, 7, "alice", ALICE)
    assert refused.value.exit_code == 10
    check_priority(bound, 9, "alice", ADMIN)  # an admin may give any priority, to anyone's job


def test_max_jobs_counts_the_live_jobs_and_0_is_no_limit():
    check_jobs(Limits(0, 2, 8, 1.0), 1, "alice")
    with pytest.raises(ForbiddenError, match=r"alice has 2 live job\(s\).*max jobs 2"):
        check_jobs(Limits(0, 2, 8, 1.0), 2, "alice")
    check_jobs(Limits(0, 0, 8, 1.0), 500, "alice")


def test_equal_weights_give_every_user_the_whole_budget():
    assert user_budgets(12, {"alice": limits(), "bob": limits(), "carol": limits()}) == {
        "alice": 12, "bob": 12, "carol": 12}
    assert user_budgets(12, {}) == {}


def test_budgets_scale_with_the_weight_relative_to_the_heaviest():
    assert user_budgets(12, {"alice": limits(2.0), "bob": limits(1.0)}) == {"alice": 12, "bob": 6}
    assert user_budgets(12, {"alice": limits(3.0), "bob": limits(1.0), "carol": limits(1.5)}) == {
        "alice": 12, "bob": 4, "carol": 6}
    assert user_budgets(3, {"alice": limits(100.0), "bob": limits(1.0)}) == {"alice": 3, "bob": 1}, "at least 1"


def test_a_light_user_alone_still_fills_the_farm():
    assert user_budgets(12, {"alice": limits(0.25)}) == {"alice": 12}


def test_max_processes_cuts_the_users_budget():
    assert user_budgets(12, {"alice": limits(max_processes=2), "bob": limits()}) == {"alice": 2, "bob": 12}
    assert user_budgets(12, {"alice": limits(max_processes=20)}) == {"alice": 12}
    assert user_budgets(12, {"alice": limits(2.0, max_processes=5), "bob": limits(1.0)}) == {"alice": 5, "bob": 6}
