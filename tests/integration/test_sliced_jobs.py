"""Sliced jobs on real render nodes: slices of a still or of each animation frame stitch to one povray's pixels."""
from __future__ import annotations

import subprocess
from pathlib import Path

import png
import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.paths import frame_key
from httpov.plan import auto_slices, net_seconds, plan_slices, slice_costs
from tests.conftest import AA_SENSITIVE, pixels, wait_for, write_scene
from tests.store.test_metrics import samples as metric_samples

pytestmark = pytest.mark.integration

SCENE = AA_SENSITIVE  # tests/conftest.py: slices off the 32-row grid would show

STILL_INI = "Width=40\nHeight=80\nAntialias=on\nAntialias_Threshold=0.3\nOutput_Alpha=on\nBits_Per_Color=16\n"
ANIM_INI = "Width=32\nHeight=70\nAntialias=on\nAntialias_Threshold=0.3\nInitial_Frame=1\nFinal_Frame=2\n"


def povray_reference(scene: Path, out: Path) -> None:
    """One plain povray process on the scene's own ini, as a user would run it (Debian's default: PNG)."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["povray", "pov.ini", "-D", "+WT1", f"+O{out}/ref"], cwd=scene, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def png_info(path: Path) -> dict:
    return png.Reader(filename=str(path)).read()[3]


def test_sliced_still_keeps_alpha_and_16_bits_and_matches_one_povray(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "still", SCENE, STILL_INI)
    workers(concurrency=2)
    sub = client.submit(scene, slices=3)
    assert sub.spec.slices == [(1, 32), (33, 64), (65, 80)]
    assert sub.spec.batches == ["f000001-000001-r00001-00032", "f000001-000001-r00033-00064",
                                "f000001-000001-r00065-00080"]
    final = client.wait(sub.spec.id, timeout=180)
    assert (final.state, final.frames_done, final.frames_total) == ("done", 1, 1)

    # The whole frame is stored beside the batch zips, and fetch hands out whole frames only.
    assert sorted(client.storage.list(f"jobs/{sub.spec.id}/frames/")) == [frame_key(sub.spec.id, "still_0001.png")]
    assert len(client.storage.list(f"jobs/{sub.spec.id}/batches/")) == 3
    images = client.fetch(sub.spec.id, tmp_path / "fetched")
    assert [p.name for p in images] == ["still_0001.png"]
    assert sorted(p.name for p in (tmp_path / "fetched").iterdir()) == ["logs", "still_0001.png"]
    assert len(list((tmp_path / "fetched" / "logs").glob("*.log"))) == 3

    povray_reference(scene, tmp_path / "ref")
    reference = tmp_path / "ref" / "ref.png"
    info, ref_info = png_info(images[0]), png_info(reference)
    assert (info["bitdepth"], info["alpha"], info["size"]) == (16, True, (40, 80))
    assert (ref_info["bitdepth"], ref_info["alpha"]) == (16, True)
    width, height, rows = pixels(images[0])
    assert (width, height, rows) == pixels(reference), "the stitched still differs from one povray render"
    assert any(row[3::4] != (65535,) * width for row in rows), "the sky should be transparent: no alpha?"


def test_sliced_animation_through_the_cli_matches_one_povray(tmp_path, settings, workers):
    """Two frames, each cut into 32-row slices; every frame is stitched, and fetch returns whole frames."""
    scene = write_scene(tmp_path / "anim", SCENE, ANIM_INI)
    workers(concurrency=2)
    env = worker_env(settings)
    runner = CliRunner()
    result = runner.invoke(cli, ["submit", str(scene), "--slice-rows", "32", "--wait"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 slice(s) per frame, 6 batch(es)" in result.output
    job_id = result.output.split()[1].rstrip(":")

    fetched = runner.invoke(cli, ["fetch", job_id, "--output", str(tmp_path / "out")], env=env)
    assert fetched.exit_code == 0, fetched.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["anim_0001.png", "anim_0002.png"]

    povray_reference(scene, tmp_path / "ref")
    for n in (1, 2):
        assert pixels(tmp_path / "out" / f"anim_{n:04d}.png") == pixels(tmp_path / "ref" / f"ref{n}.png"), \
            f"stitched frame {n} differs from one povray render of the animation"
    assert pixels(tmp_path / "out" / "anim_0001.png") != pixels(tmp_path / "out" / "anim_0002.png")
    # `httpov metrics`: two frames (each once, when stitched, not once per slice), six batches timed
    got = metric_samples(runner.invoke(cli, ["metrics"], env=env).stdout)
    assert got[("httpov_frames_rendered_total", ())] == 2 and got[("httpov_batch_seconds_count", ())] == 6


def test_a_frame_is_stitched_as_soon_as_its_slices_are_in(tmp_path, settings, client, workers):
    """One render process takes the batches in queue order: frame 1 is whole before frame 2's slices finish."""
    scene = write_scene(tmp_path / "early", SCENE, ANIM_INI.replace("Height=70", "Height=64"))
    workers(concurrency=1)
    sub = client.submit(scene, slices=2)
    client.wait(sub.spec.id, timeout=180)
    done = client.store.batches(sub.spec.id)["done"]
    finished = {batch: info["finished"] for batch, info in done.items()}
    frame1 = Path(settings.storage) / frame_key(sub.spec.id, "early_0001.png")
    frame2_slices = [finished[b] for b in finished if b.startswith("f000002")]
    assert len(frame2_slices) == 2
    assert frame1.stat().st_mtime < min(frame2_slices), "frame 1 was stitched only after frame 2's slices"


