"""End to end on real services: submit to Redis, real celery workers run real povray, fetch and compare pixels."""
from __future__ import annotations

import json

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.view import job_view
from tests.conftest import PARSE_ERROR, TINY_ANIMATION, pixels, povray_direct, write_scene

ANIM_INI = "Width=32\nHeight=24\nAntialias=on\nAntialias_Threshold=0.3\nInitial_Frame=1\nFinal_Frame=6\n"


def test_animation_renders_every_frame_identical_to_povray(tmp_path, client, workers):
    scene = write_scene(tmp_path / "anim", TINY_ANIMATION, ANIM_INI)
    workers(concurrency=2)
    sub = client.submit(scene, count=2)
    assert sub.spec.batches == ["f000001-000002", "f000003-000004", "f000005-000006"]
    final = client.wait(sub.spec.id, timeout=180)
    assert final.state == "done"
    assert (final.frames_done, final.frames_total, final.frames_failed) == (6, 6, 0)

    images = client.fetch(sub.spec.id, tmp_path / "fetched")
    assert [p.name for p in images] == [f"anim_{n:04d}.png" for n in range(1, 7)]
    assert len(list((tmp_path / "fetched" / "logs").glob("*.log"))) == 3

    povray_direct(scene, tmp_path / "ref")
    for n, image in enumerate(images, 1):
        reference = tmp_path / "ref" / f"ref{n}.png"
        assert pixels(image) == pixels(reference), f"frame {n} differs from a direct povray render"


def test_subset_and_frames_option_keep_povray_numbering(tmp_path, client, workers):
    """--frames sets the animation's length; rendering frames 3-4 of 8 gives the clock values of 3 and 4."""
    scene = write_scene(tmp_path / "sub", TINY_ANIMATION, "Width=24\nHeight=16\nSubset_Start_Frame=3\n"
                                                         "Subset_End_Frame=4\n")
    workers(concurrency=2)
    sub = client.submit(scene, frames=8, count=1)
    assert (sub.spec.first, sub.spec.last, sub.spec.final) == (3, 4, 8)
    client.wait(sub.spec.id, timeout=180)
    images = client.fetch(sub.spec.id, tmp_path / "out")
    assert [p.name for p in images] == ["sub_0003.png", "sub_0004.png"]
    povray_direct(scene, tmp_path / "ref", "+KFF8")
    assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref3.png")
    assert pixels(images[1]) == pixels(tmp_path / "ref" / "ref4.png")


def test_parse_error_fails_the_job_once_with_the_error_shown(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "broken", PARSE_ERROR, "Width=16\nHeight=16\n+KFI1 +KFF4\n")
    workers(concurrency=1)
    sub = client.submit(scene, count=1)
    result = CliRunner().invoke(cli, ["submit", str(scene), "--count", "4", "--wait"], env=worker_env(settings))
    assert result.exit_code == 8, result.output
    assert "failed" in result.output

    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any("Parse Error" in line for line in progress.errors)
    batches = client.store.batches(sub.spec.id)
    assert all(n == 1 for n in batches["attempts"].values()), "a scene error must not be retried"

    shown = CliRunner().invoke(cli, ["status", sub.spec.id, "--json"], env=worker_env(settings))
    data = json.loads(shown.output)
    assert data["state"] == "failed" and data["errors"]
    assert {"id", "name", "state", "frames_total", "frames_done", "frames_failed"} <= set(data)


def test_cli_submit_wait_status_fetch(tmp_path, settings, workers):
    scene = write_scene(tmp_path / "cli", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF3\n")
    workers(concurrency=2)
    env = worker_env(settings)
    runner = CliRunner()
    result = runner.invoke(cli, ["submit", str(scene), "--count", "2", "--wait", "--name", "cli"], env=env)
    print(result.output)
    assert result.exit_code == 0, result.output
    job_id = result.output.split()[1].rstrip(":")
    listing = json.loads(runner.invoke(cli, ["status", "--json"], env=env).output)
    assert [j["id"] for j in listing] == [job_id]
    assert listing[0]["state"] == "done" and listing[0]["frames_done"] == 3
    table = runner.invoke(cli, ["status"], env=env).output
    assert job_id in table and "done" in table
    fetched = runner.invoke(cli, ["fetch", job_id, "--output", str(tmp_path / "o")], env=env)
    assert fetched.exit_code == 0, fetched.output
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["cli_0001.png", "cli_0002.png",
                                                                      "cli_0003.png"]
