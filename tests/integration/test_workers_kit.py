"""workers/, the render node's deployment kit: the setup script installs a node whose health check passes,
the systemd unit verifies, and the health check fails clearly when something is wrong."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpov.local_farm import free_port
from httpov.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "workers"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """workers/setup-node.sh run for real (pip install included) into a temporary prefix and root."""
    base = tmp_path_factory.mktemp("node")
    result = subprocess.run(["bash", str(KIT / "setup-node.sh"), "--prefix", str(base / "opt"), "--user", "root",
                             "--root", str(base / "root"), "--no-start", "--extras", ""],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    yield base


def _env_file(path: Path, settings: Settings, broker: str | None = None) -> Path:
    url = broker or settings.broker_url
    path.write_text(f"HTTPOV_BROKER_URL={url}\nHTTPOV_STATE_URL={url}\nHTTPOV_STORAGE={settings.storage}\n"
                    f"HTTPOV_PREFIX={settings.prefix}\nHTTPOV_QUEUE={settings.queue}\n"
                    f"HTTPOV_CACHE_DIR={settings.cache_dir}\nHTTPOV_RENDER_PROCESSES=2\n")
    return path


def _health(node: Path, env_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "HTTPOV_ENV_FILE": str(env_file)}
    return subprocess.run([str(node / "opt" / "bin" / "httpov-healthcheck"), *args], capture_output=True, text=True,
                          env=env, cwd=node, timeout=120)


def test_the_unit_verifies_and_restarts_with_a_stop_timeout_longer_than_a_lease(node: Path) -> None:
    unit = node / "root" / "etc" / "systemd" / "system" / "httpov-worker.service"
    text = unit.read_text()
    assert f"ExecStart={node}/opt/bin/celery -A httpov worker" in text and "User=root" in text
    check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert check.returncode == 0 and "httpov-worker" not in check.stderr, check.stderr
    shipped = (KIT / "httpov-worker.service").read_text()
    assert re.search(r"^Restart=on-failure$", shipped, re.M)  # a drained node exits 0 and stays stopped
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", shipped, re.M).group(1))
    assert stop > Settings().lease_seconds
    env = (node / "root" / "etc" / "httpov" / "worker.env")
    assert env.read_text() == (KIT / "worker.env.example").read_text() and (env.stat().st_mode & 0o777) == 0o640


def test_the_installed_package_has_no_top_level_celeryconfig(node: Path) -> None:
    """pip installs httpov as one top-level package: its Celery tunables are httpov.celeryconfig, so a user's own
    `celeryconfig` neither shadows them nor is shadowed by them."""
    show = ("import importlib.metadata as m, json; from httpov.celery import app; "
            "print(json.dumps([sorted({f.parts[0] for f in m.files('httpov')}), app.conf.worker_max_tasks_per_child]))")
    out = subprocess.run([str(node / "opt" / "bin" / "python"), "-c", show], capture_output=True, text=True, cwd=node,
                         env={"PATH": os.environ["PATH"], "HOME": str(node)}, check=True, timeout=60).stdout
    top, per_child = json.loads(out)
    assert [name for name in top if not name.endswith(".dist-info") and name != ".."] == ["httpov"], top
    assert "celeryconfig.py" not in top and per_child == 200  # httpov.celeryconfig was read


def test_the_installed_node_is_healthy_and_its_worker_answers(node: Path, settings: Settings,
                                                               tmp_path: Path) -> None:
    env_file = _env_file(tmp_path / "worker.env", settings)
    alone = _health(node, env_file)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert re.search(r"^ok +povray: rendered an 8x8 frame", alone.stdout, re.M)
    name = f"httpov-kit{os.getpid()}@{socket.gethostname()}"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    env.update(line.split("=", 1) for line in env_file.read_text().splitlines())
    worker = subprocess.Popen([str(node / "opt" / "bin" / "celery"), "-A", "httpov", "worker", "--hostname", name,
                               "--without-gossip", "--without-mingle", "--loglevel", "WARNING"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        answered = _health(node, env_file, "--worker", name)
        while answered.returncode != 0 and time.monotonic() < deadline:
            answered = _health(node, env_file, "--worker", name)
        assert answered.returncode == 0, answered.stdout
        assert f"ok   worker: worker {name} answers" in answered.stdout
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    gone = _health(node, env_file, "--worker", name)
    assert gone.returncode == 1 and re.search(r"^FAIL worker: .*did not answer", gone.stdout, re.M)


def test_the_health_check_names_what_is_wrong(node: Path, settings: Settings, tmp_path: Path) -> None:
    env_file = _env_file(tmp_path / "worker.env", settings, broker=f"redis://127.0.0.1:{free_port()}/0")
    result = _health(node, env_file)
    assert result.returncode == 1
    assert re.search(r"^FAIL redis: .*cannot reach Redis", result.stdout, re.M)
    assert re.search(r"^ok +povray:", result.stdout, re.M)
