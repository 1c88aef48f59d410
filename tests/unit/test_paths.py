"""Storage object names: every key of a job is built from its checked id, and a record's names stay one name."""
from __future__ import annotations

import pytest

from httpov import paths
from httpov.errors import ResultError


def test_a_job_key_is_built_only_from_a_job_id():
    assert paths.job_prefix("0a1b2c3d4e") == "jobs/0a1b2c3d4e/"
    assert paths.frames_prefix("j-1_x") == "jobs/j-1_x/frames/"
    for forged in ("victim/frames", "..", "", "../jobs/victim", "a b", "victim:done", None, 7):
        with pytest.raises(ValueError):
            paths.job_prefix(forged)  # type: ignore[arg-type]


@pytest.mark.parametrize("result", ["../../victim/frames/f1", "a/b", "..", "x.y", 7])
def test_a_result_name_from_a_done_record_is_one_name(result):
    assert paths.batch_key("j1", "f000001-000001", "ab12cd34") == "jobs/j1/batches/f000001-000001.ab12cd34.zip"
    with pytest.raises(ResultError, match="not a stored result's name"):
        paths.batch_key("j1", "f000001-000001", result)  # type: ignore[arg-type]


def test_own_and_shared_keys():
    assert paths.is_own("j1", "jobs/j1/frames/f1.png")
    assert not paths.is_own("j1", "jobs/j10/frames/f1.png")
    assert not paths.is_own("j1", "jobs/j1/../j2/frames/f1.png")
    assert not paths.is_own("../j1", "jobs/../j1/x")
    assert paths.is_shared(paths.scene_key("a" * 64)) and paths.is_shared(paths.radiosity_key("b" * 64))
    assert not paths.is_shared("jobs/j1/frames/f1.png") and not paths.is_shared("scenes/../jobs/j1/x.zip")
