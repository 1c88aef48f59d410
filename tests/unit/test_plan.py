"""Unit tests: frame ranges as POV-Ray numbers them, and splitting jobs into batches."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpov.errors import OptionError, SceneError, flag
from httpov.plan import (
    Batch,
    FrameRange,
    adaptive_count,
    batch_time_limit,
    frame_range,
    frame_seconds,
    image_size,
    net_seconds,
    split,
)
from httpov.scene import parse_ini


def test_range_comes_from_the_ini():
    fr = frame_range(parse_ini("Initial_Frame=1\nFinal_Frame=10\n"))
    assert (fr.initial, fr.final, fr.first, fr.last) == (1, 10, 1, 10)


def test_still_is_one_frame_numbered_one():
    fr = frame_range(parse_ini(""))
    assert (fr.initial, fr.final, fr.first, fr.last) == (1, 1, 1, 1)


def test_frames_option_sets_the_animation_length_from_initial_frame():
    fr = frame_range(parse_ini("Initial_Frame=0\n"), frames=125)
    assert (fr.initial, fr.final, fr.count) == (0, 124, 125)


def test_subset_keeps_the_whole_animation_for_clock_values():
    fr = frame_range(parse_ini("+KFI1 +KFF100 +SF10 +EF19"))
    assert (fr.initial, fr.final, fr.first, fr.last) == (1, 100, 10, 19)


def test_fractional_subset():
    fr = frame_range(parse_ini("+KFI1 +KFF11\nSubset_Start_Frame=0.5\n"))
    assert (fr.first, fr.last) == (6, 11)


@pytest.mark.parametrize("frames", [0, -3])
def test_frames_must_be_positive(frames):
    with pytest.raises(OptionError) as raised:  # a field of submit: each surface names it its own way
        frame_range(parse_ini(""), frames=frames)
    assert raised.value.said(flag).startswith("--frames must") and str(raised.value).startswith("frames must")


def test_backwards_range_is_a_scene_error():
    with pytest.raises(SceneError, match="Final_Frame"):
        frame_range(parse_ini("+KFI10 +KFF2"))


def test_image_size_defaults_to_povray_defaults():
    assert image_size(parse_ini("")) == (320, 240)
    assert image_size(parse_ini("+W64 +H48")) == (64, 48)


def test_split_into_batches_of_count():
    fr = frame_range(parse_ini("+KFI1 +KFF12"))
    assert [(b.first, b.last) for b in split(fr, 5)] == [(1, 5), (6, 10), (11, 12)]


def test_split_sliced_gives_one_batch_per_frame_and_slice():
    fr = frame_range(parse_ini("+KFI1 +KFF2"))
    batches = split(fr, 1, [(1, 32), (33, 48)])
    assert [(b.first, b.rows) for b in batches] == [(1, (1, 32)), (1, (33, 48)), (2, (1, 32)), (2, (33, 48))]


@pytest.mark.parametrize("count", [0, -1])
def test_count_must_be_positive(count):
    with pytest.raises(OptionError) as raised:
        split(frame_range(parse_ini("")), count)
    assert raised.value.said(flag).startswith("--count must") and str(raised.value).startswith("count must")


@given(first=st.integers(-50, 50), n=st.integers(1, 300), count=st.integers(1, 40))
def test_batches_cover_every_frame_exactly_once(first, n, count):
    fr = frame_range(parse_ini(f"+KFI{first}"), frames=n)
    frames = [f for b in split(fr, count) for f in b.frames]
    assert frames == list(range(first, first + n))


@given(st.integers(0, 10**6), st.integers(0, 10**4), st.one_of(st.none(), st.tuples(st.integers(1, 9999),
                                                                                    st.integers(1, 9999))))
def test_batch_id_round_trips(first, extra, rows):
    batch = Batch(first, first + extra, rows)
    assert Batch.from_id(batch.id) == batch


def test_first_time_batches_stay_short_and_spread():
    assert adaptive_count(1, None) == 1
    assert adaptive_count(24, None) == 3  # at least 8 batches
    assert adaptive_count(10_000, None) == 4


def test_measured_frame_time_sets_about_target_seconds_per_batch():
    assert adaptive_count(10_000, 0.1) == 18  # (2.5 - 0.7) / 0.1
    assert adaptive_count(10_000, 5.0) == 1  # a slow frame is a batch of its own
    assert adaptive_count(16, 0.01) == 2  # never fewer than 8 batches


def test_adaptive_count_gives_a_short_job_one_round_of_tasks_not_two():
    # diffuse's 26 frames on a busy node (0.75 s a frame): 8 tasks of 4 frames (3.7 s each), not 13 of 2 in 2 rounds
    assert adaptive_count(26, 0.75) == 4
    assert adaptive_count(26, 1.2) == 1  # 4 frames would be 5.5 s a task: past twice the target, rounds it is
    assert adaptive_count(200, 0.75) == 2  # a long job keeps its short tasks (25 a round would be 19 s)


def test_frame_seconds_is_net_of_povray_start_as_each_node_ran_it():
    assert frame_seconds(0, 0, 0) is None
    assert frame_seconds(8.6, 10, 2) == 0.86
    assert frame_seconds(-0.4, 10, 2) == 0.01
    # a record says the start its node paid: povray's own, or the much shorter one with quick waits
    assert net_seconds({"seconds": 1.3, "start": 0.1}) == pytest.approx(1.2)
    assert net_seconds({"seconds": 1.3, "start": 0.7}) == pytest.approx(0.6)
    assert net_seconds({"seconds": 1.3}) == pytest.approx(0.6), "a record from before: povray's own start"


def test_plan_job_splits_checks_and_adapts_to_measured_frame_times():
    from httpov.errors import BadInputError
    from httpov.plan import plan_job
    from httpov.scene import SceneLayout
    from httpov.settings import Settings

    layout, settings = SceneLayout(root="", ini="scene.ini", pov="scene.pov"), Settings()
    options = parse_ini("Width=32\nHeight=64\nInitial_Frame=1\nFinal_Frame=40\n")
    unknown = plan_job(layout, options, settings, name="s", job_id="j1", created=5.0)
    assert (unknown.id, unknown.created, unknown.count) == ("j1", 5.0, adaptive_count(40, None))
    cheap = plan_job(layout, options, settings, name="s", measured=(4.0, 400, 10))  # 10 ms a frame
    tail = split(frame_range(options), cheap.count, tail=2)  # no live node: planned for two render processes
    assert cheap.count > unknown.count and cheap.batches == [b.id for b in tail]
    sliced = plan_job(layout, parse_ini("Width=32\nHeight=64\n"), settings, name="s", slices=2)
    assert (sliced.count, sliced.slices, len(sliced.batches)) == (1, [(1, 32), (33, 64)], 2)
    with pytest.raises(BadInputError, match="more than the limit of 10"):
        plan_job(layout, options, settings.with_(max_frames=10), name="s")


def test_a_batch_time_limit_is_a_multiple_of_the_jobs_median_frame_time_with_a_floor():
    done = {Batch(1, 2).id: {"seconds": 4.0}, Batch(3, 3).id: {"seconds": 3.0}, Batch(4, 4).id: {"seconds": 500.0},
            Batch(5, 5).id: {"seconds": 1.0}, Batch(9, 9, prepass=True).id: {"seconds": 900.0}}  # 2, 3, 500, 1 s a
    # frame (a pre-pass renders no frame: not a sample)
    assert batch_time_limit(done, 48, Batch(6, 8).id, factor=20, floor=10) == 20 * 2.5 * 3  # median 2.5, 3 frames
    assert batch_time_limit(done, 48, Batch(6, 6).id, factor=20, floor=600) == 600  # the floor
    assert batch_time_limit(done, 48, Batch(6, 6, (1, 12)).id, factor=20, floor=1) == 20 * 2.5 / 4  # a quarter
    assert batch_time_limit({}, 48, Batch(6, 6).id, factor=20, floor=1) is None  # nothing measured yet
    assert batch_time_limit(done, 48, Batch(6, 6, prepass=True).id, factor=20, floor=1) is None


def _frames_done(order: list[str]) -> set[int]:
    return {f for batch_id in order for f in Batch.from_id(batch_id).frames}


@pytest.mark.parametrize("frames,count", [(100, 1), (1000, 1), (1000, 4), (250, 2), (26, 1), (10_000, 7)])
def test_preview_order_covers_every_tenth_after_ten_percent(frames, count):
    from httpov.plan import FrameRange, preview_order

    planned = [b.id for b in split(FrameRange(1, frames, 1, frames), count)]
    order = preview_order(planned)
    assert sorted(order) == sorted(planned)  # every batch once, each still its neighbouring frames
    seen = _frames_done(order[:max(10, -(-len(planned) // 10))])
    tenths = {(f - 1) * 10 // frames for f in seen}
    assert tenths == set(range(10))


def test_preview_order_starts_first_last_middle():
    from httpov.plan import FrameRange, preview_order

    order = preview_order([b.id for b in split(FrameRange(1, 101, 1, 101), 1)])
    assert [Batch.from_id(b).first for b in order[:3]] == [1, 101, 51]


@given(st.integers(1, 400), st.integers(1, 9), st.integers(1, 50))
def test_preview_order_is_a_permutation_keeping_batches_whole(frames, count, start):
    from httpov.plan import FrameRange, preview_order

    planned = [b.id for b in split(FrameRange(start, start + frames - 1, start, start + frames - 1), count)]
    order = preview_order(planned)
    assert sorted(order) == sorted(planned)
    starts = sorted(Batch.from_id(b).first for b in order[:min(len(order), 10)])
    assert starts[0] == start and Batch.from_id(order[min(1, len(order) - 1)]).last == start + frames - 1  # first, last
    if len(planned) >= 10:  # one in each tenth: no gap wider than two tenths
        assert max(b - a for a, b in zip(starts, starts[1:])) <= 2 * frames / 10 + count


def test_preview_order_keeps_a_frames_slices_together_in_their_order():
    from httpov.plan import FrameRange, preview_order

    planned = [b.id for b in split(FrameRange(1, 30, 1, 30), 1, [(1, 32), (33, 64), (65, 70)])]
    order = preview_order(planned)
    assert sorted(order) == sorted(planned)
    for n in range(0, len(order), 3):
        group = [Batch.from_id(b) for b in order[n:n + 3]]
        assert {b.first for b in group} == {group[0].first}
        assert [b.rows for b in group] == [(1, 32), (33, 64), (65, 70)]
    assert [Batch.from_id(b).first for b in order[:6:3]] == [1, 30]


def _first_tenth_of_frames(order: list[str], frames: int) -> set[int]:
    """The frames of the batches handed out first, as long as they hold at most 10% of the job's `frames`."""
    seen: set[int] = set()
    for batch_id in order:
        more = set(Batch.from_id(batch_id).frames)
        if len(seen) + len(more) > frames / 10:
            break
        seen |= more
    return seen


