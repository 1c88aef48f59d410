"""Bad input through the real CLI (click's CliRunner): one clear line, a documented exit code, nothing queued."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.store.keys import Keys
from tests.conftest import TINY_ANIMATION, write_scene


def _queued(settings) -> int:
    """Messages waiting in this test's queue, plus jobs recorded: both must stay 0 after bad input (the audit log's
    record of the refused submit is all that may be there)."""
    r = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    keys = [key for key in r.scan_iter(match=f"{settings.prefix}:*") if key != Keys(settings.prefix).audit()]
    return len(keys)


def _run(settings, *args):
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "ok", TINY_ANIMATION, "Width=16\nHeight=16\n+KFI1 +KFF3\n")


@pytest.mark.parametrize("args, code, message", [
    (["--frames", "0"], 2, "--frames must be at least 1"),
    (["--frames", "-4"], 2, "--frames must be at least 1"),
    (["--count", "0"], 2, "--count must be at least 1"),
    (["--priority", "12"], 2, "--priority must be between 0 and 9"),
    (["--slices", "0"], 2, "slices"),
    (["--slices", "17"], 2, "slices"),
])
def test_out_of_range_options(settings, scene, args, code, message):
    result = _run(settings, "submit", str(scene), *args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert _queued(settings) == 0


def test_missing_scene(settings, tmp_path):
    result = _run(settings, "submit", str(tmp_path / "nope.zip"))
    assert result.exit_code == 3 and "no such file" in result.output
    assert _queued(settings) == 0


def test_zip_without_a_scene(settings, tmp_path):
    bad = tmp_path / "empty.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "hello")
    result = _run(settings, "submit", str(bad))
    assert result.exit_code == 3 and "no .pov file" in result.output
    assert _queued(settings) == 0


def test_not_a_zip(settings, tmp_path):
    bad = tmp_path / "scene.zip"
    bad.write_text("this is not a zip")
    result = _run(settings, "submit", str(bad))
    assert result.exit_code == 3
    assert _queued(settings) == 0


@pytest.mark.parametrize("command", ["status", "fetch", "cancel", "pause", "resume", "retry"])
def test_unknown_job_id(settings, tmp_path, command):
    args = [command, "deadbeef00"] + (["--output", str(tmp_path / "o")] if command == "fetch" else [])
    result = _run(settings, *args)
    assert result.exit_code == 4
    assert "no job with id 'deadbeef00'" in result.output


def test_redis_down_is_said_clearly(settings, scene):
    env = worker_env(settings)
    env["HTTPOV_BROKER_URL"] = env["HTTPOV_STATE_URL"] = "redis://127.0.0.1:1/0"
    result = CliRunner().invoke(cli, ["status"], env=env)
    assert result.exit_code == 5
    assert "cannot reach Redis" in result.output


def test_a_zip_without_ini_says_what_it_renders_and_several_povs_are_listed(settings, tmp_path):
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w") as zf:
        zf.writestr("scene.pov", TINY_ANIMATION)
    result = _run(settings, "submit", str(one))
    assert result.exit_code == 0
    assert ("note: the scene has no ini: rendering 'scene.pov' at 320x240 (POV-Ray's default size), 1 frame(s); "
            "a pov.ini sets Input_File_Name, Width, Height and the frames") in result.output
    several = tmp_path / "several.zip"
    with zipfile.ZipFile(several, "w") as zf:
        zf.writestr("a.pov", TINY_ANIMATION)
        zf.writestr("b.pov", TINY_ANIMATION)
    before = _queued(settings)
    result = _run(settings, "submit", str(several))
    assert result.exit_code == 3
    assert "several .pov files (a.pov, b.pov): add a pov.ini with Input_File_Name" in result.output
    assert _queued(settings) == before


def test_an_ini_typo_is_named_with_a_suggestion_and_strict_refuses_it(settings, tmp_path):
    scene = write_scene(tmp_path / "typo", TINY_ANIMATION, "Widht=640\nWidth=16\nHeight=16\n+KFI1 +KFF1\n")
    refused = _run(settings, "submit", str(scene), "--strict")
    assert refused.exit_code == 3, refused.output
    assert ("httpov: error: the scene's ini has a key that is no POV-Ray ini option: Widht: did you mean Width?\n"
            in refused.stderr and "ignored" not in refused.stderr.splitlines()[0])
    assert "Traceback" not in refused.output
    assert _queued(settings) == 0  # nothing recorded or queued ...
    assert not list(Path(settings.storage).glob("**/*.zip"))  # ... nor stored
    warned = _run(settings, "submit", str(scene))
    assert warned.exit_code == 0, warned.output
    assert "warning: Widht: did you mean Width? (the ini's line is ignored)" in warned.stderr
    assert "ignored ini option" not in warned.output  # no longer 'httpov sets it, or it is not allowed'
    job = warned.stdout.split()[1].rstrip(":")
    assert "at 16x16" in warned.stdout
    status = _run(settings, "status", job)  # kept with the job: its status says it too
    assert status.exit_code == 0 and "warning: Widht: did you mean Width?" in status.output



def test_width_and_height_override_the_ini_size_without_editing_it(settings, client, scene):
    result = _run(settings, "submit", str(scene), "--width", "24", "--height", "12")
    assert result.exit_code == 0, result.output
    assert "at 24x12" in result.stdout
    job = result.stdout.split()[1].rstrip(":")
    spec = client.store.spec(job)
    assert (spec.width, spec.height) == (24, 12)
    assert (spec.options["Width"], spec.options["Height"]) == ("16", "16")  # the ini itself is as it was
    only = _run(settings, "submit", str(scene), "--height", "8")  # one of the two: the ini's other one stays
    assert only.exit_code == 0 and "at 16x8" in only.stdout


@pytest.mark.parametrize("args, message", [
    (["--width", "0"], "--width must be at least 1, got 0"),
    (["--height", "-3"], "--height must be at least 1, got -3"),
    (["--width", "20000"], "HTTPOV_MAX_WIDTH"),
    (["--width", "9000", "--height", "9000"], "HTTPOV_MAX_PIXELS"),
])
def test_a_bad_width_or_height_is_refused_with_nothing_stored(settings, scene, args, message):
    result = _run(settings, "submit", str(scene), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert _queued(settings) == 0
    assert not list(Path(settings.storage).glob("**/*.zip"))
