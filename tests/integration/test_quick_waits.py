"""Quick waits (httpov.worker.waits) with the real povray, bubblewrap and C compiler: the library is built, checked
against plain povray, loaded into povray inside the sandbox, and refused where it must be."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from httpov.errors import RenderError
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings
from httpov.worker import povray, waits
from httpov.worker.sandbox import RenderLimits
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
# parses for a second or two (a loop of the scene language), so that a running povray can be looked at
SLOW_PARSE = """
#declare I = 0; #while (I < 400000) #declare I = I + 1; #end
camera { location <0, 0, -3> look_at 0 } light_source { <2, 4, -3> rgb 1 } sphere { 0, 1 pigment { rgb 1 } }
"""


@pytest.fixture(autouse=True)
def _decided_afresh() -> None:
    waits._decided.clear()  # a render process decides once; each test plays a new node
    waits._deciding.clear()


def settings_in(tmp_path: Path, **changes: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", **changes)  # type: ignore[arg-type]


def verdict(settings: Settings) -> dict:
    [path] = (settings.cache_dir / "waits").glob("verdict-*.json")
    return json.loads(path.read_text())


def test_povray_runs_with_the_library_and_renders_the_same_pixels(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    assert library is not None and library.is_file() and library.parent == settings.cache_dir / "waits"
    assert verdict(settings) == {"ok": True, "why": ""}
    plain, _ = waits.render_check(settings, frames=3)
    quick, _ = waits.render_check(settings, frames=3, preload=library)
    assert sorted(plain) == sorted(quick) == [1, 2, 3] and plain == quick
    assert len(set(plain.values())) == 3  # the frames differ (the sphere moves): frames compared, not one image

    # povray itself has the library mapped, inside its sandbox, while it renders a batch
    spec = JobSpec(id="q", name="q", scene_key="", root="", pov="slow.pov", options={"Input_File_Name": "slow.pov"},
                   initial=1, final=1, first=1, last=1, width=8, height=8, count=1, batches=["f000001-000001"])
    work = tmp_path / "work"
    (work / "scene").mkdir(parents=True)
    (work / "scene" / "slow.pov").write_text(SLOW_PARSE)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(povray.render(
        "povray", spec, Batch(1, 1), work, 1, lambda: True, RenderLimits(), preload=library)))
    thread.start()
    maps = ""
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline and library.name not in maps:
        maps = "".join(_maps(pid) for pid in _povrays_under(str(work)))
        time.sleep(0.02)
    thread.join(60)
    assert library.name in maps, "povray ran without the library"
    assert isinstance(outcome[0], povray.RenderOutput) and list(outcome[0].images) == [1]


def test_a_batch_never_waits_for_the_check_it_runs_in_the_background(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    assert waits.library_for(settings) is None  # no verdict yet: povray as it is, and the check starts
    wait_for(lambda: waits.library_for(settings) is not None, 60, "the background check's verdict")
    assert verdict(settings) == {"ok": True, "why": ""}
    waits._decided.clear()  # another render process of the node reads the verdict at once
    assert waits.library_for(settings) is not None


def test_a_node_decides_once_and_keeps_its_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_in(tmp_path)
    first = waits.library_for(settings, wait=True)
    assert first is not None
    checks: list[object] = []
    monkeypatch.setattr(waits, "_check", lambda *a: checks.append(a))  # a second check would show here
    waits._decided.clear()  # another render process of the same node, or the node started again
    assert waits.library_for(settings, wait=True) == first and checks == []


def test_without_a_compiler_povray_runs_as_it_is_and_the_node_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    monkeypatch.setattr(waits, "COMPILER_PATH", str(empty))
    settings = settings_in(tmp_path)
    with caplog.at_level(logging.WARNING, logger="httpov.worker.waits"):
        assert waits.library_for(settings, wait=True) is None
    assert "no C compiler" in verdict(settings)["why"]
    assert "povray runs without quick waits" in caplog.text and "install the Debian package gcc" in caplog.text
    pixels, _ = waits.render_check(settings)  # and it renders
    assert list(pixels) == [1]


def test_a_povray_that_fails_its_check_with_the_library_is_refused(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    folder = settings.cache_dir / "waits"
    folder.mkdir(parents=True)
    # a library of the same version that kills povray as it loads: the check must catch it
    source = tmp_path / "bad.c"
    source.write_text("#include <stdlib.h>\n__attribute__((constructor)) static void f(void) { abort(); }\n")
    bad = folder / f"waits-{waits._digest()}.so"
    assert os.system(f"cc -shared -fPIC -o {bad} {source}") == 0
    assert waits.library_for(settings, wait=True) is None
    why = verdict(settings)["why"]
    assert "povray failed the self-test with" in why and "crashed" in why
    waits._decided.clear()
    assert waits.library_for(settings, wait=True) is None  # the verdict is kept: not tested again at each start


def test_a_crash_with_the_library_leaves_the_process_without_it(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    assert library is not None
    waits.refuse(settings, library, "povray crashed (segmentation fault)")
    assert waits.library_for(settings, wait=True) is None
    waits._decided.clear()  # a new process of the node: the check's verdict stands (a crash may be the scene's)
    assert waits.library_for(settings, wait=True) == library


@pytest.mark.parametrize("case", ["off", "script"])
def test_no_library_when_turned_off_or_for_a_stand_in_renderer(tmp_path: Path, case: str) -> None:
    settings = settings_in(tmp_path, quick_waits=False) if case == "off" else settings_in(
        tmp_path, povray=str(ROOT / "scripts" / "povray-stub.sh"))
    assert waits.library_for(settings, wait=True) is None
    assert not (settings.cache_dir / "waits").exists()  # nothing built, nothing tested


def test_a_render_error_names_the_scene_not_the_library(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    spec = JobSpec(id="e", name="e", scene_key="", root="", pov="bad.pov", options={"Input_File_Name": "bad.pov"},
                   initial=1, final=1, first=1, last=1, width=8, height=8, count=1, batches=["f000001-000001"])
    (tmp_path / "w" / "scene").mkdir(parents=True)
    (tmp_path / "w" / "scene" / "bad.pov").write_text("sphere { 0, 1 pigment { rgb 1 }\n")  # unclosed brace
    with pytest.raises(RenderError) as caught:
        povray.render("povray", spec, Batch(1, 1), tmp_path / "w", 1, lambda: True, RenderLimits(), preload=library)
    assert "crashed" not in str(caught.value) and any("bad.pov" in line for line in caught.value.lines)


def _povrays_under(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and os.path.basename(cmdline[0]) == b"povray" and any(marker.encode() in a for a in cmdline):
                found.append(int(entry))
    return found


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""
