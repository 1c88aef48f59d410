"""Celery's configuration: httpov's own, never a stray celeryconfig on sys.path; invariants no site can undo;
a bare `celery -A httpov worker` runs as many render processes as HTTPOV_RENDER_PROCESSES says."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from httpov.local_farm import stop_worker, worker_env
from httpov.settings import Settings, default_render_processes
from tests.conftest import wait_for

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


def test_a_bare_worker_runs_the_default_number_of_render_slots_as_threads(settings: Settings, tmp_path: Path) -> None:
    """`celery -A httpov worker` with no --concurrency, as the card and most users type it: its render slots are
    threads of the one process (Celery's threads pool), so an idle node is one small process, not one interpreter
    per slot."""
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
        assert stats[name]["pool"]["implementation"] == "httpov.worker.pool:ThreadPool"
        # idle memory: the whole node, its 3 slots included, once its warm-up is over (about 50 MiB here, where
        # each prefork render process alone held 46 MiB RSS)
        samples: list[tuple[float, int]] = []

        def settled() -> bool:  # the node's CPU stood still for a second
            now, ticks = time.monotonic(), _cpu_ticks(proc.pid)
            samples.append((now, ticks))
            before = [t for when, t in samples if now - when >= 1.0]
            return bool(before) and before[-1] == ticks
        wait_for(settled, 60, "the idle node's warm-up")
        assert _children(proc.pid) == [], "no render process of its own: the slots are threads"
        rss = _rss_mib(proc.pid)
        assert rss < 80, f"MiB RSS of the idle node of 3 render slots: {rss}"
    finally:
        stop_worker(proc)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if stat and int(stat[stat.rfind(b")") + 2:].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return sum(int(v) for v in stat[stat.rfind(b")") + 2:].split()[11:13])


def _rss_mib(pid: int) -> float:
    """A process's resident memory, all of it (smaps_rollup's Rss)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss"].split()[0]) / 1024


PLANTED = "import pathlib\npathlib.Path(__file__).with_name('ran-' + __name__).touch()\n"


def _planted_folder(tmp_path: Path) -> Path:
    """A folder (a scene's, say) holding an httpov.py and a celeryconfig.py that leave a mark when imported."""
    folder = tmp_path / "scene-folder"
    folder.mkdir()
    for name in ("httpov.py", "celeryconfig.py"):
        (folder / name).write_text(PLANTED)
    return folder


def test_celery_started_by_httpov_imports_nothing_from_the_current_folder(tmp_path: Path) -> None:
    """`celery -A httpov` loads the app with the current folder first on sys.path (Celery's import_from_cwd, the
    ASSUMPTION cwd-in-path of httpov.celery_main): in a folder holding an httpov.py it runs that file. httpov starts
    Celery (`httpov render`'s nodes, `httpov flower`) through httpov.celery_main, which runs neither file."""
    from httpov.celery_main import ARGV

    folder = _planted_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bare = subprocess.run([sys.executable, "-m", "celery", "-A", "httpov", "report"], cwd=folder, env=env,
                          capture_output=True, text=True)
    assert (folder / "ran-httpov").exists(), "Celery no longer imports from the current folder: see celery_main"
    (folder / "ran-httpov").unlink()
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)  # the planted file's bytecode, where it is written
    assert bare.returncode != 0
    guarded = subprocess.run([*ARGV, "-A", "httpov", "report"], cwd=folder, env=env, capture_output=True, text=True)
    assert guarded.returncode == 0, guarded.stderr
    assert "task_serializer: 'json'" in guarded.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["celeryconfig.py", "httpov.py"], "a planted file ran"


def test_httpov_render_and_flower_start_celery_through_the_guard(tmp_path: Path, monkeypatch) -> None:
    """The render nodes of `httpov render` and `httpov flower` (the `httpov` script itself never has the current
    folder on sys.path: a console script's sys.path[0] is its own bin folder)."""
    from click.testing import CliRunner

    import httpov.local_farm as local_farm
    from httpov.celery_main import ARGV
    from httpov.cli import cli

    folder = _planted_folder(tmp_path)
    script = subprocess.run([str(Path(sys.executable).with_name("httpov")), "--help"], cwd=folder,
                            capture_output=True, text=True)
    assert script.returncode == 0 and sorted(p.name for p in folder.iterdir()) == ["celeryconfig.py", "httpov.py"]
    started: list[list[str]] = []
    monkeypatch.setattr(local_farm.subprocess, "Popen", lambda argv, **_: started.append(argv))
    local_farm.start_worker(Settings.from_env({"HOME": str(tmp_path)}), 1, "n")
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append(argv))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    assert CliRunner().invoke(cli, ["flower"], env={"HOME": str(tmp_path)}).exit_code == 0
    assert [argv[:4] for argv in started] == [list(ARGV), list(ARGV)]


def test_a_worker_httpov_starts_loads_celerys_worker_command_alone(tmp_path: Path) -> None:
    """httpov.celery_main runs `-A httpov worker` without Celery's umbrella command, which imports every other
    command and every installed plugin first (Flower and tornado, prompt_toolkit: docs/PERFORMANCE.md). The worker's
    options and their CELERY_WORKER_* variables are still Celery's, nothing is imported from the current folder, and
    a restart runs the same command."""
    from httpov.celery_main import ARGV

    folder = _planted_folder(tmp_path)
    report = ("import atexit, sys; atexit.register(lambda: print(sys.argv, sorted(m for m in ('celery.bin.celery', "
              "'flower', 'tornado', 'prompt_toolkit') if m in sys.modules))); from httpov.celery_main import main; "
              "main()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CELERY_")}
    shown = subprocess.run([ARGV[0], "-P", "-c", report, "-A", "httpov", "worker", "--help"], cwd=folder, env=env,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "Usage: celery worker" in shown.stdout and "--concurrency" in shown.stdout, shown.stdout
    # sys.argv is what Celery runs again (after `python`) to restart a worker on SIGHUP: this same command, where
    # it once was `python celery ...`, a file named celery in the current folder
    argv = ["-P", "-m", "httpov.celery_main", "-A", "httpov", "worker", "--help"]
    assert shown.stdout.strip().splitlines()[-1] == f"{argv} []", shown.stdout[-300:]
    refused = subprocess.run([*ARGV, "-A", "httpov", "worker"], cwd=folder,
                             env=dict(env, CELERY_WORKER_CONCURRENCY="none"), capture_output=True, text=True)
    assert refused.returncode == 2 and "Invalid value for '-c' / '--concurrency'" in refused.stderr, refused.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["celeryconfig.py", "httpov.py"], "a planted file ran"
