"""The radiosity pre-pass on real render nodes: sliced radiosity frames against one povray's render, a lost
pre-pass node, cancel and pause during the pre-pass, reuse by a re-submit; photon slices stay pixel-identical; a
cache file planted under a cache's key is never loaded (issue #25)."""
from __future__ import annotations

import hashlib
import math
import os
import re
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.paths import radiosity_key
from httpov.plan import radiosity_digest
from httpov.view import job_view
from httpov.worker.radiosity import check_cache
from tests.conftest import (
    AA_SENSITIVE,
    parked_after_the_pre_pass,
    pixels,
    povray_direct,
    queue_drained,
    wait_for,
    write_scene,
)
from tests.integration.faults import povray_pids

pytestmark = pytest.mark.integration

RESEARCH = Path(__file__).resolve().parents[2] / "scripts" / "research" / "scenes"
ROOM = (RESEARCH / "room.pov").read_text()  # a room lit through a window: radiosity only, no ambient
CAUSTICS = (RESEARCH / "caustics.pov").read_text()  # glass casting caustics: photons only
# 160x120 cut into slices of rows 1-32, 33-64, 65-96, 97-120: without a pre-pass the stitched room is ~40 dB
# from a single render with edge jumps up to ~13x the single render's (docs/RADIOSITY.md), so the bars below
# tell the two apart.
ROOM_INI = "Width=160\nHeight=120\nAntialias=on\nAntialias_Threshold=0.3\n"
EDGES = (32, 64, 96)  # 0-based first rows of the 2nd, 3rd and 4th slice


def rgb(path: Path) -> tuple[int, bytes]:
    """(width, 8-bit RGB samples row by row)."""
    image = Image.open(path).convert("RGB")
    return image.width, image.tobytes()


def psnr(a: Path, b: Path) -> float:
    (_, pa), (_, pb) = rgb(a), rgb(b)
    assert len(pa) == len(pb)
    mse = sum((x - y) ** 2 for x, y in zip(pa, pb)) / len(pa)
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def row_jump(path: Path, row: int) -> float:
    """Mean |pixel(row) - pixel(row - 1)| over the columns and channels: a slice edge that shows is a jump."""
    width, px = rgb(path)
    line = 3 * width
    above, below = px[(row - 1) * line:row * line], px[row * line:(row + 1) * line]
    return sum(abs(x - y) for x, y in zip(above, below)) / line


def jump_ratios(stitched: Path, single: Path) -> list[float]:
    return [row_jump(stitched, r) / max(row_jump(single, r), 1e-9) for r in EDGES]


def room(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "room", ROOM, ROOM_INI)


def _running(client, job_id: str) -> dict[str, str]:
    return {b: info["node"] for b, info in client.store.running(job_id).items()}


def test_sliced_radiosity_still_matches_a_single_render_only_with_the_pre_pass(tmp_path, settings, client, workers):
    scene = room(tmp_path)
    workers(concurrency=2)
    povray_direct(scene, tmp_path / "ref")
    single = tmp_path / "ref" / "ref.png"

    cached = client.submit(scene, slices=4)
    assert cached.spec.batches[0] == "f000001-000001-pre" and cached.spec.radiosity == "prepass"
    view = client.wait(cached.spec.id, timeout=180)
    assert view.to_json()["prepass"] == {"kind": "radiosity", "total": 1, "done": 1, "running": 0, "failed": 0}
    with_prepass = client.fetch(cached.spec.id, tmp_path / "cached")[0]

    plain = client.submit(scene, slices=4, radiosity_cache="off")
    assert not any(b.endswith("-pre") for b in plain.spec.batches) and plain.spec.radiosity == "off"
    client.wait(plain.spec.id, timeout=180)
    without = client.fetch(plain.spec.id, tmp_path / "plain")[0]

    # the bars of issue #14, and proof that they discriminate: today's slices fail both
    assert psnr(with_prepass, single) >= 42, psnr(with_prepass, single)
    assert max(jump_ratios(with_prepass, single)) <= 1.5, jump_ratios(with_prepass, single)
    assert psnr(without, single) < 42 and max(jump_ratios(without, single)) > 1.5

    key = radiosity_key(radiosity_digest(cached.spec, 1))
    stored = Path(settings.storage) / key
    assert stored.stat().st_size > 10_000, "the pre-pass stored povray's radiosity samples"
    assert client.store.cache_sha256(key) == hashlib.sha256(stored.read_bytes()).hexdigest(), "and its hash"
    assert check_cache(stored) > 100, "a cache as povray writes it passes the check slices make"

    # status and watch show the stage
    env = worker_env(settings)
    result = CliRunner().invoke(cli, ["status", cached.spec.id], env=env)
    assert result.exit_code == 0, result.output
    assert "pre-pass: radiosity 1/1" in result.output

    # a re-submit of the same scene at the same size and options reuses the stored cache: no pre-pass, same pixels
    again = client.submit(scene, slices=4)
    assert not any(b.endswith("-pre") for b in again.spec.batches) and again.spec.radiosity == "prepass"
    assert any("reused" in note for note in again.notes)
    client.wait(again.spec.id, timeout=180)
    assert pixels(client.fetch(again.spec.id, tmp_path / "again")[0]) == pixels(with_prepass)


