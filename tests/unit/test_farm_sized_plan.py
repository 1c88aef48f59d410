"""Unit tests: plans sized by the farm: --slices auto (the render processes, the scene's measured cost by row) and
an animation's last batches shrinking for the render processes."""
from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from httpov.options import SubmitOptions
from httpov.plan import (
    Batch,
    auto_slice_count,
    auto_slices,
    even_cost_slices,
    frame_range,
    plan_job,
    slice_costs,
    split,
    tail_sizes,
)
from httpov.scene import SceneLayout, parse_ini
from httpov.settings import Settings


def _cost(slices: list[tuple[int, int]], costs: list[float]) -> list[float]:
    return [sum(costs[first - 1:last]) for first, last in slices]


def test_two_slices_a_process_on_the_block_grid_without_a_measurement():
    slices = auto_slices(720, processes=4)
    assert len(slices) == 8
    assert all(last % 32 == 0 for _, last in slices[:-1]) and slices[-1][1] == 720 and slices[0][0] == 1


def test_a_frame_has_at_most_one_slice_per_render_block():
    assert auto_slice_count(100, processes=8) == 4
    assert auto_slice_count(20, processes=8) == 1
    assert auto_slice_count(100, processes=1) == 2


def test_no_live_node_plans_for_two_processes():
    assert auto_slice_count(720, processes=0) == 4


def test_a_cheap_frame_is_cut_into_no_more_slices_than_the_processes():
    assert auto_slice_count(720, processes=4, frame_seconds=0.5) == 4  # one slice a process still
    assert auto_slice_count(720, processes=4, frame_seconds=6.6) == 6  # slices of at least a second
    assert auto_slice_count(720, processes=4, frame_seconds=600) == 8


def test_a_sky_above_detail_becomes_one_cheap_slice_and_many_costly_ones():
    costs = [0.001] * 540 + [0.1] * 180  # the bottom quarter holds 97% of the frame's 18.5 s
    slices = auto_slices(720, processes=4, costs=costs)
    assert slices[0][0] == 1 and slices[0][1] >= 512  # the sky in one slice
    spent = _cost(slices, costs)
    assert max(spent) <= 3.3 and len(slices) <= 8  # a block of detail (3.2 s) is the finest cut
    even = _cost(auto_slices(720, processes=4), costs)
    assert max(even) >= 1.9 * max(spent)  # slices of equal rows: the costliest is about twice as costly


@given(st.lists(st.floats(0, 5), min_size=1, max_size=300), st.integers(1, 40))
def test_even_cost_slices_cover_every_row_once_on_the_grid(costs, count):
    slices = even_cost_slices(costs, count)
    assert slices[0][0] == 1 and slices[-1][1] == len(costs) and len(slices) <= count
    assert all(a[1] + 1 == b[0] and a[1] % 32 == 0 for a, b in zip(slices, slices[1:]))
    blocks = [sum(costs[i:i + 32]) for i in range(0, len(costs), 32)]
    # no slice costs more than an even share plus one block (the grid's granularity)
    assert max(_cost(slices, costs)) <= sum(costs) / min(count, len(blocks)) + max(blocks) + 1e-6


def test_the_cost_by_row_comes_from_earlier_slices_net_of_povrays_start():
    done = [(Batch(1, 1, (1, 64)).id, 6.4), (Batch(1, 1, (65, 96)).id, 0.32),  # net of povray's start
            (Batch(1, 1, prepass=True).id, 30.0), (Batch(1, 3).id, 9.0)]
    costs = slice_costs(done, 96)
    assert costs is not None
    assert costs[0] == costs[63] and abs(costs[0] - 0.1) < 1e-9 and abs(costs[64] - 0.01) < 1e-9


def test_no_cost_by_row_unless_slices_covered_every_row():
    assert slice_costs([(Batch(1, 1, (1, 64)).id, 3.0)], 96) is None
    assert slice_costs([], 96) is None
    assert slice_costs([(Batch(1, 1, (1, 200)).id, 3.0)], 96) is None  # another size's: not this frame's


