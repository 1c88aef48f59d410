"""The one job view: built from a JobStore snapshot with no I/O, typed, and `status --json` keeps its keys."""
from __future__ import annotations

import json

from httpov.client import job_failed
from httpov.plan import Batch, JobSpec
from httpov.view import FailedBatch, NodeWork, RunningBatch, from_snapshot

#: `httpov status --json`'s keys, in order: scripts read these.
STATUS_KEYS = [
    "id", "name", "state", "frames_total", "frames_done", "frames_failed", "first_frame", "last_frame",
    "batches_total", "batches_done", "batches_failed", "batches_requeued", "batches_running", "sliced", "width",
    "height", "priority", "created", "finished", "elapsed", "rate", "errors", "nodes_blocked", "radiosity_cache",
    "prepass", "eta_seconds", "eta_at", "frame_seconds", "overhead_factor", "rate_recent", "render_processes",
    "frames_running",
    "batches_queued", "running", "nodes", "failed", "povray", "any_povray", "versions", "history", "user",
    "max_processes", "max_nodes", "queue", "pool", "pool_live",
    "submitted_by", "submitted_by_operator",  # who submitted the job for its owner `user` (#24: owners)
    "after", "after_frames",  # #29: the jobs it waits for (submit --after, --after-frames)
    "notes",
    "idle_since", "stalled",  # #26: a job idle for a while (no render node takes its batches), not just after submit
    "frames_rendering",  # #28: frames' worth of the running batches povray rendered (a frame 36% done: 0.36)
    "photons",  # #27: 'shared' when a sliced frame's slices load its pre-pass's photon map
]


def _snapshot(state: str = "running"):
    batches = [Batch(f, f) for f in range(1, 5)]
    spec = JobSpec(id="j1", name="[bold]x[/]", scene_key="", root="", pov="scene.pov", options={}, initial=1,
                   final=4, first=1, last=4, width=8, height=8, count=1, batches=[b.id for b in batches])
    record = {"state": state, "created": "1000", "started": "1000", "spec": "", "error": ""}
    records = {
        "done": {batches[0].id: {"node": "a@h", "seconds": 1.0, "finished": 1001.0}},
        "running": {batches[1].id: {"node": "b@h", "started": 1001.0}},
        "failed": {batches[2].id: {"node": "a@h", "error": "povray failed: x", "lines": ["x"], "final": True,
                                   "at": 1001.5}},
        "frames": [1], "requeued": {batches[1].id: 1}, "blocked": [],
    }
    return record, spec, records


def test_the_view_is_typed_and_its_json_has_the_status_keys():
    view = from_snapshot(*_snapshot(), now=1001.5)
    assert (view.frames_done, view.frames_failed, view.batches_requeued) == (1, 1, 1)
    assert view.running == [RunningBatch(batch="f000002-000002", label="frame 2", node="b@h", elapsed=0.5,
                                         expected=1.0, progress=0.5, retrying=False)]
    assert view.nodes["a@h"] == NodeWork(batches_done=1, frames_done=1.0, seconds=1.0, running=[], work="1 frame")
    assert view.failed[0] == FailedBatch(batch="f000003-000003", label="frame 3", node="a@h",
                                         error="povray failed: x", lines=["x"], final=True, at=1001.5)
    data = json.loads(json.dumps(view.to_json()))
    assert list(data) == STATUS_KEYS
    assert data["running"][0]["node"] == "b@h" and data["nodes"]["a@h"]["batches_done"] == 1
    assert data["failed"][0]["label"] == "frame 3" and data["batches_failed"] == ["f000003-000003"]
    assert view.errors == ["povray failed: x", "x"] and view.elapsed == 1.5


def test_job_failed_reads_a_view():
    failed = from_snapshot(*_snapshot("failed"), now=1002.0)
    assert str(job_failed(failed)) == "job j1 failed: 1 frame(s) failed: povray failed: x"
    assert failed.eta_text == "-" and failed.ended
    cancelled = from_snapshot(*_snapshot("cancelled"), now=1002.0)
    assert job_failed(cancelled).hint == "`httpov retry j1` renders the rest"


def test_a_hung_batch_shows_in_the_view_and_in_status():
    from httpov.terminal import job_text
    from httpov.view import JobView

    record, spec, records = _snapshot()
    records["history"] = [{"at": 1001.0, "what": "frame 3 hung on a@h: no progress for 120 s", "kind": "hang"},
                          {"at": 1001.2, "what": "frames 1 rendered again"}]
    view = from_snapshot(record, spec, records, now=1001.5)
    assert [h["what"] for h in view.hangs] == ["frame 3 hung on a@h: no progress for 120 s"]
    assert JobView.from_json(json.loads(json.dumps(view.to_json()))).hangs == view.hangs  # `httpov --server`
    assert "frame 3 hung on a@h: no progress for 120 s" in job_text(view)


def test_elapsed_time_leaves_out_the_time_the_job_lay_paused():
    record, spec, records = _snapshot()
    records["history"] = [{"at": 1000.2, "what": "paused", "kind": "pause"},
                          {"at": 1001.2, "what": "resumed", "kind": "resume"}]
    view = from_snapshot(record, spec, records, now=1001.5)
    assert view.elapsed == 0.5  # 1.5 s since it started, 1 s of it paused
    assert view.rate == 2.0  # its one frame over the time it was live


def test_idle_since_is_the_last_time_a_batch_started_or_ended():
    record, spec, records = _snapshot()
    assert from_snapshot(record, spec, records, now=1001.5).idle_since == 1001.5  # the failure at 1001.5
    records["running"] = {}
    records["failed"] = {}
    records["history"] = [{"at": 1003.0, "what": "resumed", "kind": "resume"}]
    view = from_snapshot(record, spec, records, now=1004.0)
    assert view.idle and view.idle_since == 1003.0 and not view.stalled