def test_a_sliced_radiosity_animation_gets_one_pre_pass_per_frame(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "fly", ROOM, "Width=96\nHeight=64\nAntialias=off\nInitial_Frame=1\n"
                                                "Final_Frame=2\n")
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    assert [b for b in sub.spec.batches if b.endswith("-pre")] == ["f000001-000001-pre", "f000002-000002-pre"]
    client.wait(sub.spec.id, timeout=180)
    frames = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    for n, frame in enumerate(frames, 1):
        single = tmp_path / "ref" / f"ref{n}.png"
        assert psnr(frame, single) >= 42, (n, psnr(frame, single))
        assert row_jump(frame, 32) <= 1.5 * row_jump(single, 32), n  # without the pre-pass: 39 dB, jumps 2.2-4.6x


def test_a_pretrace_too_coarse_for_the_probe_still_gets_its_pre_pass(tmp_path, settings, client, workers):
    """cornell.pov's pretrace_start 0.04 runs no pretrace step in the 8x6 probe (issue #27): the node still finds
    radiosity, stores its samples, and the slices load them (no seam)."""
    coarse = ROOM.replace("pretrace_start 0.08", "pretrace_start 0.04")
    assert coarse != ROOM
    scene = write_scene(tmp_path / "coarse", coarse, "Width=96\nHeight=64\nAntialias=off\n")
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    client.wait(sub.spec.id, timeout=180)
    stored = Path(settings.storage) / radiosity_key(radiosity_digest(sub.spec, 1))
    assert check_cache(stored) > 100, "the pre-pass found radiosity and stored its samples"
    povray_direct(scene, tmp_path / "ref")
    single, frame = tmp_path / "ref" / "ref.png", client.fetch(sub.spec.id, tmp_path / "out")[0]
    assert row_jump(frame, 32) <= 1.5 * row_jump(single, 32)


def test_a_scene_without_a_real_pretrace_stores_no_cache(tmp_path, settings, client, workers):
    """pretrace_start = pretrace_end = 1 (blocks/stacker*.pov): the pretrace computes next to none of the samples,
    so the pre-pass stores an empty cache and the slices render as with --radiosity-cache off (issue #27: the
    stackers were 36-47 dB from a single render with the cache, 48-57 dB without)."""
    flat = ROOM.replace("pretrace_start 0.08", "pretrace_start 1").replace("pretrace_end 0.01", "pretrace_end 1")
    assert "pretrace_end 1\n" in flat
    scene = write_scene(tmp_path / "flat", flat, "Width=64\nHeight=48\nAntialias=off\n")
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    client.wait(sub.spec.id, timeout=180)
    assert (Path(settings.storage) / radiosity_key(radiosity_digest(sub.spec, 1))).stat().st_size == 0
    off = client.submit(scene, slices=2, radiosity_cache="off")
    client.wait(off.spec.id, timeout=180)
    assert pixels(client.fetch(sub.spec.id, tmp_path / "a")[0]) == pixels(client.fetch(off.spec.id, tmp_path / "b")[0])


