"""The pictures' geometry (httpov.web.charts): a job's timeline from its batch records, the farm's use from the nodes'
samples; bounded whatever the job's size. And the render node's meter of its processes busy (worker/reaper.py)."""
from __future__ import annotations

from typing import Any

from httpov.web.charts import LABEL, MAX_BARS, MAX_LANES, WIDTH, farm_use, job_timeline
from httpov.worker.reaper import UseMeter

T0 = 1_700_000_000.0


def batches(done=None, failed=None, running=None, requeued=None) -> Any:
    return {"done": done or {}, "failed": failed or {}, "running": running or {}, "attempts": {},
            "requeued": requeued or {}, "parked": [], "frames": [], "blocked": [], "history": []}


def test_lanes_bars_and_marks_from_the_records():
    records = batches(
        done={"f1-1": {"node": "a@h", "started": T0, "finished": T0 + 10, "seconds": 9.0, "attempt": 1},
              "f2-2": {"node": "b@h", "started": T0 + 50, "finished": T0 + 60, "attempt": 2},  # a retry
              # an older release's record: no start, its povray seconds before its end
              "f3-3": {"node": "b@h", "finished": T0 + 100, "seconds": 20.0}},
        failed={"f2-2x": {"error": "boom", "node": "a@h", "at": T0 + 40}},
        running={"f4-4": {"node": "a@h", "started": T0 + 90, "token": "t"}})
    chart = job_timeline(records, now=T0 + 100)
    assert chart is not None
    assert [lane.name for lane in chart.lanes] == ["a@h", "b@h"]
    a, b = chart.lanes
    scale = WIDTH / 100
    assert [(bar.kind, bar.x, bar.width) for bar in a.bars] == [("done", LABEL, 10 * scale),
                                                                ("running", LABEL + 90 * scale, 10 * scale)]
    assert [(bar.kind, bar.x, bar.width) for bar in b.bars] == [("done", LABEL + 50 * scale, 10 * scale),
                                                                ("done", LABEL + 80 * scale, 20 * scale)]
    assert [(m.kind, m.x, m.count) for m in a.marks] == [("failed", LABEL + 40 * scale, 1)]
    assert [(m.kind, m.x) for m in b.marks] == [("retried", LABEL + 50 * scale)]
    assert "batch f2-2x failed" in a.marks[0].title
    assert chart.summary.startswith("3 batches done and 1 rendering on 2 render nodes, 1 failed, 1 retried")
    assert chart.height > 2 * 22 and chart.width == LABEL + WIDTH
    assert [label for _, label in chart.ticks][0] == "22:13:20"  # T0 in UTC
    drawn = chart.to_json()  # GET /api/jobs/ID/timeline's: what live.js draws again
    assert [lane["label"] for lane in drawn["lanes"]] == ["a@h", "b@h"] and drawn["axis_y"] == chart.axis_y
    assert drawn["lanes"][0]["marks"][0]["title"] == a.marks[0].title and drawn["left"] == LABEL


def test_a_requeued_batch_is_marked_retried_and_no_record_no_picture():
    records = batches(done={"f1-1": {"node": "a@h", "started": T0, "finished": T0 + 5, "attempt": 1}},
                      requeued={"f1-1": 1})
    chart = job_timeline(records, now=T0 + 5)
    assert chart is not None and [m.kind for m in chart.lanes[0].marks] == ["retried"]
    assert job_timeline(batches(), now=T0) is None  # nothing started yet: no picture
    assert job_timeline(batches(running={"f1-1": {"node": "", "started": 0.0, "token": "t"}}), now=T0) is None


