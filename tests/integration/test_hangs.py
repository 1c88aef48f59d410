"""A povray that hangs (stopped with SIGSTOP: no CPU, no rows) is killed after HTTPOV_NO_PROGRESS_SECONDS, its batch
tried once more on another node; a second hang fails the job with the reason. Real workers, povray and Redis."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from httpov.errors import RenderHungError
from httpov.nodes import farm_nodes
from httpov.plan import Batch, JobSpec
from httpov.view import job_view
from httpov.worker import povray
from tests.conftest import pixels, povray_direct, wait_for
from tests.integration.faults import povray_pids, slow_scene


def _povrays(marker: Path) -> list[int]:
    """The povray processes themselves (not their bwrap) of the node whose cache folder is `marker`."""
    found = []
    for pid in povray_pids(str(marker)):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "povray":
                found.append(pid)
        except OSError:
            continue
    return found


def _stop_first_povray(*caches: Path) -> Path:
    """SIGSTOP the first povray seen under any of the nodes' cache folders; answers that node's folder."""
    seen: list[tuple[Path, int]] = []

    def one_runs() -> bool:
        seen[:] = [(cache, pid) for cache in caches for pid in _povrays(cache)]
        return bool(seen)
    wait_for(one_runs, 60, "a povray to start")
    cache, pid = seen[0]
    os.kill(pid, signal.SIGSTOP)
    return cache


def test_a_hung_povray_is_killed_and_its_batch_renders_on_another_node(tmp_path, settings, client, workers):
    settings = settings.with_(no_progress_seconds=2.0, lease_seconds=2.0)
    scene = slow_scene(tmp_path / "hang", 1)
    caches = {name: tmp_path / f"{name}cache" for name in ("a", "b")}
    for name, cache in caches.items():
        workers(concurrency=1, name=name, settings_=settings.with_(cache_dir=cache))
    wait_for(lambda: len(client.store.live_nodes(within=10)) == 2, 30, "both nodes to start")
    sub = client.submit(scene, count=1)  # one batch of one frame, ~1-1.5 s
    stuck = _stop_first_povray(*caches.values())
    stuck_node = next(name for name, cache in caches.items() if cache == stuck)

    final = client.wait(sub.spec.id, timeout=120)
    assert (final.state, final.frames_done) == ("done", 1)
    assert not _povrays(stuck), "the stopped povray was killed"
    done = client.store.batches(sub.spec.id)["done"]["f000001-000001"]
    assert not done["node"].startswith(stuck_node + "@"), "retried on the other node"
    view = job_view(client.store, sub.spec.id)
    assert len(view.hangs) == 1 and view.hangs[0]["what"].startswith(f"frame 1 hung on {stuck_node}@")
    assert "no progress for 2 s" in view.hangs[0]["what"], view.hangs
    node_rows = {n["node"].split("@")[0]: n for n in farm_nodes(client.store, settings.lease_seconds)}
    assert (node_rows[stuck_node]["hung_last_hour"], node_rows[stuck_node]["failed_last_hour"]) == (1, 1)
    assert node_rows[({"a", "b"} - {stuck_node}).pop()]["hung_last_hour"] == 0
    [image] = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    assert pixels(image) == pixels(tmp_path / "ref" / "ref.png")


def test_a_batch_that_hangs_twice_fails_its_job_with_the_reason(tmp_path, settings, client, workers):
    settings = settings.with_(no_progress_seconds=2.0, lease_seconds=2.0)
    scene = slow_scene(tmp_path / "hang2", 1)
    cache = tmp_path / "onecache"
    workers(concurrency=1, name="only", settings_=settings.with_(cache_dir=cache))
    sub = client.submit(scene, count=1)
    _stop_first_povray(cache)
    # the only node is the farm: the batch is tried once more there (after a lease), and hangs again
    wait_for(lambda: client.store.running(sub.spec.id).get("f000001-000001", {}).get("retrying"), 30,
             "the batch to wait for its second try")
    _stop_first_povray(cache)
    wait_for(lambda: job_view(client.store, sub.spec.id).state == "failed", 60, "the job to fail")
    view = job_view(client.store, sub.spec.id)
    assert any(e.startswith("no progress for 2 s") and "hung 2 times" in e for e in view.errors), view.errors
    assert len(view.hangs) == 2
    assert not _povrays(cache)


def test_a_batch_past_its_derived_time_limit_is_taken_for_hung(tmp_path):
    """povray.render with the time limit a node derives from the job's frame times: past it, povray (still busy)
    is killed and the batch is a hang (tried once more elsewhere), not a final failure."""
    scene = slow_scene(tmp_path / "busy", 2)
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(scene, workdir / "scene")
    spec = JobSpec(id="j", name="busy", scene_key="k", root="", pov="scene.pov",
                   options={"Input_File_Name": "scene.pov", "Antialias": "on", "Antialias_Threshold": "0.05"},
                   initial=1, final=2, first=1, last=2, width=64, height=48, count=2, batches=["f000001-000002"])
    with pytest.raises(RenderHungError, match=r"ran past its time limit of 1 s \(test\)"):
        povray.render("povray", spec, Batch(1, 2), workdir, 1, lambda: True, hang_limit=(1.0, "test"))
    # killed with its group and its sandbox reaped; povray itself, in bwrap's, may take a moment to go on a busy host
    wait_for(lambda: not povray_pids(str(workdir)), 5, "povray to be killed")
