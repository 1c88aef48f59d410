"""A batch's checkpoint (httpov.worker.checkpoint) with local storage and an in-memory record: what is saved, what a
node resumes from, and every checkpoint it refuses (forged, from another povray, foreign files), plus povray's row
progress read from its log."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import png
import pytest

from httpov.paths import checkpoint_key
from httpov.plan import Batch, JobSpec
from httpov.storage.local import LocalStorage
from httpov.worker.checkpoint import Checkpoints, _sha256
from httpov.worker.povray import RunProgress

JOB = "j1"
BATCH = Batch(1, 3)


class Records:
    """JobStore's checkpoint calls, in memory; `owner` is the execution holding the batch's lease."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}
        self.history: list[str] = []
        self.owner = "exec-a"

    def save_checkpoint(self, job_id: str, batch_id: str, token: str, info: Any) -> str:
        if token != self.owner:
            return "lost"
        self.saved[batch_id] = dict(info)
        return "ok"

    def checkpoint(self, job_id: str, batch_id: str) -> Any:
        return self.saved.get(batch_id)

    def drop_checkpoint(self, job_id: str, batch_id: str) -> None:
        self.saved.pop(batch_id, None)

    def note(self, job_id: str, text: str, kind: str | None = None) -> None:
        self.history.append(text)


@pytest.fixture
def farm(tmp_path: Path):
    spec = JobSpec(id=JOB, name="anim", scene_key="", root="", pov="scene.pov", options={}, initial=1, final=12,
                   first=1, last=12, width=4, height=3, count=3, batches=[BATCH.id])
    return spec, Records(), LocalStorage(tmp_path / "store")


def checkpoints(farm, execution: str = "exec-a", version: str = "3.7.0.10") -> Checkpoints:
    spec, records, storage = farm
    return Checkpoints(records, storage, spec, BATCH, execution, "node-a", version, every=60.0, share=0.05,  # type: ignore[arg-type]
                       max_bytes=1 << 20)


def out_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name / "out"
    folder.mkdir(parents=True)
    return folder


def write_png(path: Path, width: int = 4, height: int = 3) -> None:
    with open(path, "wb") as f:
        png.Writer(width, height, greyscale=False).write(f, [[10] * width * 3] * height)


def test_a_saved_checkpoint_resumes_after_the_finished_frames_with_the_state(tmp_path, farm):
    out = out_dir(tmp_path, "a")
    write_png(out / "frame01.png")
    (out / "frame02.pov-state").write_bytes(b"povray state" * 100)
    writer = checkpoints(farm)
    assert writer.save(out)
    info = farm[1].saved[BATCH.id]
    assert (info["frames"], info["frame"], info["povray"], info["node"]) == ([1], 2, "3.7.0.10", "node-a")
    assert not writer.save(out), "nothing changed: nothing saved again"

    again = out_dir(tmp_path, "b")
    reader = checkpoints(farm, "exec-b")
    assert reader.start(again) == ["+SF2", "+C"]
    assert sorted(p.name for p in again.iterdir()) == ["frame01.png", "frame02.pov-state"]
    assert (again / "frame02.pov-state").read_bytes() == b"povray state" * 100
    assert reader.describe().startswith("frame 1 finished; frame 2 continued from")
    assert farm[1].history == [f"frames 1-3 continued on node-a from the checkpoint node-a saved: {reader.describe()}"]

    reader.discard()
    assert farm[1].saved == {} and not farm[2].exists(checkpoint_key(JOB, BATCH.id))


def test_an_execution_that_lost_the_batch_names_no_checkpoint(tmp_path, farm):
    out = out_dir(tmp_path, "a")
    (out / "frame01.pov-state").write_bytes(b"state")
    assert not checkpoints(farm, "exec-old").save(out)
    assert farm[1].saved == {}


def _forge(farm, tmp_path: Path, entries: dict[str, bytes], **info: Any) -> None:
    archive = tmp_path / "forged.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    farm[2].put_file(checkpoint_key(JOB, BATCH.id), archive)
    farm[1].saved[BATCH.id] = {"sha256": _sha256(archive), "bytes": archive.stat().st_size, "povray": "3.7.0.10",
                               "node": "x", **info}


