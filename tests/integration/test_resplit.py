"""The re-split of a still's slowest running slice (issue #28 item 2), with a real Redis, real workers and real povray:
when a render process idles and no batch waits, the slice with the most rows left ends early (povray interrupted and
continued with +C up to the cut) and a new slice renders the rest; the frame equals one povray render pixel for
pixel."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from httpov import dispatch
from httpov.access import Identity, Role
from httpov.dispatch import sweep
from httpov.paths import batch_key
from httpov.plan import Batch, JobSpec
from httpov.worker import povray
from httpov.worker.resplit import resplit_one
from tests.conftest import pixels, povray_direct, write_scene

#: Sky above, costly reflective spheres under a 24x24 area light (no jitter: pixels compare) in the lower half: at
#: 64x256 the lower slice is about 5 s of one core, the upper one a fraction of a second.
UNEVEN_SCENE = """
#version 3.7;
global_settings { max_trace_level 12 }
camera { location <0, 0, -8> look_at <0, 0, 0> angle 40 }
light_source { <-3, 6, -6> color rgb 1 area_light <2, 0, 0>, <0, 0, 2>, 24, 24 }
background { color rgb <0.3, 0.5, 0.9> }
#declare I = 0;
#while (I < 60)
  sphere { <mod(I, 10) * 0.5 - 2.25, -0.6 - div(I, 10) * 0.45, mod(I * 7, 5)>, 0.3
           pigment { color rgb <0.9, 0.3 + mod(I, 3) * 0.2, 0.2> } finish { reflection 0.8 } }
  #declare I = I + 1;
