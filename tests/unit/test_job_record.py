"""Unit tests: what a render node checks in a job record and a batch message before it acts on them."""
from __future__ import annotations

import dataclasses

import pytest

from httpov.errors import BadInputError, SceneError
from httpov.plan import JobSpec, check_batch, check_name, check_spec, safe_name
from httpov.worker.povray import frame_file

KEY = "scenes/" + "ab" * 32 + ".zip"


def spec(**changes: object) -> JobSpec:
    good = JobSpec(id="0123456789", name="my job", scene_key=KEY, root="", pov="scene.pov",
                   options={"Input_File_Name": "scene.pov", "Library_Path": ["inc", "more/inc"]}, initial=1,
                   final=10, first=1, last=10, width=32, height=24, count=5, batches=["f000001-000005",
                                                                                    "f000006-000010"])
    return dataclasses.replace(good, **changes)


def test_a_record_as_submit_writes_it_passes():
    check_spec(spec())
    check_spec(spec(root="scene/", pov="sub/scene.pov", time_limit=60, slices=[(1, 12), (13, 24)]))


@pytest.mark.parametrize("changes, words", [
    ({"root": "../"}, "outside the scene"),
    ({"root": "a/../../"}, "outside the scene"),
    ({"root": "/etc/"}, "outside the scene"),
    ({"root": "a"}, "one folder"),
    ({"pov": "../../x.pov"}, "outside the scene"),
    ({"pov": "/etc/hostname"}, "outside the scene"),
    ({"options": {"Library_Path": ["/"]}}, "Library_Path='/'"),
    ({"options": {"Library_Path": ['"../x"']}}, "outside the scene"),
    ({"options": {"Input_File_Name": "../../etc/passwd"}}, "outside the scene"),
    ({"scene_key": "scenes/../../jobs/x.zip"}, "scenes/<sha256>.zip"),
    ({"scene_key": "scenes/abc.zip"}, "scenes/<sha256>.zip"),
    ({"id": "../x"}, "job id"),
    ({"width": "32"}, "whole numbers"),
    ({"first": 0}, "not a job povray can render"),
    ({"height": 0}, "not a job povray can render"),
    ({"time_limit": -1}, "time limit"),
    ({"priority": "9; evil"}, "priority"),
    ({"slices": [(1, 12), (13, 999)]}, "slice"),
])
def test_forged_records_are_refused(changes, words):
    with pytest.raises(SceneError, match=words.replace("(", r"\(").replace("[", r"\[")):
        check_spec(spec(**changes))


@pytest.mark.parametrize("name", ["../../../../x", "a/b", "a\\b", "bell\a", "new\nline", "esc\x1b[31m", "", " "])
def test_names_with_separators_or_control_characters_are_refused(name):
    with pytest.raises(BadInputError):
        check_name(name)
    with pytest.raises(BadInputError):
        check_spec(spec(name=name))


def test_names_are_display_text_and_files_use_a_safe_form():
    check_name("Ünïcode name (v2) - final.")
    assert frame_file("../../../../store/jobs/x/frames/evil", 1, 10) == "store_jobs_x_frames_evil_0001.png"
    assert frame_file("..", 7, 100) == "job_0007.png"
    assert safe_name("héllo wörld") == "h_llo_w_rld"


@pytest.mark.parametrize("batch_id", ["f000001-999999", "../../x", "f000011-000011", "f000001-000005-r00001-00024",
                                      None, 7])
def test_only_planned_batches_are_rendered(batch_id):
    with pytest.raises(BadInputError):
        check_batch(spec(), batch_id)


def test_a_planned_batch_is_answered():
    assert check_batch(spec(), "f000006-000010").frames == range(6, 11)


def test_a_malformed_record_is_a_scene_error():
    with pytest.raises(SceneError, match="malformed"):
        JobSpec.from_dict({**spec().to_dict(), "evil": 1})


def _png(path, width: int, height: int) -> None:
    import png

    png.Writer(width, height, greyscale=True).write(path.open("wb"), [[0] * width] * height)


def test_only_the_batch_frames_are_collected_and_each_must_be_the_planned_png(tmp_path):
    from httpov.errors import RenderError
    from httpov.plan import Batch
    from httpov.worker.povray import check_png, collect

    job = spec(final=10, width=4, height=3)
    for name in ("frame09.png", "frame10.png", "frame.png", "sneaky_0009.png", "frame9.png"):
        _png(tmp_path / name, 4, 3)
    assert collect(tmp_path, job, Batch(9, 10)) == {9: tmp_path / "frame09.png", 10: tmp_path / "frame10.png"}
    still = spec(initial=1, final=1, first=1, last=1)
    assert collect(tmp_path, still, Batch(1, 1)) == {1: tmp_path / "frame.png"}
    check_png(tmp_path / "frame09.png", 4, 3, 9)
    (tmp_path / "frame10.png").write_text("not a png\n")
    with pytest.raises(RenderError, match="frame 10 is not the 4x3 PNG"):
        check_png(tmp_path / "frame10.png", 4, 3, 10)
    with pytest.raises(RenderError, match="frame 9 is not the 8x3 PNG"):
        check_png(tmp_path / "frame09.png", 8, 3, 9)
    data = (tmp_path / "frame09.png").read_bytes()
    (tmp_path / "frame09.png").write_bytes(data[:-20])  # cut short
    with pytest.raises(RenderError, match="frame 9"):
        check_png(tmp_path / "frame09.png", 4, 3, 9)
