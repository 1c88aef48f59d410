"""The test layers: each folder's tests carry its marker; unit tests run with no Redis and no povray, whatever
HTTPOV_* variables the caller has set; store, integration and browser tests refuse to run without what they need."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_REDIS = "redis://127.0.0.1:1/0"  # port 1: nothing answers
# a caller's settings, all wrong for the tests: none may leak into them (nor into the processes they start)
CALLER = {"HTTPOV_BROKER_URL": "redis://caller.invalid:6379/0", "HTTPOV_STATE_URL": "redis://caller.invalid:6379/0",
          "HTTPOV_STORAGE": "/nonexistent/caller", "HTTPOV_PREFIX": "caller", "HTTPOV_QUEUE": "caller",
          "HTTPOV_LEASE_SECONDS": "not a number", "HTTPOV_CONFIG": "/nonexistent/caller.toml"}
# for the runs that collect no property test: loading hypothesis's plugin (it imports hypothesis) is half of such a
# run's second, and of each of its xdist workers'
NO_HYPOTHESIS = ("-p", "no:hypothesispytest")


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HTTPOV_TEST_REDIS=NO_REDIS, PATH=str(tmp_path), **CALLER)  # an empty PATH folder: no povray
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def _collected(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_a_test_and_the_processes_it_starts_see_none_of_the_callers_settings() -> None:
    """Run by the test below with the caller's settings set: they are gone, the config file too."""
    from httpov.settings import Settings

    assert [name for name in os.environ if name.startswith("HTTPOV_") and not name.startswith("HTTPOV_TEST_")] == []
    child = subprocess.run([sys.executable, "-c", "import os; print(' '.join(os.environ))"], capture_output=True,
                           text=True, check=True)
    assert [name for name in child.stdout.split() if name.startswith("HTTPOV_") and "_TEST_" not in name] == []
    got, default = Settings.from_env(), Settings()  # neither variables nor a config file: the defaults
    assert [getattr(got, f) for f in ("broker_url", "state_url", "prefix", "queue", "lease_seconds")] == \
        [getattr(default, f) for f in ("broker_url", "state_url", "prefix", "queue", "lease_seconds")]


def test_unit_tests_need_neither_redis_nor_povray_nor_the_callers_settings(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "tests/unit/test_text.py", "tests/unit/test_config_file.py",
                     "tests/unit/test_settings_env.py", f"{Path(__file__).relative_to(ROOT)}::"
                     "test_a_test_and_the_processes_it_starts_see_none_of_the_callers_settings")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "deselected" not in result.stdout


def test_the_unit_marker_selects_the_unit_folder_and_needs_nothing_either(tmp_path: Path) -> None:
    # the whole tree, all conftests loaded; nothing runs, so the assertions are left as written (rewriting them was
    # two thirds of collecting every file)
    marked = _pytest(tmp_path, "--collect-only", "--assert=plain", "-m", "unit", "tests")
    assert marked.returncode == 0, marked.stdout + marked.stderr
    files = {line.split("::")[0] for line in _collected(marked)}
    assert files == {str(path.relative_to(ROOT)) for path in (ROOT / "tests" / "unit").glob("test_*.py")}


def test_each_layer_refuses_to_run_without_what_it_needs_and_only_that(tmp_path: Path) -> None:
    # no Redis, no povray: store only asks for Redis
    result = _pytest(tmp_path, *NO_HYPOTHESIS, "tests/store/test_cli_input.py")
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error, never a skip
    assert f"Redis does not answer at {NO_REDIS}" in result.stderr and "povray" not in result.stderr
    assert "skipped" not in result.stdout and "passed" not in result.stdout

    (tmp_path / "povray").symlink_to("/bin/true")  # povray "installed": Redis is what is missing
    result = _pytest(tmp_path, *NO_HYPOTHESIS, "tests/integration/test_workers_kit.py")
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"Redis does not answer at {NO_REDIS}" in result.stderr
    assert "povray" not in result.stderr and "chromium" not in result.stderr
    (tmp_path / "povray").unlink()

    result = _pytest(tmp_path, *NO_HYPOTHESIS, "-m", "integration or browser", "tests/integration/test_workers_kit.py",
                     "tests/browser")
    assert result.returncode == 4, result.stdout + result.stderr
    for missing in ("povray is not installed", "Redis does not answer", "chromium is not installed"):
        assert result.stderr.count(missing) == 1, result.stderr
    assert "skipped" not in result.stdout and "passed" not in result.stdout

    result = _pytest(tmp_path, *NO_HYPOTHESIS, "-n", "3", "--dist", "loadfile",  # as .ci/run runs
                     "tests/store/test_cli_input.py")
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"Redis does not answer at {NO_REDIS}" in result.stdout + result.stderr
    assert "passed" not in result.stdout and "INTERNALERROR" not in result.stdout + result.stderr
