"""One job, one povray build: batches record the versions that rendered them, nodes with another povray hand the
job's batches to a node with its version, `--any-povray` lets every node render."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import TINY_ANIMATION, wait_for, write_scene
from tests.integration.faults import slow_scene

pytestmark = pytest.mark.integration



def _other_povray(path: Path) -> Path:
    """The real povray with another version string in it, as a node with another build has (a script would not
    run inside the render sandbox, which shows povray's binary and libraries only)."""
    real = Path(shutil.which("povray") or "/usr/bin/povray").resolve().read_bytes()
    ours, other = _numbers(_ours()), _numbers(_other())
    assert ours.encode() in real and ours != other
    path.write_bytes(real.replace(ours.encode(), other.encode()))
    path.chmod(0o755)
    return path


def _numbers(version: str) -> str:
    return version.split(".unofficial")[0]


def _other() -> str:
    """The version the copy says: ours with its last number 99."""
    return _ours().replace(_numbers(_ours()), _numbers(_ours())[:-2] + "99")


def _ours() -> str:
    out = subprocess.run(["povray", "--version"], capture_output=True, text=True).stderr
    return next(line.split()[1] for line in out.splitlines() if line.startswith("POV-Ray"))


def test_a_job_renders_with_the_first_nodes_povray_only(tmp_path: Path, settings: Settings, client, workers):
    sub = client.submit(slow_scene(tmp_path / "slow", 6), count=1)
    workers(concurrency=1, name="first")
    wait_for(lambda: client.store.record(sub.spec.id).get("povray"), 60, "the first node to start the job")
    assert client.store.record(sub.spec.id)["povray"] == _ours()
    workers(concurrency=2, name="other", settings_=settings.with_(povray=str(_other_povray(tmp_path / "pov"))))
    final = client.wait(sub.spec.id, timeout=240)
    assert final.state == "done"
    done = client.store.batches(sub.spec.id)["done"]
    assert {info["node"].split("@")[0] for info in done.values()} == {"first"}
    assert {(info["povray"], info["httpov"]) for info in done.values()} == {(_ours(), "0.1.0")}
    log = (tmp_path / "other.log").read_text()
    assert f"has povray {_other()}, job {sub.spec.id} renders with {_ours()}: sent to first@" in log
    status = CliRunner().invoke(cli, ["status", sub.spec.id], env=worker_env(settings))
    print(status.output)
    assert f"versions: renders with povray {_ours()}\n  rendered by povray {_ours()} with httpov 0.1.0: 6 batch(es)" \
        in status.output


def test_any_povray_lets_every_node_render_and_says_which_rendered_what(tmp_path: Path, settings: Settings, client,
                                                                         workers):
    sub = client.submit(slow_scene(tmp_path / "slow", 6), count=1, any_povray=True)
    workers(concurrency=1, name="other", settings_=settings.with_(povray=str(_other_povray(tmp_path / "pov"))))
    wait_for(lambda: client.store.batches(sub.spec.id)["done"], 120, "the other node to render a batch")
    workers(concurrency=1, name="first")
    final = client.wait(sub.spec.id, timeout=240)
    assert final.state == "done" and final.povray is None and final.any_povray is True
    done = client.store.batches(sub.spec.id)["done"].values()
    assert all(info["povray"] == (_other() if info["node"].startswith("other@") else _ours()) for info in done)
    assert {v["povray"] for v in final.versions} >= {_other()}
    assert sum(v["batches"] for v in final.versions) == 6


def test_a_job_whose_povray_is_gone_fails_saying_so(tmp_path: Path, settings: Settings, client, workers):
    sub = client.submit(write_scene(tmp_path / "a", TINY_ANIMATION, "Width=24\nHeight=16\nInitial_Frame=1\n"
                                    "Final_Frame=2\n"), count=1)
    client.store.pin_povray(sub.spec.id, "3.6.1")  # as if a node with 3.6.1 had started it, then left
    workers(concurrency=1, name="other", settings_=settings.with_(povray=str(_other_povray(tmp_path / "pov"))))
    wait_for(lambda: client.store.state(sub.spec.id) == "failed", 120, "the job to fail")
    status = CliRunner().invoke(cli, ["status", sub.spec.id, "--json"], env=worker_env(settings)).output
    assert "no live render node has povray 3.6.1" in status and "submitted with 'any povray'" in status
    assert client.store.batches(sub.spec.id)["done"] == {}
