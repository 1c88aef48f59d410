"""ETA and rate on synthetic farms: the estimate is compared with when the simulated farm really ends."""
from __future__ import annotations

import dataclasses
import heapq
import random

from httpov.eta import active_seconds, cost_model, duration, estimate, measured_rate, schedule, work_text, work_units
from httpov.plan import Batch, JobSpec


def spec_for(batches: list[Batch], height: int = 24) -> JobSpec:
    return JobSpec(id="j1", name="t", scene_key="", root="", pov="scene.pov", options={}, initial=1,
                   final=max(b.last for b in batches), first=1, last=max(b.last for b in batches), width=32,
                   height=height, count=1, batches=[b.id for b in batches])


def simulate(batches: list[Batch], cost, slots: int, at: float, start: float = 1000.0, overhead: float = 0.0):
    """Run a farm of `slots` render processes taking batches in order, each batch holding its process `overhead`
    seconds beyond povray's time; answers (records at `at`, true end)."""
    free = [(start, f"node{i}") for i in range(slots)]
    heapq.heapify(free)
    done, running, end = {}, {}, start
    for b in batches:
        t0, node = heapq.heappop(free)
        seconds = cost(b)
        t1 = t0 + seconds + overhead
        if t1 <= start + at:
            done[b.id] = {"node": node, "seconds": seconds, "frames": b.last - b.first + 1, "finished": t1}
        elif t0 <= start + at:
            running[b.id] = {"node": node, "started": t0}
        heapq.heappush(free, (t1, node))
        end = max(end, t1)
    return {"done": done, "running": running, "failed": {}}, end - (start + at)


def frames(n: int, count: int = 1) -> list[Batch]:
    return [Batch(f, min(f + count - 1, n)) for f in range(1, n + 1, count)]


def test_frames_that_grow_heavier_are_not_averaged_away():
    batches = frames(40)
    cost = lambda b: 1.0 + 0.1 * b.first  # noqa: E731 - frame 40 costs 3.6x frame 1
    records, truth = simulate(batches, cost, slots=2, at=20.0)
    result = estimate(spec_for(batches), "running", records, now=1020.0, started=1000.0)
    assert 0.85 * truth <= result["eta_seconds"] <= 1.15 * truth, (result["eta_seconds"], truth)

    # the estimate a plain mean of the finished frames gives is far off: that is what this module avoids
    done = records["done"]
    mean = sum(r["seconds"] for r in done.values()) / len(done)
    naive = mean * (len(batches) - len(done)) / 2
    assert naive < 0.7 * truth


def test_noisy_constant_frames_give_an_eta_close_to_the_truth():
    rng = random.Random(7)
    noise = {b.id: rng.uniform(0.8, 1.2) for b in frames(60, 3)}
    batches = frames(60, 3)
    records, truth = simulate(batches, lambda b: 3 * 1.5 * noise[b.id], slots=4, at=15.0)
    result = estimate(spec_for(batches), "running", records, now=1015.0, started=1000.0)
    assert 0.8 * truth <= result["eta_seconds"] <= 1.2 * truth, (result["eta_seconds"], truth)
    assert result["render_processes"] == 4 and len(result["running"]) == 4
    assert 0.6 < result["frame_seconds"] < 2.4


def test_a_job_that_starts_with_one_frame_batches_is_not_taken_for_one_of_dear_frames():
    """A long animation's preview frames (plan.preview_frames) finish first; each paid povray's start (its record's
    `start`), which its 4-frame batches pay once for four frames, not four times."""
    from httpov.plan import FrameRange, handout_order, preview_frames, split

    fr = FrameRange(1, 104, 1, 104)
    laid = preview_frames(split(fr, 4), fr)
    spec = spec_for(laid)
    order = [Batch.from_id(b) for b in handout_order(dataclasses.replace(spec, count=4), spec.batches)]
    start, frame = 0.7, 0.3
    records, truth = simulate(order, lambda b: start + frame * len(b.frames), slots=8, at=2.0)
    for info in records["done"].values():
        info["start"] = start
    assert len(records["done"]) == 10 and all(len(Batch.from_id(b).frames) == 1 for b in records["done"])
    result = estimate(spec, "running", records, now=1002.0, started=1000.0)
    assert 0.8 * truth <= result["eta_seconds"] <= 1.2 * truth, (result["eta_seconds"], truth)
    for info in records["done"].values():  # a record of a release before `start`: taken as povray's time alone
        del info["start"]
    assert estimate(spec, "running", records, now=1002.0, started=1000.0)["eta_seconds"] > 1.5 * truth


def test_the_tail_is_not_divided_among_idle_processes():
    batches = frames(4)
    records = {"done": {b.id: {"node": "a", "seconds": 10.0, "frames": 1, "finished": 1000.0 + 10 * i}
                        for i, b in enumerate(batches[:3], 1)},
               "running": {batches[3].id: {"node": "b", "started": 1030.0}}, "failed": {}}
    result = estimate(spec_for(batches), "running", records, now=1034.0, started=1000.0)
    assert result["eta_seconds"] == 6.0  # 10 s expected, 4 s run
    assert result["running"][0]["node"] == "b" and result["running"][0]["progress"] == 0.4
    assert result["nodes"]["b"]["running"] == ["frame 4"]
    assert result["nodes"]["a"]["batches_done"] == 3


