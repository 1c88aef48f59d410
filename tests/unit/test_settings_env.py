"""Settings.to_env: every setting a worker needs, under the one name from_env reads."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import httpov
from httpov.local_farm import worker_env
from httpov.settings import Settings


def test_to_env_gives_back_every_setting(tmp_path: Path) -> None:
    changed = Settings(broker_url="redis://10.0.0.1:6380/2", state_url="redis://10.0.0.2/1", storage="/srv/st",
                       prefix="p", queue="q", cache_dir=Path("/srv/cache"), cache_max_bytes=5, povray="/opt/povray",
                       render_threads=2, lease_seconds=7.5, max_attempts=4, task_time_limit=99, redis_ca="/ca.pem",
                       render_processes=3, render_pool="prefork", celery_config="site.celery", batch_max_bytes=6,
                       batch_max_files=7, batch_max_memory_mb=600,
                       min_free_mb=17, photon_map_mb=64,
                       outage_seconds=8.0, max_width=9, max_height=10, max_pixels=11, max_frames=12,
                       max_batches=13, max_scene_bytes=14, max_scene_files=15, max_scene_depth=16,
                       keep_days=30.0, pools="big,gpu", web_accounts=Path("/srv/accounts"),
                       web_token_file=Path("/srv/tokens"), web_tokens="a" * 16 + ",b" * 16, web_behind_proxy=True,
                       web_sign_in_attempts=3, web_sign_in_window=60, server="https://farm.example.com",
                       token="t" * 16, user_max_processes=4, user_max_jobs=5, user_max_priority=6,
                       stop_poll_seconds=0.25, no_progress_seconds=30.0, checkpoint_seconds=20.0,
                       checkpoint_share=0.1, resplit=False, quick_waits=False, batch_time_factor=5.0,
                       batch_time_floor=60.0, web_builds=5, web_uploads_per_account=3, web_request_seconds=4.5,
                       web_upload_min_rate=1000,
                       webhooks="https://hooks.example.com/a", webhook_secret="s" * 16,
                       webhook_retry_seconds=30.0, notify_hosts="hooks.example.com", web_streams=2,
                       batch_order="frames")
    assert all(getattr(changed, f.name) != getattr(Settings(), f.name) for f in fields(Settings))
    assert Settings.from_env(changed.to_env() | {"HOME": str(tmp_path)}) == changed


def test_a_local_worker_gets_the_settings_of_its_client() -> None:
    settings = Settings(storage="/srv/st", prefix="mine", cache_max_bytes=123, max_frames=4)
    assert Settings.from_env(worker_env(settings)) == settings


#: Where httpov may touch os.environ outside settings.py, and why.
ENVIRONMENT_ALLOWED = {
    "httpov/local_farm.py": "worker_env: the environment of a worker it starts, its HTTPOV_* replaced by to_env()",
    "httpov/celery_main.py": "the worker command's own CELERY_WORKER_* variables, read by click as Celery's umbrella "
                             "command has them read",
}


def _environment_reads(path: Path) -> list[str]:
    """Each os.environ / getenv / click envvar= in a module, as 'line: text'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv") \
                and ast.unparse(node) != "request.environ":  # a web request's WSGI environ, not the process's
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                {a.name for a in node.names} & {"environ", "environb", "getenv", "getenvb"}:
            found.append(f"{node.lineno}: from os import ...")
        elif isinstance(node, ast.keyword) and node.arg in ("envvar", "auto_envvar_prefix"):
            found.append(f"{node.lineno}: {node.arg}={ast.unparse(node.value)}")
    return found


def test_only_settings_reads_the_environment() -> None:
    """Every HTTPOV_* variable is resolved once, by httpov.settings, into Settings that are passed down (README,
    Configuration): nothing else reads os.environ, getenv or a click envvar."""
    root = Path(httpov.__file__).resolve().parent.parent
    reads = {str(path.relative_to(root)): _environment_reads(path) for path in sorted((root / "httpov").rglob("*.py"))}
    assert reads["httpov/settings.py"], "the check finds nothing: it has gone blind"
    wrong = {name: lines for name, lines in reads.items()
             if lines and name != "httpov/settings.py" and name not in ENVIRONMENT_ALLOWED}
    assert wrong == {}, f"read the environment outside httpov/settings.py (put it in Settings): {wrong}"
    assert all(len(reads[name]) == 1 for name in ENVIRONMENT_ALLOWED)


def test_a_batch_order_that_is_not_one_is_refused_by_name(tmp_path: Path) -> None:
    from httpov.errors import BadInputError

    assert Settings.from_env({"HOME": str(tmp_path)}).batch_order == "preview"
    assert Settings.from_env({"HOME": str(tmp_path), "HTTPOV_BATCH_ORDER": "frames"}).batch_order == "frames"
    with pytest.raises(BadInputError, match="HTTPOV_BATCH_ORDER must be one of preview, frames, got 'random'"):
        Settings.from_env({"HOME": str(tmp_path), "HTTPOV_BATCH_ORDER": "random"})


def test_a_render_pool_that_is_not_one_is_refused_by_name_and_the_app_runs_the_one_set(tmp_path: Path) -> None:
    from httpov.celery import make_app
    from httpov.errors import BadInputError

    assert Settings.from_env({"HOME": str(tmp_path)}).render_pool == "threads"
    prefork = Settings.from_env({"HOME": str(tmp_path), "HTTPOV_RENDER_POOL": "prefork"})
    assert make_app(prefork).conf.worker_pool == "prefork"
    assert make_app(Settings.from_env({"HOME": str(tmp_path)})).conf.worker_pool == "httpov.worker.pool:ThreadPool"
    with pytest.raises(BadInputError, match="HTTPOV_RENDER_POOL must be one of threads, prefork, got 'gevent'"):
        Settings.from_env({"HOME": str(tmp_path), "HTTPOV_RENDER_POOL": "gevent"})


def test_checkpoints_are_turned_off_with_0_and_other_numbers_must_stay_above_it(tmp_path: Path) -> None:
    from httpov.errors import BadInputError
    from httpov.settings import resolve

    home = {"HOME": str(tmp_path)}  # no config file there
    assert resolve({**home, "HTTPOV_CHECKPOINT_SECONDS": "0"}).settings.checkpoint_seconds == 0.0
    for name, raw in (("HTTPOV_CHECKPOINT_SECONDS", "-1"), ("HTTPOV_NO_PROGRESS_SECONDS", "0")):
        with pytest.raises(BadInputError, match=name):
            resolve({**home, name: raw})
