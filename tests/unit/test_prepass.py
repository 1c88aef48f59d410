"""The radiosity pre-pass's pure parts: batch ids, which batches wait for it, the cache's key, the probe's reading,
the check of a cache file before povray reads it."""
from __future__ import annotations

import time

import pytest

from httpov.errors import BadInputError, SceneError
from httpov.eta import estimate, work_units
from httpov.plan import (
    Batch,
    JobSpec,
    check_batch,
    check_spec,
    radiosity_digest,
    released_by,
    waiting_for_prepass,
    wrappable,
)
from httpov.scene import mentions
from httpov.view import Prepass, from_snapshot
from httpov.worker.radiosity import MIN_PRETRACE_SHARE, BadCache, check_cache, pretrace_share, uses_radiosity

SCENE_KEY = "scenes/" + "a" * 64 + ".zip"


def spec(frames: int = 1, slices: int = 2, radiosity: str = "prepass", pre: list[int] | None = None,
         **fields) -> JobSpec:
    rows = [(1, 32), (33, 48)][:slices] if slices else None
    batches = [Batch(f, f, prepass=True).id for f in (pre if pre is not None else range(1, frames + 1))]
    if rows:
        batches += [Batch(f, f, r).id for f in range(1, frames + 1) for r in rows]
    else:
        batches += [Batch(f, f).id for f in range(1, frames + 1)]
    values = dict(id="j1", name="t", scene_key=SCENE_KEY, root="", pov="scene.pov", options={"Quality": "9"},
                  initial=1, final=frames, first=1, last=frames, width=64, height=48, count=1, slices=rows,
                  created=time.time(), batches=batches, radiosity=radiosity)
    values.update(fields)
    return JobSpec(**values)


def test_a_pre_pass_batch_id_round_trips_and_says_what_it_is():
    batch = Batch(7, 7, prepass=True)
    assert batch.id == "f000007-000007-pre" and Batch.from_id(batch.id) == batch
    assert batch.label == "frame 7 pre-pass"
    assert Batch.from_id("f000007-000007-r00001-00032") == Batch(7, 7, (1, 32))
    for bad in ("f000007-000007-post", "f000007-000007-r00001", "f000007-000007-pre-x"):
        with pytest.raises(BadInputError):
            Batch.from_id(bad)


def test_slices_wait_for_their_frames_pre_pass_and_are_released_by_it():
    s = spec(frames=2)
    assert waiting_for_prepass(s, s.batches) == ["f000001-000001-pre", "f000002-000002-pre"]
    # frame 1's pre-pass is done (a retry): its slices go at once, frame 2's still wait
    todo = [b for b in s.batches if b != "f000001-000001-pre"]
    assert waiting_for_prepass(s, todo) == ["f000002-000002-pre", "f000001-000001-r00001-00032",
                                            "f000001-000001-r00033-00048"]
    assert released_by(s, Batch(2, 2, prepass=True)) == ["f000002-000002-r00001-00032",
                                                         "f000002-000002-r00033-00048"]
    plain = spec(frames=2, radiosity="off", pre=[])
    assert waiting_for_prepass(plain, plain.batches) == plain.batches


def test_a_shared_pre_pass_holds_back_every_batch():
    s = spec(frames=3, slices=0, radiosity="shared", pre=[1])
    assert waiting_for_prepass(s, s.batches) == ["f000001-000001-pre"]
    assert released_by(s, Batch(1, 1, prepass=True)) == ["f000001-000001", "f000002-000002", "f000003-000003"]


def test_the_cache_key_follows_what_radiosity_depends_on():
    s = spec(frames=2)
    assert radiosity_digest(s, 1) == radiosity_digest(spec(frames=2), 1)  # another job, same scene and settings
    assert len({radiosity_digest(s, 1), radiosity_digest(s, 2), radiosity_digest(spec(frames=2, width=32), 1),
                radiosity_digest(spec(frames=2, options={"Quality": "8"}), 1),
                radiosity_digest(spec(frames=3), 1)}) == 5
    shared = spec(frames=2, slices=0, radiosity="shared", pre=[1])
    assert radiosity_digest(shared, 1) == radiosity_digest(shared, 2) != radiosity_digest(s, 1)


def test_the_job_record_check_refuses_a_forged_plan_or_pre_pass():
    check_spec(spec())
    with pytest.raises(SceneError, match="radiosity plan"):
        check_spec(spec(radiosity="always"))
    with pytest.raises(SceneError, match="wrapper"):
        check_spec(spec(pov='x.pov" #declare'))
    assert not wrappable('a"b.pov') and not wrappable("a\\b.pov") and wrappable("sub/main.pov")
    off = spec(radiosity="off")
    with pytest.raises(BadInputError):
        check_batch(off, "f000001-000001-pre")


def test_the_probe_reads_povrays_render_statistics():
    assert uses_radiosity("Render Time:\n  Photon Time:      No photons\n  Radiosity Time:   No radiosity\n") is False
    assert uses_radiosity("  Radiosity Time:   0 hours  0 minutes  0 seconds (0.028 seconds)\n") is True
    assert uses_radiosity("Parse Error: something\n") is None
    # cornell.pov at 8x6: its pretrace_start 0.04 runs no pretrace step, but the final pass computed samples
    cornell = ("Radiosity samples calculated:              398 (1.33 %)\nRadiosity samples reused:"
               "                29576\n  Radiosity Time:   No radiosity\n")
    assert uses_radiosity(cornell) is True
    assert uses_radiosity("Radiosity samples calculated:    0 (0.00 %)\n  Radiosity Time:   No radiosity\n") is False