def test_a_big_job_is_bounded_lanes_merged_bars_and_marks_counted():
    """10,000 batches on 40 nodes: at most MAX_LANES lanes (the least busy nodes in one), at most MAX_BARS bars and
    marks of a kind in a lane (closer ones merged, failures counted): the markup stays small."""
    done, failed = {}, {}
    for i in range(10_000):
        node = f"node{i % 40:02d}@h"
        start = T0 + (i // 40) * 3.0 + (5.0 if i % 40 == 39 else 0.0)
        done[f"f{i}-{i}"] = {"node": node, "started": start, "finished": start + 2.5 + (i % 40) * 0.01}
        if i % 7 == 0:
            failed[f"f{i}-{i}x"] = {"error": "e", "node": node, "at": start}
    chart = job_timeline(batches(done=done, failed=failed), now=T0 + 800)
    assert chart is not None
    assert len(chart.lanes) == MAX_LANES and chart.lanes[-1].name == f"{40 - MAX_LANES + 1} other nodes"
    assert all(len(lane.bars) <= MAX_BARS and len(lane.marks) <= MAX_BARS for lane in chart.lanes)
    assert sum(m.count for lane in chart.lanes for m in lane.marks) == len(failed)  # every failure still counted
    others = chart.lanes[-1]
    assert all(bar.x >= LABEL and bar.x + bar.width <= LABEL + WIDTH + 1 for bar in others.bars)


def test_long_names_are_cut_in_labels_only():
    name = "render-node-with-a-very-long-name@host.example"
    chart = job_timeline(batches(done={"f1-1": {"node": name, "started": T0, "finished": T0 + 1}}), now=T0 + 1)
    assert chart is not None and chart.lanes[0].name == name and len(chart.lanes[0].label) == 24


def test_farm_use_rises_with_the_processes_busy():
    now = T0 + 3600
    minute = now - now % 60
    samples = {"a@h": [(minute - 240, 1.0), (minute - 120, 2.0), (minute - 60, 2.0), (minute, 4.0)],
               "b@h": [(now - 7 * 3600, 1.0)]}  # older than the picture: left out
    chart = farm_use(samples, {"a@h": 4, "b@h": 2}, now=now, hours=1)
    assert chart is not None and [lane.name for lane in chart.lanes] == ["a@h"]
    lane = chart.lanes[0]
    x = [round(LABEL + (at - (now - 3600)) * WIDTH / 3600, 1) for at in (minute - 240, minute - 180, minute - 120)]
    # a quarter busy for a minute, nothing said for one (down to the base), half for two minutes, then all
    x.append(round(LABEL + (minute - (now - 3600)) * WIDTH / 3600, 1))
    assert lane.area == f"M{x[0]} 22.0V16.5H{x[1]}V22.0M{x[2]} 22.0V11.0H{x[3]}V0.0H{LABEL + WIDTH:.1f}V22.0Z"
    assert lane.note == "a@h: 2.2 of 4 processes busy on average, 4 at most"
    assert "a@h 2.2 of 4 on average" in chart.summary
    assert farm_use({"b@h": [(now - 7 * 3600, 1.0)]}, {}, now=now, hours=1) is None


def test_farm_use_stays_small_whatever_the_farm():
    """40 nodes, a different share busy every minute for 6 hours: 12 lanes, each one path of a few KiB."""
    now = T0
    samples = {f"n{i:02d}@h": [(now - now % 60 - m * 60, float((m * 7 + i) % 9)) for m in range(360)]
               for i in range(40)}
    chart = farm_use(samples, {f"n{i:02d}@h": 8 for i in range(40)}, now=now, hours=6)
    assert chart is not None and len(chart.lanes) == MAX_LANES
    assert max(len(lane.area) for lane in chart.lanes) < 12_000 and all(not lane.bars for lane in chart.lanes)


def test_the_meter_gives_each_minute_its_mean():
    meter = UseMeter()
    assert meter.add(T0 + 0.5, 2) == (T0 - T0 % 60, 2.0)
    assert meter.add(T0 + 1.5, 4)[1] == 3.0
    later = T0 - T0 % 60 + 60
    assert meter.add(later + 1, 1) == (later, 1.0)  # a new minute starts afresh


def test_bars_far_apart_are_merged_until_a_lane_holds_max_bars():
    done = {f"f{i}-{i}": {"node": "a@h", "started": T0 + i * 10, "finished": T0 + i * 10 + 1} for i in range(200)}
    chart = job_timeline(batches(done=done), now=T0 + 2000)
    assert chart is not None
    bars = chart.lanes[0].bars
    assert len(bars) == MAX_BARS  # 200 bars 3.6 units apart: the narrowest gaps (here the first) closed
    assert sum(int(bar.title.split(": ")[1].split(" ")[0]) for bar in bars) == 200  # every batch still counted