def test_a_pre_pass_node_killed_mid_pass_does_not_hang_the_job(tmp_path, settings, client, workers):
    settings = settings.with_(lease_seconds=2.0)
    scene = room(tmp_path)
    victim = workers(concurrency=1, name="victim", settings_=settings.with_(cache_dir=tmp_path / "victimcache"))
    sub = client.submit(scene, slices=4)
    wait_for(lambda: "f000001-000001-pre" in _running(client, sub.spec.id), 60, "the pre-pass to start")
    os.killpg(victim.pid, signal.SIGKILL)
    assert "f000001-000001-pre" not in client.store.batches(sub.spec.id)["done"], "killed after the pre-pass"
    workers(concurrency=2, name="rescuer", settings_=settings)

    view = client.wait(sub.spec.id, timeout=180)
    assert view.state == "done" and view.batches_requeued >= 1
    done = client.store.batches(sub.spec.id)["done"]
    assert done["f000001-000001-pre"]["node"].startswith("rescuer@")
    povray_direct(scene, tmp_path / "ref")
    frame = client.fetch(sub.spec.id, tmp_path / "out")[0]
    assert psnr(frame, tmp_path / "ref" / "ref.png") >= 42


def test_cancel_during_the_pre_pass_kills_it_and_queues_no_slice(tmp_path, settings, client, workers):
    scene = room(tmp_path)
    workers(concurrency=2, settings_=settings.with_(cache_dir=tmp_path / "nodecache"))
    sub = client.submit(scene, slices=4)
    wait_for(lambda: bool(povray_pids(str(tmp_path / "nodecache"))), 60, "the pre-pass's povray to start")
    client.cancel(sub.spec.id)
    wait_for(lambda: not povray_pids(str(tmp_path / "nodecache")), 10, "the pre-pass's povray to be killed")
    log = tmp_path / "node0.log"  # the pre-pass's task has returned: it queued whatever it was going to
    wait_for(lambda: re.search(r"render_batch\[\S+\] (succeeded|raised|ignored|rejected)",
                               log.read_text(errors="replace")), 30, "the pre-pass's task to return")
    wait_for(lambda: queue_drained(settings), 30, "the queue to drain")
    batches = client.store.batches(sub.spec.id)
    assert client.store.state(sub.spec.id) == "cancelled"
    assert batches["done"] == {} and batches["running"] == {}
    assert set(batches["attempts"]) == {"f000001-000001-pre"}, "no slice was started"
    assert not (Path(settings.storage) / "jobs" / sub.spec.id / "batches").exists()


def test_pause_during_the_pre_pass_parks_its_slices_until_resume(tmp_path, settings, client, workers):
    scene = room(tmp_path)
    workers(concurrency=2)
    sub = client.submit(scene, slices=4)
    wait_for(lambda: "f000001-000001-pre" in _running(client, sub.spec.id), 60, "the pre-pass to start")
    assert job_view(client.store, sub.spec.id).to_json()["prepass"]["running"] == 1  # status --json shows the stage
    client.pause(sub.spec.id)
    slices = [b for b in sub.spec.batches if not b.endswith("-pre")]
    # the running pre-pass finishes; the slices it queues are set aside, not rendered (the slices not yet sent are
    # parked at once by the pause: wait for the pre-pass too, which may still be rendering on a busy machine)
    wait_for(parked_after_the_pre_pass(client, sub.spec.id, slices), 60,
             "the pre-pass to finish and the slices to be parked")
    batches = client.store.batches(sub.spec.id)
    assert list(batches["done"]) == ["f000001-000001-pre"] and client.store.state(sub.spec.id) == "paused"
    assert client.resume(sub.spec.id) == 4
    view = client.wait(sub.spec.id, timeout=180)
    assert view.state == "done" and view.frames_done == 1