def _spec(batches: list[Batch], first: int, last: int, count: int, order: str = "preview"):
    from httpov.plan import JobSpec

    return JobSpec(id="0123456789", name="n", scene_key="", root="", pov="s.pov", options={}, initial=first,
                   final=last, first=first, last=last, width=8, height=8, count=count,
                   batches=[b.id for b in batches], order=order)


@given(st.integers(100, 3000), st.integers(2, 60), st.integers(0, 16), st.integers(1, 50))
def test_preview_frames_cover_every_tenth_once_ten_percent_is_done_whatever_the_batch_size(frames, count, tail,
                                                                                          start):
    from httpov.plan import FrameRange, handout_order, preview_frames

    fr = FrameRange(start, start + frames - 1, start, start + frames - 1)
    planned = split(fr, count, tail=tail)
    batches = preview_frames(planned, fr)
    assert [f for b in batches for f in b.frames] == list(range(fr.first, fr.last + 1))  # each once
    sizes = sorted(len(b.frames) for b in planned)
    if max(len(b.frames) for b in planned) > frames // 10:  # longer than a tenth: kept whole (cut, several each)
        assert batches == planned
        return
    assert max(len(b.frames) for b in batches) <= count and len(planned) <= len(batches) <= len(planned) + 10
    if sizes.count(1) >= 10:  # a tail's one-frame batches are the preview frames: the same sizes, no batch more
        assert sorted(len(b.frames) for b in batches) == sizes
    order = handout_order(_spec(batches, fr.first, fr.last, count), [b.id for b in batches])
    assert sorted(order) == sorted(b.id for b in batches)
    assert {(f - start) * 10 // frames for f in _first_tenth_of_frames(order, frames)} == set(range(10))


def test_preview_frames_leave_short_jobs_single_frames_and_slices_as_they_are():
    from httpov.plan import FrameRange, preview_frames

    short = FrameRange(1, 99, 1, 99)
    assert preview_frames(split(short, 4), short) == split(short, 4)  # 10% of 99 frames cannot hold ten tenths
    long = FrameRange(1, 400, 1, 400)
    assert preview_frames(split(long, 1), long) == split(long, 1)
    sliced = split(long, 1, [(1, 4), (5, 8)])
    assert preview_frames(sliced, long) == sliced


def test_preview_frames_only_where_the_batches_do_not_all_start_at_once_and_fit_the_farms_limit():
    from httpov.plan import plan_job
    from httpov.scene import SceneLayout
    from httpov.settings import Settings

    layout, scene = SceneLayout(root="", pov="s.pov", ini=None), parse_ini("Initial_Frame=1\nFinal_Frame=104\n")
    sizes = {processes: len(plan_job(layout, scene, Settings(), name="n", count=4, processes=processes).batches)
             for processes in (0, 8, 25, 26, 64)}
    assert sizes == {0: 34, 8: 34, 25: 34, 26: 26, 64: 26}  # 26 batches of 4: one round for 26 processes or more
    assert len(plan_job(layout, scene, Settings().with_(max_batches=35), name="n", count=4).batches) == 26
    assert len(plan_job(layout, scene, Settings().with_(max_batches=36), name="n", count=4).batches) == 34
    assert len(plan_job(layout, scene, Settings(), name="n", count=11).batches) == 10  # longer than a tenth: whole


def test_a_given_count_keeps_its_batches_where_the_preview_frames_would_cost_more_than_their_share():
    """Batches of one size (--count) get preview frames (up to ten batches more, each paying povray's start again)
    only where those starts cost at most PREVIEW_COST of the job's measured work: on frames so cheap that povray's
    start is what batching saves, the batches keep their neighbouring frames, handed out coarse-to-fine. A scene not
    measured yet gets them."""
    from httpov.plan import plan_job, preview_pays
    from httpov.scene import SceneLayout
    from httpov.settings import Settings

    layout, scene = SceneLayout(root="", pov="s.pov", ini=None), parse_ini("Initial_Frame=1\nFinal_Frame=104\n")

    def batches(measured: tuple[float, int, int]) -> list[str]:
        return plan_job(layout, scene, Settings(), name="n", count=4, processes=8, measured=measured).batches
    whole = [b.id for b in split(FrameRange(1, 104, 1, 104), 4)]
    assert batches((3.0, 30, 8)) == whole  # 0.1 s a frame: 8 batches more would cost 9% of the job
    assert len(batches((36.0, 30, 8))) == 34  # 1.2 s a frame: they cost 0.8%
    assert len(batches((0.0, 0, 0))) == 34  # not measured yet
    assert not preview_pays(104, 26, 0.1) and preview_pays(104, 26, 0.4) and preview_pays(104, 26, None)


def test_a_lead_short_of_every_tenth_leaves_the_coarse_to_fine_start_of_the_rest_in_place():
    from httpov.plan import PREVIEW_BATCHES, handout_order, preview_frames, preview_order

    fr = FrameRange(1, 150, 1, 150)
    planned = split(fr, 19, tail=4)  # longer than a tenth: laid out as it is, its tail's one-frame batches at the end
    assert preview_frames(planned, fr) == planned and len(planned[-1].frames) == 1
    ids = [b.id for b in planned]
    order = handout_order(_spec(planned, 1, 150, 19), ids)
    lead = [b for b in order if len(Batch.from_id(b).frames) == 1][:1]
    assert order[:1] == lead and order[1:1 + PREVIEW_BATCHES] == preview_order(
        [b for b in ids if b not in lead])[:PREVIEW_BATCHES]


def test_a_job_planned_in_frames_order_gets_no_preview_frames_and_a_retry_leads_with_its_own():
    from httpov.plan import handout_order, plan_job
    from httpov.scene import SceneLayout
    from httpov.settings import Settings

    layout, scene = SceneLayout(root="", pov="s.pov", ini=None), parse_ini("Initial_Frame=1\nFinal_Frame=200\n")
    frames = plan_job(layout, scene, Settings().with_(batch_order="frames"), name="n", count=5)
    assert frames.order == "frames" and frames.batches == [b.id for b in split(FrameRange(1, 200, 1, 200), 5)]
    preview = plan_job(layout, scene, Settings(), name="n", count=5)
    assert preview.order == "preview" and len(preview.batches) == 40 + 8  # a frame of each tenth on its own
    singles = [Batch.from_id(b).first for b in preview.batches if len(Batch.from_id(b).frames) == 1]
    assert [(f - 1) // 20 for f in singles] == list(range(10))
    assert [f for b in preview.batches for f in Batch.from_id(b).frames] == list(range(1, 201))
    retried = [b for b in preview.batches if 31 <= Batch.from_id(b).first <= 190]  # retry --frames 31-190
    order = handout_order(preview, retried)
    inside = [f for f in singles if 31 <= f <= 190]  # a preview frame every 20 frames: one in a tenth of 31-190
    lead = [Batch.from_id(b).first for b in order[:len(inside)]]
    assert len(inside) >= 7 and sorted(lead) == inside and lead[:2] == [inside[0], inside[-1]]
    assert len(Batch.from_id(order[len(inside)]).frames) > 1
    assert sorted(order) == sorted(retried)


def test_frames_order_keeps_the_planned_order():
    from httpov.plan import FrameRange, JobSpec, handout_order

    planned = [b.id for b in split(FrameRange(1, 40, 1, 40), 4)]
    spec = JobSpec(id="0123456789", name="n", scene_key="", root="", pov="s.pov", options={}, initial=1, final=40,
                   first=1, last=40, width=8, height=8, count=4, batches=planned)
    assert handout_order(spec, planned) != planned
    spec.order = "frames"
    assert handout_order(spec, planned) == planned