#: The pass tables of povray 3.7.0.10 at 160x120 -A: blocks/stackernight.pov (pretrace 1/1) and radiosity3.pov.
STACKERNIGHT = """----------------------------------------------------------------------------
  Pass     Depth 0           Total
----------------------------------------------------------------------------
  1              1               1
  Final      11458           11458
----------------------------------------------------------------------------
  Total      11459           11459
  Weight     1.000
----------------------------------------------------------------------------
Render Time:
"""
RADIOSITY3 = """  Pass     Depth 0           Total
----------------------------------------------------------------------------
  1            130             130
  2            519             519
  Final       3433            3433
----------------------------------------------------------------------------
  Total       4082            4082
"""
CORNELL = """  Pass     Depth 0    Depth 1    Depth 2           Total
----------------------------------------------------------------------------
  Final         36        275         87             398
----------------------------------------------------------------------------
  Total         36        275         87             398
"""


def test_the_pretrace_share_reads_povrays_pass_table():
    assert pretrace_share(STACKERNIGHT) == pytest.approx(1 / 11459)
    assert pretrace_share(STACKERNIGHT) < MIN_PRETRACE_SHARE  # the slices need no whole-frame pretrace
    assert pretrace_share(RADIOSITY3) == pytest.approx(649 / 4082)
    assert pretrace_share(RADIOSITY3) > MIN_PRETRACE_SHARE
    room = ("  Pass     Depth 0    Depth 1           Total\n" + "-" * 76 +  # the research room, pretrace 1/1, 64x48
            "\n  1              1         40              41\n  Final        221        351             572\n")
    assert pretrace_share(room) == pytest.approx(1 / 222)
    assert pretrace_share(CORNELL) == 0.0  # the 8x6 probe: no pretrace step (never read from a probe)
    assert pretrace_share("Render Time:\n  Radiosity Time:   No radiosity\n") is None


def test_submit_looks_for_the_word_radiosity_in_any_file():
    files = {"scene.pov": b"#include \"light.inc\"\n", "light.inc": b"global_settings { Radiosity { } }",
             "pov.ini": b"Input_File_Name=scene.pov"}
    assert mentions(list(files), files.__getitem__) == {"radiosity"}
    assert mentions(["scene.pov", "pov.ini"], files.__getitem__) == set()


def test_the_pre_pass_counts_no_frame_and_status_shows_its_stage():
    s = spec()
    assert work_units("f000001-000001-pre", 48) == 0.0
    batches = {"done": {}, "running": {}, "failed": {}, "attempts": {}, "requeued": {}, "parked": [], "frames": [],
               "blocked": []}
    now = time.time()
    view = from_snapshot({"state": "queued", "created": str(now)}, s, batches, now)
    assert view.prepass == Prepass(kind="radiosity", total=1, done=0, running=0, failed=0)
    assert view.prepass.text == "pre-pass: radiosity 0/1"
    done = {"f000001-000001-pre": {"node": "a", "seconds": 2.0, "frames": 0, "finished": now}}
    running = {"f000001-000001-r00001-00032": {"node": "a", "started": now - 1}}
    estimate(s, "running", {**batches, "done": done, "running": running}, now, now - 3)  # no division by zero
    view = from_snapshot({"state": "running", "created": str(now)}, s, {**batches, "done": done}, now)
    assert view.prepass is not None and view.prepass.text == "pre-pass: radiosity 1/1"
    assert from_snapshot({"state": "queued", "created": str(now)}, spec(radiosity="off", pre=[]), batches,
                         now).prepass is None


#: Two samples as povray 3.7.0.10 wrote them in a pre-pass of scripts/research/scenes/room.pov (tab-separated).
SAMPLES = ("C2\t-2.2578\t3\t-1.26548\t7f007f\t0.0975\t0.0894\t0.0731\t0.845094\t0.773322\t055c7a\n"
           "C1\t1.72453\t-2.22045e-16\t-0.37736\t7ffe7f\t0.0113\t0.0093\t0.0073\t0.179018\t0.0347149\tdc972c\n")


def test_a_cache_as_povray_writes_it_passes(tmp_path):
    path = tmp_path / "ok.rca"
    path.write_text(SAMPLES + "P\nB1.0\n")
    assert check_cache(path) == 2


@pytest.mark.parametrize("line, why", [
    ("C2\tnan\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t0.8\t0.7\t055c7a", "not finite"),
    ("C2\t-2.2\t3\t-1.2\t7f007f\t0.1\tinf\t0.1\t0.8\t0.7\t055c7a", "not finite"),
    ("C2\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t1e999\t0.7\t055c7a", "not finite"),
    ("C2\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t-NaN\t0.7\t055c7a", "not finite"),
    ("C99\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t0.8\t0.7\t055c7a", "depth 99"),
    ("C0\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t0.8\t0.7\t055c7a", "depth 0"),
    ("C2\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t0\t0.7\t055c7a", "distances"),
    ("C2\t-2.2\t3\t-1.2\tzzzzzz\t0.1\t0.1\t0.1\t0.8\t0.7\t055c7a", "hex"),
    ("C2\t-2.2\t3\t-1.2\t7f007f\t0.1\t0.1\t0.1\t0.8\t0.7", "not a radiosity sample"),
    ("C2 " + "1" * 120 + " 3 -1.2 7f007f 0.1 0.1 0.1 0.8 0.7 055c7a", "longer than"),
    ("#include \"evil.inc\"", "not a radiosity sample"),
])
def test_a_cache_povray_could_choke_on_is_refused(tmp_path, line, why):
    path = tmp_path / "bad.rca"
    path.write_text(SAMPLES + line + "\n")
    with pytest.raises(BadCache, match=why) as refused:
        check_cache(path)
    assert "line 3" in str(refused.value)
