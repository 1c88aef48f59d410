"""Celery's configuration: httpov's own, never a stray celeryconfig on sys.path; invariants no site can undo;
a bare `celery -A httpov worker` runs as many render processes as HTTPOV_RENDER_PROCESSES says."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from httpov.local_farm import stop_worker, worker_env
from httpov.settings import Settings, default_render_processes

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "task_serializer = 'pickle'\naccept_content = ['pickle', 'json']\nworker_prefetch_multiplier = 64\n" \
          "task_acks_late = False\nworker_max_tasks_per_child = 7\n"
SHOW = ("from httpov.celery import app; c = app.conf; import json; print(json.dumps([c.task_serializer, "
        "list(c.accept_content), c.worker_prefetch_multiplier, c.task_acks_late, c.worker_max_tasks_per_child, "
        "c.worker_concurrency]))")


def _conf(cwd: Path, **env: str) -> list:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    out = subprocess.run([sys.executable, "-c", SHOW], cwd=cwd, env=environ, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_celeryconfig_in_the_current_folder_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text(HOSTILE)
    serializer, accept, prefetch, late, per_child, _ = _conf(tmp_path)
    assert (serializer, accept, prefetch, late) == ("json", ["json"], 1, True)
    assert per_child == 200  # httpov's own celeryconfig.py was read, not the stray one
    report = subprocess.run([sys.executable, "-m", "celery", "-A", "httpov", "report"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True)
    assert "pickle" not in report.stdout and "task_serializer: 'json'" in report.stdout


def test_a_site_config_tunes_celery_but_cannot_turn_pickle_back_on(tmp_path: Path) -> None:
    (tmp_path / "site_httpov.py").write_text(HOSTILE)
    serializer, accept, prefetch, late, per_child, _ = _conf(
        tmp_path, HTTPOV_CELERY_CONFIG="site_httpov", PYTHONPATH=f"{REPO}:{tmp_path}")
    assert per_child == 7  # the site's tunable applies
    assert (serializer, accept, prefetch, late) == ("json", ["json"], 1, True)


def test_render_processes_default_to_four_per_core_over_threads(tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    home = {"HOME": str(tmp_path)}
    assert Settings.from_env(home).render_processes == 4 * cores
    assert Settings.from_env({**home, "HTTPOV_RENDER_THREADS": "2"}).render_processes == max(1, 2 * cores)
    assert Settings.from_env({**home, "HTTPOV_RENDER_PROCESSES": "3"}).render_processes == 3
    assert default_render_processes(64 * cores) == 1
    assert _conf(tmp_path)[5] == 4 * cores
    assert _conf(tmp_path, HTTPOV_RENDER_PROCESSES="5")[5] == 5


def test_a_bare_worker_runs_the_default_number_of_render_processes(settings: Settings, tmp_path: Path) -> None:
    """`celery -A httpov worker` with no --concurrency, as the card and most users type it."""
    env = {**worker_env(settings), "HTTPOV_RENDER_PROCESSES": "3", "PYTHONPATH": str(REPO)}
    name = f"bare-{os.getpid()}@localhost"
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "httpov", "worker", "-Q", settings.queue,
                             "-n", name, "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        from httpov.celery import make_app

        app = make_app(settings)
        stats = None
        deadline = time.monotonic() + 60
        while not stats and time.monotonic() < deadline:
            stats = app.control.inspect(destination=[name], timeout=1.0).stats()
        assert stats, "the bare worker never answered"
        assert stats[name]["pool"]["max-concurrency"] == 3
    finally:
        stop_worker(proc)
