"""Issue #31, items 1 and 2: a node's full disk is the node's fault, not the job's; full shared storage holds the
farm's jobs, blaming no node. Real tmpfs filesystems (4 MiB), real render nodes, real povray."""
from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.celery import make_app
from httpov.cli import cli
from httpov.client import Client
from httpov.local_farm import worker_env
from httpov.settings import Settings
from httpov.states import FINISHED, LIVE
from httpov.view import job_view
from tests.conftest import TINY_ANIMATION, wait_for, write_scene
from tests.webapp import page

pytestmark = pytest.mark.integration

MIB = 1024**2
#: A 1000x1000 frame: povray's state file beside its output (10 bytes a pixel) fills 4 MiB well before its end.
BIG_FRAME = "Width=1000\nHeight=1000\nAntialias=off\n"
SMALL_ANIMATION = "Width=64\nHeight=48\nInitial_Frame=1\nFinal_Frame=4\nInitial_Clock=0\nFinal_Clock=1\n"


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (root mounts it), unmounted at teardown."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a 4 MiB tmpfs and need root: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(path: Path, leave_mib: int = 0) -> None:
    """Write `path` until its filesystem has at most `leave_mib` MiB free (0: until ENOSPC)."""
    with open(path, "wb") as out, contextlib.suppress(OSError):
        while shutil.disk_usage(path.parent).free > leave_mib * MIB:
            out.write(b"\0" * min(MIB, max(4096, shutil.disk_usage(path.parent).free - leave_mib * MIB)))
            out.flush()


def _log(tmp_path: Path, name: str) -> str:
    log = tmp_path / f"{name}.log"
    return log.read_text(errors="replace") if log.exists() else ""


def _nodes(settings: Settings) -> dict[str, dict]:
    import json

    result = CliRunner().invoke(cli, ["nodes", "--json"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    return {n["node"].split("@")[0]: n for n in json.loads(result.output)}


def test_a_render_that_fills_a_nodes_disk_is_rendered_by_another_node(tiny_fs, tmp_path, settings, client, workers):
    """The node's cache on 4 MiB: povray's state file fills it and povray says "Frontend halted render". Not the
    scene's failure: the batch waits (no other node yet), then goes to the node with room; nothing is blocked."""
    full = settings.with_(cache_dir=tiny_fs / "cache", min_free_mb=1)  # it takes the batch: 4 MiB free
    workers(concurrency=1, name="full", settings_=full)
    wait_for(lambda: "full" in _nodes(settings), 30, "the small node to say it is alive")
    sub = client.submit(write_scene(tmp_path / "big", TINY_ANIMATION, BIG_FRAME), count=1)
    wait_for(lambda: any(word in _log(tmp_path, "full") for word in ("disk full", "batch failed")), 60,
             "the small node to run out of room")
    assert client.store.state(sub.spec.id) in LIVE, "a node's full disk must not fail the job"
    workers(concurrency=1, name="roomy")
    view = client.wait(sub.spec.id, timeout=90)
    assert view.state == "done" and view.nodes_blocked == []
    done = client.store.batches(sub.spec.id)
    assert {info["node"].split("@")[0] for info in done["done"].values()} == {"roomy"}
    assert not any(f.get("final") for f in done["failed"].values())
    assert "disk full (cache folder, 0 MiB free)" in _log(tmp_path, "full")
    assert _nodes(settings)["full"]["failed_last_hour"] == 0  # handed on, not failed


def test_a_node_short_of_room_takes_no_batch_and_says_so(tiny_fs, tmp_path, settings, client, workers):
    """Below HTTPOV_MIN_FREE_MB the node renders nothing: `httpov nodes` and the job's status say why, and the job
    waits for a node with room."""
    _fill(tiny_fs / "ballast", leave_mib=2)
    full = settings.with_(cache_dir=tiny_fs / "cache", min_free_mb=3)
    workers(concurrency=1, name="full", settings_=full)
    wait_for(lambda: (_nodes(settings).get("full") or {}).get("fault"), 30, "the small node to say it has no room")
    fault = _nodes(settings)["full"]["fault"]
    assert fault.startswith("disk full (cache folder, ") and fault.endswith(" MiB free)")
    assert int(fault.split(", ")[1].split()[0]) <= 2
    sub = client.submit(write_scene(tmp_path / "anim", TINY_ANIMATION, SMALL_ANIMATION), count=2)
    wait_for(lambda: "disk full" in _log(tmp_path, "full"), 30, "the small node to hand a batch back")
    view = job_view(client.store, sub.spec.id)
    assert view.state in LIVE and view.frames_done == 0 and any(n.startswith("node full@") and fault in n
                                                                for n in view.notes)
    status = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings), terminal_width=200).output
    assert "node full@" in status and fault in status
    table = CliRunner().invoke(cli, ["nodes"], env=worker_env(settings), terminal_width=200).output
    assert f": {fault}" in table
    # the web pages, as anyone who may read the farm sees them (public read: no account)
    code, html = page(client, f"/jobs/{sub.spec.id}")
    assert code == 200 and re.search(rf"node full@\S+: {re.escape(fault)}", html), html
    code, html = page(client, "/nodes")
    assert code == 200 and f'<span class="fault">{fault}</span>' in html, html
    workers(concurrency=1, name="roomy")
    view = client.wait(sub.spec.id, timeout=60)
    assert view.state == "done" and view.nodes_blocked == [] and view.notes == []
    done = client.store.batches(sub.spec.id)["done"]
    assert {info["node"].split("@")[0] for info in done.values()} == {"roomy"}


def test_full_storage_holds_the_job_blames_no_node_and_it_finishes_once_freed(tiny_fs, tmp_path, settings, workers):
    """The farm's storage on 4 MiB, filled after the scene is stored: every batch's upload fails. The job waits
    and says why; no node is blocked, nothing fails; once there is room again the job finishes."""
    # 2 s leases: a batch held for storage is tried again within 4 s (two leases), where the default 4 s leases let
    # the back-off reach 8 s and the job waited that long after the room came back
    farm = settings.with_(storage=str(tiny_fs / "storage"), lease_seconds=2.0)
    client = Client(farm, make_app(farm))
    sub = client.submit(write_scene(tmp_path / "anim", TINY_ANIMATION, SMALL_ANIMATION), count=1)
    _fill(tiny_fs / "ballast")
    workers(concurrency=1, name="a", settings_=farm)
    workers(concurrency=1, name="b", settings_=farm)
    wait_for(lambda: any(n.startswith("waiting for storage: ") for n in job_view(client.store, sub.spec.id).notes),
             30, "the job to say it waits for storage")
    wait_for(lambda: (_log(tmp_path, "a") + _log(tmp_path, "b")).count("batch waiting") >= 6, 40,
             "several uploads to fail")
    view = job_view(client.store, sub.spec.id)
    assert view.state in LIVE and view.nodes_blocked == [] and view.batches_failed == []
    assert "No space left on device" in view.notes[0]
    assert not client.store.batches(sub.spec.id)["failed"]  # no failed attempt recorded, nothing to block
    status = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(farm), terminal_width=200).output
    assert "waiting for storage: " in status and "will retry" not in status
    code, html = page(client, f"/jobs/{sub.spec.id}")  # the job page, as anyone who may read the farm sees it
    assert code == 200 and "waiting for storage: " in html and "No space left on device" in html, html
    (tiny_fs / "ballast").unlink()
    view = client.wait(sub.spec.id, timeout=60)
    assert view.state == "done" and view.frames_done == 4 and view.notes == [] and view.state in FINISHED