def test_a_scene_that_only_mentions_radiosity_renders_as_without_a_pre_pass(tmp_path, settings, client, workers):
    """The submit's text check plans a pre-pass; the node's probe finds radiosity off: pixel-identical slices."""
    scene = write_scene(tmp_path / "mention", "// no radiosity { } here\n" + AA_SENSITIVE,
                        "Width=40\nHeight=80\nAntialias=on\nAntialias_Threshold=0.3\n")
    workers(concurrency=2)
    sub = client.submit(scene, slices=3)
    assert sub.spec.batches[0] == "f000001-000001-pre"
    client.wait(sub.spec.id, timeout=120)
    povray_direct(scene, tmp_path / "ref")
    assert pixels(client.fetch(sub.spec.id, tmp_path / "out")[0]) == pixels(tmp_path / "ref" / "ref.png")
    assert (Path(settings.storage) / radiosity_key(radiosity_digest(sub.spec, 1))).stat().st_size == 0


def test_sliced_photon_still_stays_pixel_identical(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "caustics", CAUSTICS, "Width=64\nHeight=64\nAntialias=on\n"
                                                         "Antialias_Threshold=0.3\n")
    workers(concurrency=2)
    povray_direct(scene, tmp_path / "ref")
    for photons in ("off", "shared"):  # every slice shooting its own photons, or loading its frame's shared map
        sub = client.submit(scene, slices=2, photons=photons)
        assert sub.spec.radiosity == "off" and sub.spec.photons == photons
        assert any(b.endswith("-pre") for b in sub.spec.batches) == (photons == "shared")
        client.wait(sub.spec.id, timeout=180)
        assert pixels(client.fetch(sub.spec.id, tmp_path / photons)[0]) == pixels(tmp_path / "ref" / "ref.png")


def test_a_bad_radiosity_cache_mode_is_refused(tmp_path, settings):
    scene = room(tmp_path)
    result = CliRunner().invoke(cli, ["submit", str(scene), "--radiosity-cache", "sometimes"],
                                env=worker_env(settings))
    assert result.exit_code == 2 and "sometimes" in result.output


def _samples_calculated(log: str) -> int:
    return int(re.search(r"Radiosity samples calculated:\s+(\d+)", log).group(1))


def test_a_shared_cache_is_computed_once_and_loaded_by_every_frame(tmp_path, settings, client, workers):
    """A camera fly-through (only the camera moves): one pre-pass on the first frame, every frame loads its cache
    and so computes almost no radiosity samples of its own; without it each frame computes thousands."""
    scene = write_scene(tmp_path / "fly", ROOM, "Width=64\nHeight=48\nAntialias=off\nInitial_Frame=1\n"
                                                "Final_Frame=4\nInitial_Clock=0\nFinal_Clock=1\n")
    workers(concurrency=2)
    shared = client.submit(scene, count=2, radiosity_cache="shared")
    assert [b for b in shared.spec.batches if b.endswith("-pre")] == ["f000001-000001-pre"]
    per_frame = client.submit(scene, count=2, radiosity_cache="auto")  # not sliced: nothing to share
    assert per_frame.spec.radiosity == "off" and len(per_frame.spec.batches) == 2
    for sub in (shared, per_frame):
        client.wait(sub.spec.id, timeout=180)
    out_shared = client.fetch(shared.spec.id, tmp_path / "shared")
    out_plain = client.fetch(per_frame.spec.id, tmp_path / "plain")
    assert len(out_shared) == 4
    logs = {name: sorted(p for p in (tmp_path / name / "logs").glob("*.log") if "-pre" not in p.name)
            for name in ("shared", "plain")}
    assert (tmp_path / "shared" / "logs" / "f000001-000001-pre.log").is_file(), "the pre-pass's log is fetched too"
    assert len(logs["shared"]) == len(logs["plain"]) == 2
    for a, b in zip(logs["shared"], logs["plain"]):
        assert _samples_calculated(a.read_text()) * 20 < _samples_calculated(b.read_text()), (a.name, b.name)
    for a, b in zip(out_shared, out_plain):  # the same lighting, within radiosity's noise
        assert psnr(a, b) >= 35, (a.name, psnr(a, b))


