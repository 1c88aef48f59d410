"""The re-split's arithmetic: where a running slice is cut, the new slice's id, and the rows each slice delivers."""
from __future__ import annotations

import pytest

from httpov.errors import BadInputError
from httpov.plan import Batch, delivered_slices, resplit_cut, split_batch_id
from httpov.worker.resplit import slowest_slice


@pytest.mark.parametrize(("rows", "done", "cut"), [
    ((1, 128), 0.0, 96),      # renders block row 1-32; 3 whole block rows left: the odd one stays with the slice
    ((1, 160), 0.0, 96),      # 4 left past 1-32: two each
    ((1, 128), 0.25, 96),     # renders 33-64; 2 left: one each
    ((1, 128), 0.5, None),    # renders 65-96; 1 left: not worth a povray start
    ((33, 128), 0.0, 96),     # the grid starts at the slice's first row
    ((97, 250), 0.0, 192),    # a short last block row (225-250) is not counted
    ((1, 128), 1.5, None),    # progress past 1 (a stale or forged one) is taken as done
    ((1, 128), -1.0, 96),
])
def test_a_slice_is_cut_on_its_own_block_grid_halfway_through_what_it_has_left(rows, done, cut):
    assert resplit_cut(rows, done) == cut
    if cut is not None:
        assert (cut - rows[0] + 1) % 32 == 0 and rows[0] < cut < rows[1]


def test_the_new_slice_renders_the_rows_past_the_cut():
    assert split_batch_id("f000001-000001-r00001-00128", 64) == "f000001-000001-r00065-00128"
    for bad in (0, 128, 200):
        with pytest.raises(BadInputError):
            split_batch_id("f000001-000001-r00001-00128", bad)
    with pytest.raises(BadInputError):
        split_batch_id("f000001-000004", 2)


def test_a_cut_slice_renders_up_to_its_cut_and_anything_else_stays_as_it_is():
    sliced = Batch(2, 2, (65, 256))
    assert sliced.ending_at(128) == Batch(2, 2, (65, 128)) and sliced.ending_at(65) == Batch(2, 2, (65, 65))
    for no_cut in (None, 64, 256, 300):  # none, before its rows, its last row, past it: nothing to end early
        assert sliced.ending_at(no_cut) is sliced
    assert Batch(1, 4).ending_at(2) == Batch(1, 4)  # frames, not a slice
    assert Batch(1, 1, prepass=True).ending_at(2) == Batch(1, 1, prepass=True)


def test_each_slice_delivers_its_rows_up_to_its_cut_and_cut_slices_chain():
    slices = [(1, 64), (65, 256)]
    assert delivered_slices(slices, 3, {}) == [("f000003-000003-r00001-00064", 1, 64),
                                               ("f000003-000003-r00065-00256", 65, 256)]
    cuts = {"f000003-000003-r00065-00256": 128, "f000003-000003-r00129-00256": 192,
            "f000009-000009-r00001-00064": 32, "f000003-000003-r00001-00064": 500}  # another frame's; out of range
    assert delivered_slices(slices, 3, cuts) == [("f000003-000003-r00001-00064", 1, 64),
                                                 ("f000003-000003-r00065-00256", 65, 128),
                                                 ("f000003-000003-r00129-00256", 129, 192),
                                                 ("f000003-000003-r00193-00256", 193, 256)]


def test_the_slice_with_the_most_rows_left_is_chosen_never_a_cut_or_whole_frame_or_prepass():
    running = {"f000001-000001-r00001-00064": {"progress": 0.0},
               "f000001-000001-r00065-00256": {"progress": 0.5},   # 96 rows left
               "f000001-000001-r00257-00384": {"progress": 0.0},   # 128 left, but cut already
               "f000001-000001-pre": {}, "f000002-000003": {"progress": 0.0}, "nonsense": {}}
    assert slowest_slice(running, {"f000001-000001-r00257-00384": 320}) == (96.0, "f000001-000001-r00065-00256",
                                                                             224)
    assert slowest_slice({"f000001-000001-r00001-00064": {"progress": 0.0}}, {}) is None
