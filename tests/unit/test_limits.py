"""Bounds on one job's work: settings from the environment, arithmetic batch counts, clear refusals."""
from __future__ import annotations

import zipfile

import pytest

from httpov.archive import ArchiveLimits, check_archive
from httpov.errors import ArchiveError, BadInputError, SceneError
from httpov.limits import check_image, check_work, planned_batches
from httpov.plan import FrameRange, split
from httpov.settings import LIMITS, Settings, env_name


def test_every_limit_is_settable_from_the_environment(tmp_path):
    env = {env_name(name): str(7 + i) for i, name in enumerate(LIMITS)} | {"HOME": str(tmp_path)}
    settings = Settings.from_env(env)
    assert [getattr(settings, field) for field in LIMITS] == [7 + i for i in range(len(LIMITS))]
    assert settings.archive_limits() == ArchiveLimits(max_entries=13, max_total_bytes=12, max_file_bytes=12,
                                                      max_depth=14)
    with pytest.raises(BadInputError, match="HTTPOV_MAX_FRAMES"):
        Settings.from_env({"HOME": str(tmp_path), "HTTPOV_MAX_FRAMES": "lots"})


def test_defaults_refuse_what_issue_11_saw():
    s = Settings()
    with pytest.raises(SceneError, match="width 100000"):
        check_image(100_000, 240, s)
    with pytest.raises(SceneError, match="pixels"):
        check_image(16_000, 16_000, s)
    check_image(7680, 4320, s)  # 8K UHD is fine
    with pytest.raises(BadInputError, match="1000000 frames"):
        check_work(1_000_000, 1_000_000, s)
    with pytest.raises(BadInputError, match="batches"):
        check_work(100_000, 100_000, s)
    assert s.max_scene_bytes < 1_600_000_000 and s.max_scene_depth < 510


@pytest.mark.parametrize("frames, count, slices", [(1, 1, 0), (10, 3, 0), (12, 4, 0), (7, 1, 3), (100, 7, 0)])
def test_planned_batches_is_splits_count(frames, count, slices):
    rows = [(1 + 32 * i, 32 * (i + 1)) for i in range(slices)]
    assert planned_batches(frames, count, slices) == len(split(FrameRange(1, frames, 1, frames), count, rows))


def test_archive_depth_limit(tmp_path):
    deep = tmp_path / "deep.zip"
    with zipfile.ZipFile(deep, "w") as zf:
        zf.writestr("pov.ini", "Input_File_Name=scene.pov\n")
        zf.writestr("/".join(["d"] * 40) + "/x.inc", "// deep\n")
    with pytest.raises(ArchiveError, match="41 levels deep, more than the limit of 32"):
        check_archive(deep)
    assert check_archive(deep, ArchiveLimits(max_depth=41))