def test_plan_job_slices_auto_from_the_farm_and_the_history():
    settings = Settings()
    options = SubmitOptions.parse({"slices": "auto"}, settings)
    assert options.slices == "auto"
    scene = parse_ini("Width=64\nHeight=720\n")
    layout = SceneLayout(root="", pov="scene.pov", ini=None)
    spec = plan_job(layout, scene, settings, name="s", slices=options.slices, processes=3)
    assert len(spec.slices or []) == 6 and len(spec.batches) == 6
    history = [(Batch(1, 1, rows).id, 20.0 if rows[0] > 540 else 0.01) for rows in spec.slices or []]
    again = plan_job(layout, scene, settings, name="s", slices="auto", processes=3, slice_times=history)
    assert again.slices and again.slices[0][1] >= 512 and all(b - a < 64 for a, b in again.slices[1:])


def test_the_last_batches_shrink_to_one_frame_for_the_processes():
    assert tail_sizes(24, 3, processes=4) == [3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    assert tail_sizes(26, 4, processes=8) == [4, 4, 4, 4, 4, 4, 2]  # one round for 8 processes: kept as it is
    assert tail_sizes(26, 4, processes=4) == [4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]  # 7 of 4 are two rounds
    assert tail_sizes(200, 4, processes=2)[:40] == [4] * 40  # only the last frames are cut finer


@given(st.integers(1, 500), st.integers(1, 30), st.integers(0, 64))
def test_a_shrinking_tail_renders_every_frame_once_in_order(frames, count, processes):
    fr = frame_range(parse_ini(f"Initial_Frame=3\nFinal_Frame={frames + 2}\n"))
    batches = split(fr, count, tail=processes or 1)
    assert [f for b in batches for f in b.frames] == list(range(3, frames + 3))
    sizes = [b.last - b.first + 1 for b in batches]
    assert max(sizes) <= count and sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1 or len(sizes) <= (processes or 1)  # one round of the processes keeps its batches


def test_in_preview_order_the_tails_small_batches_are_handed_out_last():
    from httpov.plan import PREVIEW_BATCHES, handout_order

    layout, settings = SceneLayout(root="", pov="scene.pov", ini=None), Settings()
    scene = parse_ini("Width=32\nHeight=24\nInitial_Frame=1\nFinal_Frame=400\n")
    spec = plan_job(layout, scene, settings, name="a", processes=4, measured=(40.0, 100, 4))  # 0.37 s a frame
    order = handout_order(spec, spec.batches)
    assert sorted(order) == sorted(spec.batches) and order[0] == spec.batches[0] == "f000001-000001"
    sizes = [len(Batch.from_id(b).frames) for b in order]
    assert sizes[:10] == [1] * 10  # the preview frames (preview_frames), one in each tenth
    assert {(Batch.from_id(b).first - 1) * 10 // 400 for b in order[:10]} == set(range(10))
    rest = sizes[10:]  # behind the preview frames, largest first: what runs beside them ends after them
    assert rest == sorted(rest, reverse=True) and rest[-1] == 1 and spec.batches[-1] in order[-20:]
    starts = [Batch.from_id(b).first for b in order[10:10 + PREVIEW_BATCHES]]  # spread over the timeline
    assert {(f - 1) * 5 // 400 for f in starts} == set(range(5))
    frames = handout_order(dataclasses.replace(spec, order="frames"), spec.batches)
    assert frames == spec.batches


def test_an_adaptive_animation_shrinks_its_tail_and_a_given_count_is_kept():
    layout, settings = SceneLayout(root="", pov="scene.pov", ini=None), Settings()
    scene = parse_ini("Width=32\nHeight=24\nInitial_Frame=1\nFinal_Frame=24\n")
    adaptive = plan_job(layout, scene, settings, name="a", processes=4)
    assert adaptive.count == 3 and adaptive.batches[:3] == ["f000001-000003", "f000004-000006", "f000007-000009"]
    assert adaptive.batches[-2:] == ["f000023-000023", "f000024-000024"] and len(adaptive.batches) == 14
    given = plan_job(layout, scene, settings, name="a", count=3, processes=4)
    assert given.batches == [f"f{n:06d}-{n + 2:06d}" for n in range(1, 25, 3)]


def test_no_shrinking_tail_past_the_farms_batch_limit():
    layout, scene = SceneLayout(root="", pov="scene.pov", ini=None), parse_ini("Initial_Frame=1\nFinal_Frame=40\n")
    spec = plan_job(layout, scene, Settings().with_(max_batches=10), name="a", processes=4)
    assert spec.count == 4 and len(spec.batches) == 10  # 10 batches of 4: the tail would have made 18
