"""Unit tests: how a user's window budget is split between the user's jobs (httpov.dispatch.split)."""
from __future__ import annotations

from httpov.dispatch import split


def test_an_even_split_gives_the_remainder_to_the_newest():
    assert split(6, [0, 0]) == [3, 3]
    assert split(7, [0, 0, 0]) == [2, 2, 3]
    assert split(8, [0, 0, 0]) == [2, 3, 3]


def test_a_capped_job_leaves_the_rest_of_its_part_to_the_others():
    assert split(6, [1, 0]) == [1, 5]
    assert split(9, [0, 2, 0]) == [3, 2, 4]
    assert split(6, [10, 0]) == [3, 3], "a cap above the even part changes nothing"


def test_every_job_keeps_at_least_one_slot():
    assert split(2, [0, 0, 0]) == [1, 1, 1]
    assert split(3, [3, 0]) == [1, 2]