@pytest.mark.parametrize("args, message", [
    (["--slices", "81"], "slices must be at most the height"),
    (["--slices", "0"], "slices"),
    (["--slices", "-2"], "slices"),
    (["--slice-rows", "0"], "rows"),
    (["--slices", "2", "--slice-rows", "32"], "exactly one"),
])
def test_bad_slice_counts_are_refused_before_anything_is_queued(tmp_path, settings, client, args, message):
    scene = write_scene(tmp_path / "bad", SCENE, STILL_INI)
    result = CliRunner().invoke(cli, ["submit", str(scene), *args], env=worker_env(settings))
    assert result.exit_code == 2, result.output
    assert "httpov: error:" in result.output and message in result.output
    assert client.store.job_ids() == []
    assert not (Path(settings.storage) / "scenes").exists()


def test_slices_auto_cuts_for_the_live_processes_then_for_the_scenes_measured_rows(tmp_path, settings, client,
                                                                                    workers):
    """--slices auto: 2 slices per live render process on a new scene; the next job of the same scene at the same
    size is cut from the first one's measured slices; both stitch to one povray's pixels."""
    scene = write_scene(tmp_path / "auto", SCENE, "Width=24\nHeight=160\nAntialias=on\nAntialias_Threshold=0.3\n")
    workers(concurrency=1)
    wait_for(lambda: client.store.render_processes(within=settings.live_node_seconds)[0] == 1, 60,
             "the render node's heartbeat")
    first = client.submit(scene, slices="auto")
    assert first.spec.slices == plan_slices(160, slices=2)  # 2 for one process, on the 32-row grid
    assert client.wait(first.spec.id, timeout=180).state == "done"
    done = client.store.batches(first.spec.id)["done"]
    costs = slice_costs([(batch, net_seconds(info)) for batch, info in done.items()], 160)
    assert costs is not None  # every row measured

    second = client.submit(scene, slices="auto")
    assert second.spec.slices == auto_slices(160, 1, costs)  # planned from what the first job measured
    assert client.wait(second.spec.id, timeout=180).state == "done"
    povray_reference(scene, tmp_path / "ref")
    for sub in (first, second):
        images = client.fetch(sub.spec.id, tmp_path / sub.spec.id)
        assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref.png"), "a stitched still differs from povray's"
