"""Shared helpers: the Redis URL tests use, tiny POV-Ray scenes, pixel comparison and waiting; the test layers
and what each needs; a clean environment for every test.

The layers, one folder and one marker each (`pytest -m unit`, `-m "not browser"`): unit (tests/unit/, neither Redis
nor povray), store (tests/store/, a real Redis only), integration (tests/integration/, Redis, celery workers, povray,
S3 servers) and browser (tests/browser/, all that and Chromium through Playwright). A layer's needs are checked once
the tests to run are known: missing ones are a usage error (exit 4), never a skip, so `pytest -m unit` runs anywhere.
Nothing here needs Redis or povray to import, and the fixtures that use Redis only touch it when a test asks."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from httpov.broker import QueueLayout, key_prefix
from httpov.settings import Settings
from httpov.store import JobStore

REDIS_URL = os.environ.get("HTTPOV_TEST_REDIS", "redis://127.0.0.1:6379/0")


LAYERS = ("unit", "store", "integration", "browser")
TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its folder's layer as a marker: `-m unit` runs the tests that need neither Redis nor povray."""
    for item in items:
        folder = item.path.resolve().relative_to(TESTS).parts[0]
        if folder in LAYERS:
            item.add_marker(folder)
    # The container tests last: .ci/run builds their images in the background meanwhile (pytest-xdist hands files
    # out in this order), so no test process waits on that build while other tests could run.
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("container") is not None)


def redis_answers(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        return False
    return True


def missing_for(layer: str) -> list[str]:
    """What a layer needs that this machine lacks, each as a line saying how to get it."""
    missing = []
    if layer in ("integration", "browser") and shutil.which("povray") is None:
        missing.append("povray is not installed: apt-get install -y povray (or run .ci/run)")
    if layer in ("store", "integration", "browser") and not redis_answers(REDIS_URL):
        missing.append(f"Redis does not answer at {REDIS_URL}: start redis-server (or run .ci/run)")
    if layer == "browser" and shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        missing.append("chromium is not installed: apt-get install -y chromium (or run .ci/run)")
    return missing


def _missing_for_layers(layers: set[str]) -> str:
    return "\n".join(dict.fromkeys(line for layer in LAYERS if layer in layers for line in missing_for(layer)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The layers about to run need their services: a missing one is a usage error (exit 4), never a skip."""
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker: its controller checks (below), where the message can be shown
    missing = _missing_for_layers({layer for item in session.items for layer in LAYERS
                                   if item.get_closest_marker(layer)})
    if missing:
        raise pytest.UsageError(missing)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """With pytest-xdist (`-n 3`, as .ci/run runs): the same check, in the controller, on the tests a worker has
    collected (their folder is their layer)."""
    parts = [nodeid.split("::")[0].split("/") for nodeid in ids]
    missing = _missing_for_layers({p[1] for p in parts if len(p) > 2 and p[0] == "tests" and p[1] in LAYERS})
    if missing:
        pytest.exit(f"ERROR: {missing}", returncode=pytest.ExitCode.USAGE_ERROR)


def _without_httpov_variables(mp: pytest.MonkeyPatch, config_home: Path) -> None:
    """Remove the caller's HTTPOV_* variables (not HTTPOV_TEST_*, the suite's own) and hide their config file."""
    for name in list(os.environ):
        if name.startswith("HTTPOV_") and not name.startswith("HTTPOV_TEST_"):
            mp.delenv(name)
    mp.setenv("XDG_CONFIG_HOME", str(config_home))  # ~/.config/httpov/config.toml is the caller's too


@pytest.fixture(scope="session", autouse=True)
def _hermetic_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module fixtures start servers and render nodes before any test's own fixture runs: clean for them too."""
    config_home = tmp_path_factory.mktemp("xdg-config")
    with pytest.MonkeyPatch.context() as mp:
        _without_httpov_variables(mp, config_home)
        yield config_home


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, _hermetic_session: Path) -> None:
    """Every test starts without the caller's settings, whatever an earlier test left in os.environ; child
    processes (render nodes, `httpov web`, CLI runs) inherit the clean environment."""
    _without_httpov_variables(monkeypatch, _hermetic_session)


@contextlib.contextmanager
def private_settings(folder: Path, **overrides: object) -> Iterator[Settings]:
    """Settings of their own: a key prefix and queue no other test or farm uses, storage and node cache in `folder`;
    every key under the prefix is removed afterwards."""
    tag = "httpovtest-" + secrets.token_hex(4)
    yield Settings(broker_url=REDIS_URL, state_url=REDIS_URL, storage=str(folder / "storage"), prefix=tag,
                   queue=tag, cache_dir=folder / "cache", **overrides)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def store() -> Iterator[JobStore]:
    """A JobStore on the real Redis under a prefix no other test uses; every key under it is removed afterwards."""
    prefix = "httpovtest-" + secrets.token_hex(4)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield JobStore(client, prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings private to one test: its own key prefix, queue, storage folder and node cache."""
    with private_settings(tmp_path, lease_seconds=4.0, max_attempts=3, task_time_limit=600) as s:
        yield s


@pytest.fixture
def client(settings: Settings):
    """A Client of the test's settings whose `wait` looks every 0.1 s (a user's looks every 0.5 s): a test's
    tiny job is seen done at once."""
    from httpov.celery import make_app
    from httpov.client import Client

    class QuickClient(Client):
        def wait(self, job_id, on_progress=None, poll=0.1, timeout=None, on_outage=None):
            return super().wait(job_id, on_progress, poll, timeout, on_outage)

    return QuickClient(settings, make_app(settings))


def write_scene(folder: Path, pov: str, ini: str | None = None) -> Path:
    """A scene folder with scene.pov and (when given) pov.ini."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scene.pov").write_text(pov)
    if ini is not None:
        (folder / "pov.ini").write_text("Input_File_Name=scene.pov\n" + ini)
    return folder


