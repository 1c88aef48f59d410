"""The test layers: unit tests run with no Redis and no povray; integration tests refuse to run without them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_REDIS = "redis://127.0.0.1:1/0"  # port 1: nothing answers


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HTTPOV_TEST_REDIS=NO_REDIS, PATH=str(tmp_path))  # an empty PATH folder: no povray
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_unit_tests_need_neither_redis_nor_povray(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "tests/unit/test_text.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_integration_tests_refuse_to_run_without_them(tmp_path: Path) -> None:
    (tmp_path / "povray").symlink_to("/bin/true")  # povray "installed": Redis is what is missing
    result = _pytest(tmp_path, "tests/integration/test_workers_kit.py")
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error, never a skip
    assert f"Redis does not answer at {NO_REDIS}" in result.stdout + result.stderr
    assert "skipped" not in result.stdout
    (tmp_path / "povray").unlink()
    result = _pytest(tmp_path, "tests/integration/test_workers_kit.py")
    assert result.returncode == 4 and "povray is not installed" in result.stdout + result.stderr