def test_more_render_processes_give_a_proportionally_shorter_eta():
    batches = frames(41)
    done = {batches[0].id: {"node": "a", "seconds": 2.0, "frames": 1, "finished": 1002.0}}
    one = {"done": done, "running": {batches[1].id: {"node": "a", "started": 1002.0}}, "failed": {}}
    four = {"done": done, "running": {b.id: {"node": "a", "started": 1002.0} for b in batches[1:5]},
            "failed": {}}
    e1 = estimate(spec_for(batches), "running", one, now=1002.0, started=1000.0)["eta_seconds"]
    e4 = estimate(spec_for(batches), "running", four, now=1002.0, started=1000.0)["eta_seconds"]
    assert e1 == 80.0 and e4 == 20.0


def test_no_honest_eta_without_data_or_without_render_processes():
    batches = frames(4)
    empty = {"done": {}, "running": {batches[0].id: {"node": "a", "started": 1000.0}}, "failed": {}}
    assert estimate(spec_for(batches), "running", empty, now=1005.0, started=1000.0)["eta_seconds"] is None
    one_done = {"done": {batches[0].id: {"node": "a", "seconds": 1.0, "finished": 1001.0}}, "running": {},
                "failed": {}}
    assert estimate(spec_for(batches), "running", one_done, now=1002.0, started=1000.0)["eta_seconds"] is None
    assert estimate(spec_for(batches), "paused", one_done, now=1002.0, started=1000.0)["eta_seconds"] is None
    assert estimate(spec_for(batches), "failed", one_done, now=1002.0, started=1000.0)["eta_seconds"] is None
    every = {"done": {b.id: {"node": "a", "seconds": 1.0, "finished": 1000.0 + i} for i, b in
                      enumerate(batches, 1)}, "running": {}, "failed": {}}
    assert estimate(spec_for(batches), "done", every, now=1010.0, started=1000.0, finished=1004.0)[
        "eta_seconds"] == 0.0


def test_a_batch_running_past_its_expected_time_pushes_the_eta_out():
    batches = frames(3)
    records = {"done": {batches[0].id: {"node": "a", "seconds": 2.0, "finished": 1002.0}},
               "running": {batches[1].id: {"node": "a", "started": 1002.0}}, "failed": {}}
    soon = estimate(spec_for(batches), "running", records, now=1003.0, started=1000.0)["eta_seconds"]
    late = estimate(spec_for(batches), "running", records, now=1012.0, started=1000.0)["eta_seconds"]
    assert soon == 3.0  # 1 s left of frame 2, then frame 3
    assert late > soon + 5


def test_slices_count_as_fractions_of_a_frame():
    assert work_units("f000003-000003-r00001-00032", 96) == 32 / 96
    assert work_units("f000001-000005", 96) == 5
    sliced = [Batch(f, f, rows) for f in (1, 2) for rows in ((1, 32), (33, 64), (65, 96))]
    done = {b.id: {"node": "a", "seconds": 1.0, "finished": 1000.0 + i} for i, b in enumerate(sliced[:3], 1)}
    predict = cost_model(done, 96)
    assert predict is not None and abs(predict(sliced[3].id) - 1.0) < 1e-9


def test_measured_rate_falls_when_no_batch_finishes():
    done = {Batch(f, f).id: {"node": "a", "seconds": 1.0, "finished": 1000.0 + f} for f in range(1, 11)}
    busy = measured_rate(done, 24, since=1000.0, until=1010.0)
    stalled = measured_rate(done, 24, since=1000.0, until=1100.0)
    assert 0.9 < busy <= 1.2 and stalled < 0.1


def test_schedule_and_duration():
    assert schedule([1.0, 3.0], [2.0, 2.0, 2.0]) == 5.0
    assert schedule([], []) == 0.0
    assert (duration(None), duration(42), duration(185), duration(7440)) == ("?", "42s", "3m05s", "2h04m")


def test_time_outside_povray_is_measured_from_the_spacing_of_finishes():
    batches = frames(60, 2)
    records, truth = simulate(batches, lambda b: 2.0, slots=3, at=20.0, overhead=1.0)  # 3 s a batch, 2 in povray
    result = estimate(spec_for(batches), "running", records, now=1020.0, started=1000.0)
    assert 1.3 < result["overhead_factor"] < 1.7
    assert 0.9 * truth <= result["eta_seconds"] <= 1.1 * truth, (result["eta_seconds"], truth)


