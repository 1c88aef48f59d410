"""Shared helpers: the Redis URL tests use, tiny POV-Ray scenes, pixel comparison and waiting. Nothing here needs
Redis or povray to import: their checks and the fixtures that use them are in tests/integration/conftest.py, so
`pytest tests/unit` runs without either."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from httpov.broker import QueueLayout, key_prefix
from httpov.settings import Settings

REDIS_URL = os.environ.get("HTTPOV_TEST_REDIS", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ starts real services: mark it so `-m "not integration"` leaves it out."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_httpov_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests are hermetic: the caller's HTTPOV_* variables (a farm's settings, HTTPOV_CONFIG) never reach the code
    under test, CliRunner's env= (which adds to os.environ) or the workers tests start. HTTPOV_TEST_* are the
    suite's own (the Redis it uses) and stay."""
    for name in [n for n in os.environ if n.startswith("HTTPOV_") and not n.startswith("HTTPOV_TEST_")]:
        monkeypatch.delenv(name)


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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
