"""Settings.to_env: every setting a worker needs, under the one name from_env reads."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from httpov.local import worker_env
from httpov.settings import Settings


def test_to_env_gives_back_every_setting() -> None:
    changed = Settings(broker_url="redis://10.0.0.1:6380/2", state_url="redis://10.0.0.2/1", storage="/srv/st",
                       prefix="p", queue="q", cache_dir=Path("/srv/cache"), cache_max_bytes=5, povray="/opt/povray",
                       render_threads=2, lease_seconds=7.5, max_attempts=4, task_time_limit=99, redis_ca="/ca.pem",
                       render_processes=3, celery_config="site.celery", batch_max_bytes=6, batch_max_files=7,
                       outage_seconds=8.0, max_width=9, max_height=10, max_pixels=11, max_frames=12,
                       max_batches=13, max_scene_bytes=14, max_scene_files=15, max_scene_depth=16,
                       keep_days=30.0, pools="big,gpu")
    assert all(getattr(changed, f.name) != getattr(Settings(), f.name) for f in fields(Settings))
    assert Settings.from_env(changed.to_env()) == changed


def test_a_local_worker_gets_the_settings_of_its_client() -> None:
    settings = Settings(storage="/srv/st", prefix="mine", cache_max_bytes=123, max_frames=4)
    assert Settings.from_env(worker_env(settings)) == settings
