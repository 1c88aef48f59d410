"""Everyday use against real povray and real render nodes: Declare as povray reads it, failure text, logs of
failed batches, retried jobs' clocks, and `httpov render` leaving nothing in a shared Redis."""
from __future__ import annotations

import json
import sys

import pytest
import redis
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.plan import Batch
from httpov.view import job_view
from tests.conftest import PARSE_ERROR, pixels, povray_direct, wait_for, write_scene
from tests.store.test_metrics import samples as metric_samples

DECLARED = """#version 3.7;
global_settings { assumed_gamma 1 }
#ifndef (fp) #declare fp = 0; #end
camera { location <0, 0, -4> look_at 0 }
light_source { <-3, 5, -4> color rgb 1 }
background { rgb <fp / 3, 0.2, clock> }
sphere { <clock - 0.5, 0, 0>, 1 pigment { color rgb <1, fp / 2, 0> } }
"""


def test_declare_on_a_switch_line_and_a_declare_line_render_as_povray_does(tmp_path, settings, client, workers):
    # the way scenes take parameters: `+kff2 +kc declare=fp=1`; with a Declare= line after it, povray uses the first
    scene = write_scene(tmp_path / "decl", DECLARED, "Width=16\nHeight=12\n+KFI1 +kff2 +kc declare=fp=1\n"
                                                     "Declare=fp=2\n")
    sub = client.submit(scene, count=1)
    workers(concurrency=2)
    client.wait(sub.spec.id, timeout=120)
    images = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    assert [p.name for p in images] == ["decl_0001.png", "decl_0002.png"]
    for n, image in enumerate(images, 1):
        assert pixels(image) == pixels(tmp_path / "ref" / f"ref{n}.png")
    assert sub.ignored == []
    # the render nodes' batches moved the farm's metrics (Prometheus), in the step that recorded them done
    got = metric_samples(client.metrics().decode())
    done = client.store.done(sub.spec.id)
    assert got[("httpov_frames_rendered_total", ())] == 2 and got[("httpov_batch_seconds_count", ())] == 2
    assert got[("httpov_batch_seconds_sum", ())] == pytest.approx(sum(d["seconds"] for d in done.values()))
    assert got[("httpov_batch_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("httpov_storage_bytes", ())] == client.storage.size("jobs/") > 0
    assert got[("httpov_jobs", (("state", "done"),))] == 1 and got[("httpov_nodes", (("state", "up"),))] == 1


MISSING_IMAGE = """#version 3.7;
global_settings { assumed_gamma 1 }
camera { location <0, 0, -3> look_at 0 }
plane { z, 1 pigment { image_map { png "missing_texture_with_a_long_name.png" } } }
"""


def test_a_missing_image_file_fails_with_the_fatal_error_named_from_the_scene(tmp_path, settings, client, workers):
    scene = tmp_path / "img"
    (scene / "sub").mkdir(parents=True)
    (scene / "sub" / "main.pov").write_text(MISSING_IMAGE)
    (scene / "pov.ini").write_text("Input_File_Name=sub/main.pov\nWidth=16\nHeight=64\n")
    sub = client.submit(scene, slices=2)
    workers(concurrency=2)
    result = CliRunner().invoke(cli, ["watch", sub.spec.id, "--interval", "0.2"], env=worker_env(settings))
    print(result.output)
    headline = next(line for line in result.output.splitlines() if line.startswith("  failed: "))
    assert headline.endswith(": povray failed: File 'sub/main.pov' line 4: Fatal error in parser: Cannot open file.")
    assert ("    | File 'sub/main.pov' line 4: Possible Parse Error: Cannot find file "
            "'missing_texture_with_a_long_name.png', even after trying to append file type extension.") in result.output
    assert str(settings.cache_dir) not in result.output  # the node's work path is nobody's business


def test_watch_of_a_cancelled_job_exits_8_and_retry_starts_its_clock_again(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "c", DECLARED, "Width=16\nHeight=12\n+KFI1 +KFF4\n")
    sub = client.submit(scene, count=1)
    client.cancel(sub.spec.id)
    env = worker_env(settings)
    watched = CliRunner().invoke(cli, ["watch", sub.spec.id, "--once"], env=env)
    assert watched.exit_code == 8, watched.output  # `submit --wait` exits 8 for it too
    assert f"httpov: error: job {sub.spec.id} cancelled with 0/4 frame(s) rendered" in watched.output
    assert f"hint: `httpov retry {sub.spec.id}` renders the rest" in watched.output
    assert job_view(client.store, sub.spec.id).finished is not None

    client.retry(sub.spec.id)
    running = job_view(client.store, sub.spec.id)
    assert running.state == "running" and running.finished is None
    workers(concurrency=2)
    done = client.wait(sub.spec.id, timeout=120)
    assert done.frames_done == 4 and done.finished is not None and done.rate > 0
    watched = CliRunner().invoke(cli, ["watch", sub.spec.id, "--once"], env=env)
    assert watched.exit_code == 0, watched.output


def test_a_failed_job_fetches_its_logs_and_has_no_frames_to_show(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "bad", PARSE_ERROR, "Width=16\nHeight=16\n+KFI1 +KFF2\n")
    sub = client.submit(scene, count=2)
    workers(concurrency=1)
    env = worker_env(settings)
    wait_for(lambda: client.store.state(sub.spec.id) == "failed", 120, "the job to fail")
    for args in (["--output", str(tmp_path / "out")], ["--contact-sheet", str(tmp_path / "s.png")],
                 ["--video", str(tmp_path / "v.gif")]):
        result = CliRunner().invoke(cli, ["fetch", sub.spec.id, *args], env=env)
        print(result.output)
        assert result.exit_code == 8, result.output
        assert f"job {sub.spec.id} is failed and has no rendered frame" in result.output
        assert f"hint: `httpov status {sub.spec.id}` shows why" in result.output
    logs = list((tmp_path / "out" / "logs").iterdir())
    assert [p.name for p in logs] == [f"{Batch(1, 2).id}.failed.log"]
    assert metric_samples(client.metrics().decode())[("httpov_batch_failures_total", (("reason", "render"),))] == 1
    assert "Parse Error" in logs[0].read_text()


def test_fetch_video_without_imageio_ffmpeg_says_so_before_downloading(tmp_path, settings, client, workers,
                                                                       monkeypatch):
    scene = write_scene(tmp_path / "v", DECLARED, "Width=16\nHeight=12\n+KFI1 +KFF2\n")
    sub = client.submit(scene, count=1)
    workers(concurrency=2)
    client.wait(sub.spec.id, timeout=120)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # `import imageio_ffmpeg` now fails
    result = CliRunner().invoke(cli, ["fetch", sub.spec.id, "--video", str(tmp_path / "v.mp4"), "--output",
                                      str(tmp_path / "out")], env=worker_env(settings))
    print(result.output)
    assert result.exit_code == 1
    assert "making a video needs the imageio-ffmpeg package" in result.output
    assert "downloading" not in result.output and not (tmp_path / "out").exists()


def test_render_on_a_shared_redis_leaves_no_job_and_no_key_behind(tmp_path, settings):
    scene = write_scene(tmp_path / "loc", DECLARED, "Width=16\nHeight=12\n+KFI1 +KFF2\n")
    env = worker_env(settings)  # the shared Redis answers: render uses it, under keys of its own
    result = CliRunner().invoke(cli, ["render", str(scene), "--workers", "2", "--output", str(tmp_path / "out")],
                                env=env)
    print(result.output)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["loc_0001.png", "loc_0002.png"]
    shared = redis.Redis.from_url(settings.state_url)
    assert list(shared.scan_iter(match=f"{settings.prefix}*")) == []
    listed = CliRunner().invoke(cli, ["status"], env=env)
    assert listed.exit_code == 0 and "no jobs yet" in listed.output
    assert not (tmp_path / "storage" / "jobs").exists()
    assert CliRunner().invoke(cli, ["render", str(scene), "--workers", "0"], env=env).exit_code == 2


def test_status_lists_the_newest_jobs_and_filters_by_state_name_and_user(tmp_path, settings, client):
    """No render node: the jobs stay queued, one is cancelled; status picks by state, name pattern, user and count."""
    scene = tmp_path / "scene"
    write_scene(scene, "camera { location <0, 0, -3> look_at 0 } sphere { 0, 1 pigment { rgb 1 } }",
                "Width=8\nHeight=6\n")
    made = [client.submit(scene, name=f"shot-{i}", user="ann" if i < 2 else "bob").spec.id for i in range(3)]
    client.submit(scene, name="preview", user="bob")
    client.cancel(made[0])
    env = worker_env(settings)

    def listed(*args: str) -> list[str]:
        result = CliRunner().invoke(cli, ["status", "--json", *args], env=env)
        assert result.exit_code == 0, result.output
        return [j["name"] for j in json.loads(result.output)]

    assert listed() == ["shot-0", "shot-1", "shot-2", "preview"]
    assert listed("--limit", "2") == ["shot-2", "preview"]  # the newest, newest last
    assert listed("--state", "cancelled") == ["shot-0"]
    assert listed("--state", "queued", "--name", "shot-*") == ["shot-1", "shot-2"]
    assert listed("--user", "bob", "--limit", "1") == ["preview"]
    assert listed("--all", "--name", "nothing*") == []
    bad = CliRunner().invoke(cli, ["status", "--state", "lost"], env=env)
    assert bad.exit_code == 2 and "not a job state" in bad.output
    table = CliRunner().invoke(cli, ["status", "--limit", "1"], env=env)
    assert table.exit_code == 0 and "preview" in table.output and "shot-2" not in table.output