@pytest.mark.parametrize("entries, info, why", [
    ({"frame01.pov-state": b"s"}, {"povray": "3.8.0"}, "saved by povray 3.8.0"),
    ({"frame01.pov-state": b"s"}, {"sha256": "0" * 64}, "SHA-256"),
    ({"../frame01.pov-state": b"s"}, {}, "a file the batch does not make"),
    ({"frame07.pov-state": b"s"}, {}, "a file the batch does not make"),
    ({"frame02.pov-state": b"s"}, {}, "not the batch's first ones"),
    ({"frame01.png": b"not a png", "frame02.pov-state": b"s"}, {}, "PNG"),
    ({"frame01.pov-state": b"s", "frame02.pov-state": b"s"}, {}, "two render states"),
])
def test_a_checkpoint_that_is_not_what_a_node_saved_is_refused_and_the_batch_starts_over(tmp_path, farm, entries,
                                                                                         info, why):
    _forge(farm, tmp_path, entries, **info)
    again = out_dir(tmp_path, "b")
    reader = checkpoints(farm, "exec-b")
    assert reader.start(again) == []
    assert why in reader.refused, reader.refused
    assert list(again.iterdir()) == [] and farm[1].saved == {}
    assert not farm[2].exists(checkpoint_key(JOB, BATCH.id))


def test_a_record_whose_object_is_gone_starts_over(tmp_path, farm):
    farm[1].saved[BATCH.id] = {"sha256": "0" * 64, "bytes": 10, "povray": "3.7.0.10"}
    reader = checkpoints(farm, "exec-b")
    assert reader.start(out_dir(tmp_path, "b")) == [] and reader.refused


def test_row_progress_is_read_from_povrays_log_as_it_grows(tmp_path):
    log = tmp_path / "render.log"
    log.write_bytes(b"Rendering frame 1 of 3\nRendered 1024 of 4096 pixels (25%)\rRendered 2048 of 40")
    run = RunProgress(log)
    assert (run.update().frame, run.fraction) == (1, 0.25)  # the half-written line waits for its end
    with open(log, "ab") as f:
        f.write(b"96 pixels (50%)\rRendering frame 2 of 3\nRendered 3072 of 4096 pixels (75%)\r")
    assert (run.update().frame, run.fraction) == (2, 0.75)


def test_a_continued_runs_progress_goes_on_from_the_pixels_it_had(tmp_path):
    """A re-split slice: povray interrupted at 30720 of its 57600 pixels continues (+C) up to the cut, 38400 pixels;
    its counter restarts at what it renders itself, so the pixels it had are added (no progress going backwards)."""
    log = tmp_path / "render.log"
    log.write_bytes(b"Rendering frame 1 of 1\nRendered 30720 of 57600 pixels (53%)\r")
    run = RunProgress(log)
    assert round(run.update().fraction, 3) == 0.533
    run.continued()
    with open(log, "ab") as f:
        f.write(b"\nhttpov: re-split\nRendering frame 1 of 1\nRendered 512 of 38400 pixels (1%)\r")
    assert round(run.update().fraction, 3) == round(31232 / 38400, 3)
    with open(log, "ab") as f:
        f.write(b"Rendered 7680 of 38400 pixels (20%)\r")
    assert run.update().fraction == 1.0


def test_a_checkpoint_never_reads_through_a_link_povray_made(tmp_path):
    """A checkpoint's frames and state are read as povray's own files: a symbolic link povray was made to put in
    their place is not followed (its target would be stored for the job)."""
    from httpov.worker.checkpoint import _own_file

    (tmp_path / "frame1.pov-state").write_bytes(b"state")
    assert _own_file(tmp_path / "frame1.pov-state") == b"state"
    (tmp_path / "frame2.pov-state").symlink_to(tmp_path / "frame1.pov-state")
    with pytest.raises(OSError):
        _own_file(tmp_path / "frame2.pov-state")