# A small room in two 32-row slices: its pre-pass and slices take about a second each.
SMALL_ROOM_INI = "Width=48\nHeight=64\nAntialias=off\n"
#: Samples as povray writes them (a pre-pass of the room), and the same with a NaN: povray hung on one for 26 min.
SAMPLES = ("C2\t-2.2578\t3\t-1.26548\t7f007f\t0.0975\t0.0894\t0.0731\t0.845094\t0.773322\t055c7a\n"
           "C1\t1.72453\t-2.22045e-16\t-0.37736\t7ffe7f\t0.0113\t0.0093\t0.0073\t0.179018\t0.0347149\tdc972c\n")
NAN_SAMPLES = SAMPLES + "C1\tnan\tnan\tnan\t7ffe7f\tnan\tnan\tnan\tnan\tnan\tdc972c\n"


def _cache_key(client, scene: Path) -> str:
    """The storage key of the radiosity cache a 2-slice submit of `scene` loads: anyone who knows the scene can
    compute it (here: a submit, cancelled before any render node runs)."""
    probe = client.submit(scene, slices=2)
    client.cancel(probe.spec.id)
    return radiosity_key(radiosity_digest(probe.spec, 1))


def test_a_cache_planted_before_any_pre_pass_is_rendered_over(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "room", ROOM, SMALL_ROOM_INI)
    key = _cache_key(client, scene)
    planted = Path(settings.storage) / key
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(NAN_SAMPLES)
    sub = client.submit(scene, slices=2)
    assert sub.spec.batches[0] == "f000001-000001-pre", "no pre-pass of this farm stored it: no reuse"
    assert not any("reused" in note for note in sub.notes)
    workers(concurrency=2)
    assert client.wait(sub.spec.id, timeout=120).state == "done"
    stored = planted.read_bytes()
    assert b"nan" not in stored and check_cache(planted) > 0, "the pre-pass stored its own cache over it"
    assert client.store.cache_sha256(key) == hashlib.sha256(stored).hexdigest()
    client.fetch(sub.spec.id, tmp_path / "out")
    assert not any("refused" in log.read_text() for log in (tmp_path / "out" / "logs").glob("*.log"))


def _refusals(client, job_id: str, out: Path) -> list[str]:
    """The slices' log lines and the job's history lines that say the cache was refused."""
    client.fetch(job_id, out)
    lines = [line for log in sorted((out / "logs").glob("*-r*.log")) for line in log.read_text().splitlines()
             if line.startswith("httpov: the radiosity cache")]
    history = [h["what"] for h in client.store.batches(job_id)["history"] if "radiosity cache" in h["what"]]
    return lines + history


def test_a_slice_refuses_a_cache_that_is_not_what_the_pre_pass_stored(tmp_path, settings, client, workers):
    """The hash in Redis is the pre-pass's; the file under the key is another (valid samples, or NaN samples whose
    own hash was recorded: the format check): the slices run their own pretrace, say so, and the job is done."""
    scene = write_scene(tmp_path / "room", ROOM, SMALL_ROOM_INI)
    key = _cache_key(client, scene)
    workers(concurrency=2)
    planted = Path(settings.storage) / key
    planted.parent.mkdir(parents=True, exist_ok=True)
    for n, (content, recorded, why) in enumerate([
            (SAMPLES, hashlib.sha256(b"what the pre-pass stored").hexdigest(), "does not match the SHA-256"),
            (NAN_SAMPLES, hashlib.sha256(NAN_SAMPLES.encode()).hexdigest(), "not finite")]):
        planted.write_text(content)
        client.store.record_cache(key, recorded)
        sub = client.submit(scene, slices=2)
        assert not any(b.endswith("-pre") for b in sub.spec.batches), "a recorded cache is reused: no pre-pass"
        view = client.wait(sub.spec.id, timeout=60)  # a NaN cache loaded would hang povray far longer
        assert view.state == "done" and view.frames_done == 1
        refusals = _refusals(client, sub.spec.id, tmp_path / f"out{n}")
        assert len(refusals) == 4, refusals  # each slice's log and the job's history
        assert all(key in line and why in line and "own radiosity pretrace" in line for line in refusals), refusals