def test_a_finished_job_shows_its_frames_over_its_whole_time_not_its_last_burst():
    # 20 frames: 14 trickled in over 90 s, then a burst of 6 in the last second
    batches = frames(20)
    done = {b.id: {"node": "n", "seconds": 0.1, "frames": 1,
                   "finished": 1000.0 + (6.0 * i if i < 14 else 89.0 + (i - 14) * 0.2)}
            for i, b in enumerate(batches)}
    records = {"done": done, "running": {}, "failed": {}}
    result = estimate(spec_for(batches), "done", records, now=5000.0, started=1000.0, finished=1090.0)
    assert result["rate_recent"] == round(20 / 90.0, 4)
    live = estimate(spec_for(batches), "running", records, now=1090.0, started=1000.0)
    assert live["rate_recent"] > 2 * result["rate_recent"]  # while it runs: the recent rate



def test_active_seconds_leave_out_pauses_and_the_gap_before_a_retry():
    assert active_seconds(100.0, 160.0, []) == 60.0
    paused = [{"at": 110.0, "what": "paused", "kind": "pause"}, {"at": 140.0, "what": "resumed", "kind": "resume"}]
    assert active_seconds(100.0, 160.0, paused) == 30.0
    assert active_seconds(100.0, 160.0, paused[:1]) == 10.0  # paused still: its clock stopped at the pause
    retried = [{"at": 200.0, "what": "retried", "kind": "retry", "since": 150.0}]
    assert active_seconds(100.0, 230.0, retried) == 80.0  # 50 s rendering, 50 s lying failed, 30 s again
    # paused, cancelled at 130, retried at 300: only 10 s before the pause and 20 s after the retry rendered
    both = [paused[0], {"at": 300.0, "what": "retried", "kind": "retry", "since": 130.0}]
    assert active_seconds(100.0, 320.0, both) == 30.0
    # a pause while queued, before the first batch started, is no gap of its rendering time
    early = [{"at": 50.0, "what": "paused", "kind": "pause"}, {"at": 90.0, "what": "resumed", "kind": "resume"}]
    assert active_seconds(100.0, 130.0, early) == 30.0
    warnings = [{"at": 120.0, "what": "Widht: did you mean Width?", "kind": "warning"}]
    assert active_seconds(100.0, 130.0, warnings) == 30.0



def test_a_nodes_work_reads_in_whole_frames_and_rows_never_as_a_fraction():
    assert work_text(3, 0, 64) == "3 frames" and work_text(1, 0, 64) == "1 frame" and work_text(0, 0, 64) == "0 frames"
    assert work_text(0, 4, 15) == "4 of 15 rows"
    assert work_text(0, 30, 15) == "2 frames" and work_text(1, 34, 15) == "3 frames and 4 of 15 rows"


def test_the_per_node_work_of_a_sliced_job_says_rows():
    spec = spec_for([Batch(1, 1, (1, 4)), Batch(1, 1, (5, 15))], height=15)
    done = {Batch(1, 1, (1, 4)).id: {"node": "a@h", "seconds": 1.0, "finished": 10.0},
            Batch(1, 1, (5, 15)).id: {"node": "b@h", "seconds": 1.0, "finished": 11.0}}
    nodes = estimate(spec, "done", {"done": done, "running": {}}, 12.0, 0.0, 12.0)["nodes"]
    assert nodes["a@h"]["work"] == "4 of 15 rows" and nodes["b@h"]["work"] == "11 of 15 rows"
    assert nodes["a@h"]["frames_done"] == 0.267  # the share, for sums


def test_povrays_row_progress_shows_a_two_hour_frame_part_done():
    """A 1-frame job's only batch, 36% rendered after 43 minutes as its node said: the ETA, the job's percent and the
    node's line come from povray's own progress, with no batch done yet to learn a pace from."""
    from httpov.view import from_snapshot

    batch = Batch(1, 1)
    spec = spec_for([batch])
    running = {batch.id: {"node": "a@h", "started": 1000.0, "progress": 0.36}}
    est = estimate(spec, "running", {"done": {}, "running": running, "failed": {}}, now=1000.0 + 2592, started=1000.0)
    assert est["running"][0]["progress"] == 0.36 and est["frames_rendering"] == 0.36
    assert abs(est["eta_seconds"] - 2592 * 0.64 / 0.36) < 1
    assert est["nodes"]["a@h"]["running"] == ["frame 1 (36%)"]
    record = {"state": "running", "created": "1000", "started": "1000", "spec": "", "error": ""}
    view = from_snapshot(record, spec, {"done": {}, "running": running, "failed": {}, "frames": [], "requeued": {},
                                        "blocked": []}, now=1000.0 + 2592)
    assert (view.percent, view.frames_done, view.eta_seconds is not None) == (36, 0, True)
    # a value no node writes is ignored
    running[batch.id]["progress"] = "36%"
    est = estimate(spec, "running", {"done": {}, "running": running, "failed": {}}, now=3592.0, started=1000.0)
    assert (est["running"][0]["progress"], est["frames_rendering"], est["eta_seconds"]) == (None, 0, None)