#end
"""
INI = "Width=64\nHeight=256\nAntialias=on\nAntialias_Threshold=0.0\nAntialias_Depth=3\n"
LOWER, CUT, REST = "f000001-000001-r00129-00256", 224, "f000001-000001-r00225-00256"


def test_the_slowest_slice_of_a_still_is_split_when_a_process_idles(tmp_path, settings, client, workers):
    settings = settings.with_(render_threads=1, resplit=True, checkpoint_seconds=0.0)
    scene = write_scene(tmp_path / "uneven", UNEVEN_SCENE, INI)
    sub = client.submit(scene, slices=2)
    job = sub.spec.id
    assert sub.spec.slices == [(1, 128), (129, 256)]
    workers(concurrency=2, name="node", settings_=settings)
    final = client.wait(job, timeout=180)
    assert (final.state, final.frames_done, final.frames_total) == ("done", 1, 1)

    # the lower slice was cut at the block row halfway through what it had left (it rendered 129-160 then), the new
    # slice rendered the rest: three batches done, and the job's record, history and log say so
    assert client.store.cuts(job) == {LOWER: CUT}
    done = client.store.batches(job)["done"]
    assert sorted(done) == sorted([*sub.spec.batches, REST])
    assert client.store.spec(job).batches.count(REST) == 1
    log = (tmp_path / "node.log").read_text(errors="replace")
    assert f"re-split frame 1 rows 129-256 of job {job}: it ends at row {CUT}" in log, log[-3000:]
    assert "frame 1 rows 129-256 re-split: it now ends at row 224" in log, log[-3000:]
    with zipfile.ZipFile(Path(settings.storage) / batch_key(job, LOWER, done[LOWER]["result"])) as zf:
        said = zf.read(f"{LOWER}.log").decode()
    assert f"re-split: this slice now ends at row {CUT}; povray continues from its state (+C)" in said, said[-2000:]
    assert "Continued trace" in said

    # what another user sees: three batches, all done, and the split in the job's history
    seen = client.view(job, who=Identity("bob", Role.USER))
    assert (seen.batches_total, seen.batches_done, seen.frames_done) == (3, 3, 1)
    assert any("re-split" in line["what"] for line in seen.history), seen.history

    images = client.fetch(job, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref.png")


def test_no_split_with_resplit_off(tmp_path, settings, client, workers):
    settings = settings.with_(render_threads=1, resplit=False, checkpoint_seconds=0.0)
    scene = write_scene(tmp_path / "uneven", UNEVEN_SCENE, INI)
    sub = client.submit(scene, slices=2)
    workers(concurrency=2, name="node", settings_=settings)
    final = client.wait(sub.spec.id, timeout=180)
    assert final.state == "done" and client.store.cuts(sub.spec.id) == {}
    assert sorted(client.store.batches(sub.spec.id)["done"]) == sorted(sub.spec.batches)


class CutOnceStateIsKept:
    """povray.render's keep_going, whose `cut()` ends the slice at `row` once povray has written its render state
    (frame<N>.pov-state for a frame of an animation): as a re-split asks of a running slice. Asked every 20 ms (a
    render node asks every half second): on a fast machine the slice renders in well under a second."""

    tick = 0.02

    def __init__(self, workdir: Path, row: int) -> None:
        self.workdir, self.row, self.asked = workdir, row, 0

    def __call__(self) -> bool:
        return True

    def cut(self) -> int | None:
        self.asked += 1
        kept = [p for p in self.workdir.glob("out-*/*.pov-state") if p.stat().st_size > 0]
        return self.row if kept else None


def test_an_animation_frames_slice_cut_by_a_re_split_continues_from_its_state(tmp_path):
    """A slice of frame 2 of an animation keeps its state as frame2.pov-state: cut, it continues from it (+C) up to
    the cut instead of rendering its rows again from the first, and its rows equal a render of those rows alone."""
    spec = JobSpec(id="j", name="anim", scene_key="scenes/" + "0" * 64 + ".zip", root="", pov="scene.pov",
                   options={"Input_File_Name": "scene.pov"},
                   initial=1, final=2, first=1, last=2, width=64, height=256, count=2, slices=[(1, 128), (129, 256)])

    outputs = {}
    for name, batch, cut_at in (("cut", Batch(2, 2, (129, 256)), CUT), ("whole", Batch(2, 2, (129, CUT)), None)):
        work = tmp_path / name
        (work / "scene").mkdir(parents=True)
        (work / "scene" / "scene.pov").write_text(UNEVEN_SCENE.replace("<0, 0, -8>", "<0, clock * 0.1, -8>"))
        keep_going = CutOnceStateIsKept(work, cut_at) if cut_at else (lambda: True)
        outputs[name] = povray.render("povray", spec, batch, work, 1, keep_going, time_limit=120)
        if cut_at:
            assert keep_going.asked > 0
    said = outputs["cut"].log
    assert f"re-split: this slice now ends at row {CUT}; povray continues from its state (+C)" in said, said[-2000:]
    assert "Continued trace" in said, said[-2000:]
    # its rows: 129 to the cut (rows past it that povray rendered before the interrupt reached it are in its PNG too,
    # and the stitch never takes them: the slice after the cut renders those)
    cut, whole = pixels(outputs["cut"].images[2]), pixels(outputs["whole"].images[2])
    assert cut[:2] == whole[:2] and cut[2][128:CUT] == whole[2][128:CUT]


def test_one_idle_node_of_a_pool_set_looks_for_a_slice_to_split_each_sweep_period(tmp_path, settings, client,
                                                                                   monkeypatch):
    """Every idle render process of a farm asking Redis for every live job's running batches each second would be
    most of Redis's work on a farm of thousands: one node of those consuming the same pools wins the look each period,
    its claim tried in its heartbeat's round trip."""
    client.store.heartbeat("n@a", 4, [])
    jobs = []
    for name in ("one", "two"):
        scene = write_scene(tmp_path / name, UNEVEN_SCENE, INI)
        spec = client.submit(scene, slices=2).spec
        for batch in spec.batches:
            assert client.store.start_batch(spec.id, batch, f"t-{batch}", "n@a", 30.0) == "ok"
        jobs.append(spec.id)

    def sweep_of(node: str, pools: list[str], every: float = 30.0, looked: list | None = None) -> list[str | None]:
        looked = [] if looked is None else looked
        sweep(client.celery, client.store, settings.queue, settings.lease_seconds, settings.max_attempts, every,
              node, 4, pools, resplit=lambda: looked.append(resplit_one(
                  client.celery, client.store, settings.queue, settings.lease_seconds, node, pools)))
        return looked
    assert [bool(split) for split in sweep_of("n@b", [])] == [True], "the first idle node of the period splits"
    assert sweep_of("n@c", []) == [], "another of the same pools does not look until the next period"
    assert sum(len(client.store.cuts(job)) for job in jobs) == 1
    assert [bool(split) for split in sweep_of("n@d", ["gpu"])] == [True], "a node of other pools looks for itself"
    assert all(len(client.store.cuts(job)) == 1 for job in jobs)
    assert len(sweep_of("n@e", [], every=0.0)) == 1, "a sweep with no period claims nothing: it looks"

    # the rest of the sweep failing (Redis gone mid-sweep) does not cost the period's look the node won
    def broken(*args, **kwargs):
        raise ConnectionError("Redis went away mid-sweep")
    monkeypatch.setattr(dispatch, "_sweep", broken)
    looked: list = []
    with pytest.raises(ConnectionError):
        sweep_of("n@f", ["cpu"], looked=looked)
    assert len(looked) == 1

    # ... and a look that fails itself is logged, never raised in place of the sweep's own error
    def failing_look() -> None:
        raise KeyError("the look's own fault")
    with pytest.raises(ConnectionError):
        sweep(client.celery, client.store, settings.queue, settings.lease_seconds, settings.max_attempts, 30.0,
              "n@g", 4, ["gpu2"], resplit=failing_look)