TINY_ANIMATION = """
#version 3.7;
#include "colors.inc"
camera { location <0, 2, -5> look_at <0, 0, 0> }
light_source { <-3, 6, -4> color White }
plane { y, -1 pigment { checker color Red color White } }
sphere { <2 * cos(2 * pi * clock), 0, 2 * sin(2 * pi * clock)>, 0.8 pigment { color rgb <0.2, 0.4, 1> } }
"""

# Shiny spheres on a checkered plane: with antialiasing method 1 at +A0.3 many pixels sit near the threshold, so
# slices cut off povray's 32-row render-block grid differ from a whole render (POV-Ray issue #377). No background:
# with Output_Alpha the sky is transparent, so the alpha channel carries information.
AA_SENSITIVE = """#version 3.7;
global_settings { assumed_gamma 1.0 }
camera { location <0, 2.5, -6> look_at <0, 0.5, 0> }
light_source { <4, 8, -6> color rgb 1 }
plane { y, 0 pigment { checker color rgb 0 color rgb 1 scale 0.5 } }
sphere { <-1 + 2 * clock, 0.8, 0>, 0.8 pigment { color rgb <1, 0.2, 0.2> } finish { specular 0.6 reflection 0.3 } }
sphere { <1.2, 0.6, 1>, 0.6 pigment { color rgb <0.2, 0.4, 1> } finish { phong 0.8 } }
sphere { <0.3, 0.3, -1.5>, 0.3 pigment { checker color rgb <0, 1, 0> color rgb 1 scale 0.1 } }
"""

PARSE_ERROR = """
#version 3.7;
camera { location <0, 0, -5> look_at <0, 0, 0> }
sphere { <0, 0, 0>, 1 pigment { color rgb <1, 0, 0> }
not_a_keyword
"""


def povray_direct(scene_dir: Path, out_dir: Path, *args: str) -> None:
    """The reference: one plain povray process on the scene, as a user would run it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["povray", "pov.ini", "-D", "+WT1", "+FN", f"+O{out_dir}/ref", *args], cwd=scene_dir,
                   check=True, capture_output=True, timeout=120)


def pixels(path: Path) -> tuple:
    """Decoded pixels of a PNG (never its bytes: povray writes time chunks)."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    return width, height, tuple(tuple(row) for row in rows)


def queue_drained(settings: Settings) -> bool:
    """True when no message of this test's queue waits in Redis or is held by a worker (kombu's unacked)."""
    r, layout = redis.Redis.from_url(settings.broker_url), kombu_layout(settings)
    waiting = sum(r.llen(key) for key in r.scan_iter(match=layout.key(settings.queue) + "*"))
    return waiting + r.hlen(layout.unacked) == 0


def kombu_layout(settings: Settings) -> QueueLayout:
    """Where kombu keeps the messages of an app made with `settings`: its key prefix and unacked table (a queue's
    lists are named after the app's transport options: QueueLayout.of(app).lists)."""
    return QueueLayout(key_prefix(settings.prefix))


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Poll `predicate` every 0.1 s until it holds (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until `predicate` holds; past `timeout` seconds, fail naming `what` was awaited."""
    if not wait_until(predicate, timeout):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def parked_after_the_pre_pass(client: Any, job_id: str, slices: list[str]) -> Callable[[], bool]:
    """A condition for wait_for: a job paused during its frame 1's pre-pass has that pre-pass done and its `slices`
    parked (the pre-pass queued them while the job was paused)."""
    def parked() -> bool:
        batches = client.store.batches(job_id)
        return "f000001-000001-pre" in batches["done"] and sorted(batches["parked"]) == sorted(slices)
    return parked


def outlived(since: float, seconds: float) -> Callable[[], bool]:
    """A condition for wait_for: `seconds` have passed since the monotonic time `since` (a lease held then has run
    out). For waits whose point is time itself passing; anything else waits for what it needs."""
    return lambda: time.monotonic() - since > seconds
