"""A shared photon map on real render nodes and real povray: a sliced photon still's pre-pass shoots its photons
once, every slice loads the map (its log says so, and shot none) and the stitched frame is pixel-identical to a
single render; a map that is not what the pre-pass stored is refused (the slices shoot their own, say so, and the
pixels are still right); a scene whose photons block cannot be edited safely renders as before, every slice
shooting its own. docs/RADIOSITY.md measures the saving."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.paths import photon_map_key
from tests.conftest import parked_after_the_pre_pass, pixels, povray_direct, wait_for, write_scene

pytestmark = pytest.mark.integration

RESEARCH = Path(__file__).resolve().parents[2] / "scripts" / "research" / "scenes"
CAUSTICS = (RESEARCH / "caustics.pov").read_text()  # glass casting caustics: photons only (188 033 shot)
INI = "Width=48\nHeight=64\nAntialias=on\nAntialias_Threshold=0.3\n"  # two 32-row slices


def _logs(client, job_id: str, out: Path) -> dict[str, str]:
    client.fetch(job_id, out)
    return {p.name: p.read_text() for p in sorted((out / "logs").glob("*.log"))}


def _history(client, job_id: str, words: str) -> list[str]:
    return [h["what"] for h in client.store.batches(job_id)["history"] if words in h["what"]]


def _same_as_a_single_render(scene: Path, frame: Path, tmp_path: Path) -> bool:
    povray_direct(scene, tmp_path / "ref")
    return pixels(frame) == pixels(tmp_path / "ref" / "ref.png")


def test_a_sliced_photon_still_shoots_once_and_its_slices_load_the_map(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "caustics", CAUSTICS, INI)
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    assert sub.spec.photons == "shared" and sub.spec.radiosity == "off"
    assert sub.spec.batches[0] == "f000001-000001-pre" and any("photons" in note for note in sub.notes)
    assert client.wait(sub.spec.id, timeout=180).state == "done"
    frame = client.fetch(sub.spec.id, tmp_path / "out")[0]
    assert _same_as_a_single_render(scene, frame, tmp_path)
    logs = _logs(client, sub.spec.id, tmp_path / "out")
    assert "Number of photons shot:          188033" in logs.pop("f000001-000001-pre.log"), "the pre-pass shot them"
    assert len(logs) == 2
    for name, text in logs.items():  # each slice loaded the map and shot none
        assert "Starting the load of photon file httpov-photons-" in text and "photons shot" not in text, name
    assert not _history(client, sub.spec.id, "photon")
    stored = Path(settings.storage) / photon_map_key(sub.spec.id, 1)
    assert client.store.photon_map_sha256(sub.spec.id, 1) == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert stored.stat().st_size > 1_000_000
    client.delete(sub.spec.id)  # the map and its hash go with the job
    assert not stored.exists() and client.store.photon_map_sha256(sub.spec.id, 1) is None


def test_slices_shoot_their_own_photons_with_photons_off_or_a_block_that_cannot_be_edited_safely(
        tmp_path, settings, client, workers):
    """As before the shared map: --photons off, and a photons block that cannot be edited safely (its
    global_settings inside #if: submit says why): no pre-pass, every slice shoots its own, the frame is right."""
    conditional = CAUSTICS.replace("global_settings {", "#if (true)\nglobal_settings {").replace(
        "camera {", "#end\ncamera {", 1)
    plain = write_scene(tmp_path / "caustics", CAUSTICS, INI)
    guarded = write_scene(tmp_path / "guarded", conditional, INI)
    workers(concurrency=2)
    off = client.submit(plain, slices=2, photons="off")
    unsafe = client.submit(guarded, slices=2)
    assert off.spec.photons == unsafe.spec.photons == "off"
    assert any("photons are not shared (global_settings is inside a #if" in note for note in unsafe.notes), \
        unsafe.notes
    for sub, scene in ((off, plain), (unsafe, guarded)):
        assert not any(b.endswith("-pre") for b in sub.spec.batches)
        client.wait(sub.spec.id, timeout=180)
        frame = client.fetch(sub.spec.id, tmp_path / sub.spec.id)[0]
        assert _same_as_a_single_render(scene, frame, tmp_path)
        logs = _logs(client, sub.spec.id, tmp_path / sub.spec.id)
        assert len(logs) == 2 and all("Number of photons shot:          188033" in text for text in logs.values())


def test_a_map_that_is_not_what_the_pre_pass_stored_is_refused(tmp_path, settings, client, workers):
    """The map in storage is replaced between the pre-pass and the slices (the job paused meanwhile): its hash is
    not the one the pre-pass recorded, so each slice shoots its own photons and says so; the frame is still right."""
    heavy = CAUSTICS.replace("spacing 0.004", "spacing 0.002")  # a pre-pass of a few seconds, to pause during it
    scene = write_scene(tmp_path / "caustics", heavy, INI)
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    wait_for(lambda: "f000001-000001-pre" in client.store.batches(sub.spec.id)["running"], 60,
             "the pre-pass to start")
    client.pause(sub.spec.id)
    slices = [b for b in sub.spec.batches if not b.endswith("-pre")]
    wait_for(parked_after_the_pre_pass(client, sub.spec.id, slices), 90,
             "the pre-pass to finish and the slices to be parked")
    stored = Path(settings.storage) / photon_map_key(sub.spec.id, 1)
    data = stored.read_bytes()
    stored.write_bytes(data[: len(data) // 2])  # a truncated map: povray would read garbage photons from it
    assert client.resume(sub.spec.id) == 2
    assert client.wait(sub.spec.id, timeout=180).state == "done"
    frame = client.fetch(sub.spec.id, tmp_path / "out")[0]
    assert _same_as_a_single_render(scene, frame, tmp_path)
    logs = _logs(client, sub.spec.id, tmp_path / "out")
    for name in slices:
        text = logs[f"{name}.log"]
        assert "httpov: the photon map" in text and "was refused" in text and "shot its own photons" in text, name
        assert "Number of photons shot:" in text and "load of photon file" not in text, name
    refused = _history(client, sub.spec.id, "was refused")
    assert len(refused) == 2 and all("does not match the SHA-256" in line for line in refused), refused


def test_a_radiosity_and_photon_still_shares_both_from_one_pre_pass(tmp_path, settings, client, workers):
    """One pre-pass per frame: its probe shoots the photons into the map, its radiosity pass loads that map rather
    than shooting them again, and every slice loads both the map and the radiosity cache."""
    both = CAUSTICS.replace("max_trace_level 10", "max_trace_level 10\n  radiosity { pretrace_start 0.08 "
                                                  "pretrace_end 0.02 count 40 }")
    scene = write_scene(tmp_path / "both", both, INI)
    workers(concurrency=2)
    sub = client.submit(scene, slices=2)
    assert sub.spec.photons == "shared" and sub.spec.radiosity == "prepass"
    assert [b for b in sub.spec.batches if b.endswith("-pre")] == ["f000001-000001-pre"]
    assert client.wait(sub.spec.id, timeout=180).state == "done"
    logs = _logs(client, sub.spec.id, tmp_path / "out")
    pre = logs.pop("f000001-000001-pre.log")
    assert pre.count("Number of photons shot:") == 1 and pre.count("Starting the load of photon file") == 1
    assert len(logs) == 2
    for name, text in logs.items():
        assert "Starting the load of photon file" in text and "photons shot" not in text, name
        assert "Radiosity samples calculated" in text and "refused" not in text, name


def test_a_bad_photons_mode_is_refused_and_a_whole_frame_shares_nothing(tmp_path, settings, client):
    scene = write_scene(tmp_path / "caustics", CAUSTICS, INI)
    result = CliRunner().invoke(cli, ["submit", str(scene), "--slices", "2", "--photons", "sometimes"],
                                env=worker_env(settings))
    assert result.exit_code == 2 and "--photons" in result.output and "sometimes" in result.output
    whole = client.submit(scene)  # a whole frame shoots its photons once anyway: no pre-pass
    assert whole.spec.photons == "off" and not any(b.endswith("-pre") for b in whole.spec.batches)
    client.cancel(whole.spec.id)
